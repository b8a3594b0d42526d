// The decode-only loop of benchmarks/FINDINGS.md ("jan bench vs llama-bench", 2026-12-07): llama-bench's tg step
// (a one-token batch, llama_decode, llama_synchronize) on the context jan bench gives stories260K at -t 1 (n_ctx 256,
// flash attention auto, f16 KV, a ggml threadpool of one thread, poll 50), nothing else. Each step is timed alone and
// the percentiles printed: on a busy host a whole repetition is always preempted somewhere, its fastest steps are not.
// Linked against llama-cpp-python's shared libraries (what jan runs) or llama-bench's static ones:
//
//   (one command each, the second lines continuing the first)
//   SP=.venv/lib/python3.11/site-packages
//   g++ -O2 -I$SP/include benchmarks/tg_decode_loop.cpp -o /tmp/loop_shared -L$SP/llama_cpp/lib
//       -lllama -lggml -lggml-base -Wl,-rpath,$PWD/$SP/llama_cpp/lib
//   B=~/.cache/jan-bench/llama.cpp-0.3.36/build S=~/.cache/jan-bench/llama.cpp-0.3.36/src
//   g++ -O2 -I$S/include -I$S/ggml/include benchmarks/tg_decode_loop.cpp -o /tmp/loop_static $B/src/libllama.a
//       $B/ggml/src/libggml.a $B/ggml/src/libggml-cpu.a $B/ggml/src/libggml-base.a -fopenmp -lpthread -ldl
//   /tmp/loop_shared ../shared/models/stories260K.gguf 128 40; /tmp/loop_static ../shared/models/stories260K.gguf 128 40
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "llama.h"
#include "ggml-cpu.h"
#include "ggml-backend.h"

int main(int argc, char ** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.gguf N_GEN [REPETITIONS]\n", argv[0]);
        return 2;
    }
    int n = atoi(argv[2]);
    llama_log_set([](ggml_log_level, const char *, void *) {}, nullptr);
    llama_backend_init();
    auto mp = llama_model_default_params();
    llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (!model) return 1;
    auto cp = llama_context_default_params();
    cp.n_ctx = 256; cp.n_batch = 256; cp.n_ubatch = 256; cp.n_seq_max = 1; cp.n_threads = 1; cp.n_threads_batch = 1;
    cp.no_perf = true; cp.swa_full = false;
    llama_context * ctx = llama_init_from_model(model, cp);
    ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(cpu);
    using new_fn = ggml_threadpool * (*)(ggml_threadpool_params *);
    auto make = (new_fn)ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_new");
    ggml_threadpool_params tpp = ggml_threadpool_params_default(1);
    tpp.poll = 50;
    ggml_threadpool * tp = make(&tpp);
    llama_attach_threadpool(ctx, tp, nullptr);
    llama_batch batch = llama_batch_init(256, 0, 1);
    const int reps = argc > 3 ? atoi(argv[3]) : 1;
    std::vector<double> steps;  // microseconds, every timed step of every repetition
    llama_token tok = 5;
    for (int r = 0; r < reps; ++r) {
        llama_memory_clear(llama_get_memory(ctx), true);
        // two untimed steps first: jan bench's warm-up and one-token prompt (tg_step_probe.py's)
        for (int i = 0, pos = 0; i < n + 2; ++i, ++pos) {
            batch.n_tokens = 1;
            batch.token[0] = tok;
            batch.pos[0] = pos;
            batch.n_seq_id[0] = 1;
            batch.seq_id[0][0] = 0;
            batch.logits[0] = 1;
            const auto t0 = std::chrono::steady_clock::now();
            if (llama_decode(ctx, batch)) return 1;
            llama_synchronize(ctx);
            const auto t1 = std::chrono::steady_clock::now();
            if (i >= 2) steps.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
            tok = rand() % llama_vocab_n_tokens(llama_model_get_vocab(model));  // (as llama-bench: any token)
        }
    }
    std::sort(steps.begin(), steps.end());
    const size_t k = steps.size();
    if (k) printf("steps %zu min %.1f p5 %.1f p10 %.1f p25 %.1f p50 %.1f us\n", k, steps[0], steps[k / 20], steps[k / 10],
                  steps[k / 4], steps[k / 2]);
    return 0;
}
