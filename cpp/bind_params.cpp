#include <pybind11/stl.h>

#include "bind_common.h"
#include "embedder.h"
#include "grammar_trigger.h"
#include "model.h"
#include "sampling.h"
#include "scheduler.h"

namespace jan {

void register_params(py::module_ & m) {
    py::class_<ModelParams>(m, "ModelParams")
        .def(py::init<>())
        .def_readwrite("n_gpu_layers", &ModelParams::n_gpu_layers)
        .def_readwrite("main_gpu", &ModelParams::main_gpu)
        .def_readwrite("use_mmap", &ModelParams::use_mmap)
        .def_readwrite("use_mlock", &ModelParams::use_mlock)
        .def_readwrite("extra_buffers", &ModelParams::extra_buffers)
        .def_readwrite("vocab_only", &ModelParams::vocab_only)
        .def_readwrite("check_tensors", &ModelParams::check_tensors)
        .def_readwrite("split_mode", &ModelParams::split_mode)
        .def_readwrite("tensor_split", &ModelParams::tensor_split)
        .def_readwrite("tensor_buft_overrides", &ModelParams::tensor_buft_overrides)
        .def_readwrite("load_mode", &ModelParams::load_mode)
        .def_readwrite("lazy_mode", &ModelParams::lazy_mode)
        .def_readwrite("no_host", &ModelParams::no_host)
        .def_readwrite("devices", &ModelParams::devices);

    py::class_<ContextParams>(m, "ContextParams")
        .def(py::init<>())
        .def_readwrite("n_ctx", &ContextParams::n_ctx)
        .def_readwrite("n_parallel", &ContextParams::n_parallel)
        .def_readwrite("n_batch", &ContextParams::n_batch)
        .def_readwrite("n_ubatch", &ContextParams::n_ubatch)
        .def_readwrite("n_threads", &ContextParams::n_threads)
        .def_readwrite("n_threads_batch", &ContextParams::n_threads_batch)
        .def_readwrite("flash_attn", &ContextParams::flash_attn)
        .def_readwrite("max_queue", &ContextParams::max_queue)
        .def_readwrite("kv_unified", &ContextParams::kv_unified)
        .def_readwrite("adaptive_threads", &ContextParams::adaptive_threads)
        .def_readwrite("exact_threads", &ContextParams::exact_threads)
        .def_readwrite("cache_type_k", &ContextParams::cache_type_k)
        .def_readwrite("cache_ram_mib", &ContextParams::cache_ram_mib)
        .def_readwrite("cache_type_v", &ContextParams::cache_type_v)
        .def_readwrite("offload_kqv", &ContextParams::offload_kqv)
        .def_readwrite("embeddings", &ContextParams::embeddings)
        .def_readwrite("op_offload", &ContextParams::op_offload)
        .def_readwrite("threadpool", &ContextParams::threadpool)
        .def_readwrite("cpumask", &ContextParams::cpumask)
        .def_readwrite("cpu_strict", &ContextParams::cpu_strict)
        .def_readwrite("poll", &ContextParams::poll)
        .def_readwrite("prio", &ContextParams::prio);

    py::class_<SamplingParams>(m, "SamplingParams")
        .def(py::init<>())
        .def_readwrite("max_tokens", &SamplingParams::max_tokens)
        .def_readwrite("temperature", &SamplingParams::temperature)
        .def_readwrite("top_k", &SamplingParams::top_k)
        .def_readwrite("top_p", &SamplingParams::top_p)
        .def_readwrite("min_p", &SamplingParams::min_p)
        .def_readwrite("typical_p", &SamplingParams::typical_p)
        .def_readwrite("infill", &SamplingParams::infill)
        .def_readwrite("repeat_penalty", &SamplingParams::repeat_penalty)
        .def_readwrite("presence_penalty", &SamplingParams::presence_penalty)
        .def_readwrite("frequency_penalty", &SamplingParams::frequency_penalty)
        .def_readwrite("repeat_last_n", &SamplingParams::repeat_last_n)
        .def_readwrite("seed", &SamplingParams::seed)
        .def_readwrite("logit_bias", &SamplingParams::logit_bias)
        .def_readwrite("grammar", &SamplingParams::grammar)
        .def_readwrite("grammar_root", &SamplingParams::grammar_root)
        .def_readwrite("grammar_triggers", &SamplingParams::grammar_triggers)
        .def_readwrite("lazy_grammar_reference", &SamplingParams::lazy_grammar_reference)
        .def_readwrite("grammar_prefix", &SamplingParams::grammar_prefix)
        .def_readwrite("reasoning_budget", &SamplingParams::reasoning_budget)
        .def_readwrite("reasoning_start", &SamplingParams::reasoning_start)
        .def_readwrite("reasoning_end", &SamplingParams::reasoning_end)
        .def_readwrite("reasoning_close", &SamplingParams::reasoning_close)
        .def_readwrite("reasoning_interrupt", &SamplingParams::reasoning_interrupt)
        .def_readwrite("reasoning_open", &SamplingParams::reasoning_open)
        .def_readwrite("reasoning_every", &SamplingParams::reasoning_every)
        .def_readwrite("render_special", &SamplingParams::render_special)
        .def_readwrite("preserved_tokens", &SamplingParams::preserved_tokens)
        .def_readwrite("reproducible", &SamplingParams::reproducible)
        .def_readwrite("ignore_eos", &SamplingParams::ignore_eos)
        .def_readwrite("grammar_first", &SamplingParams::grammar_first)
        .def_readwrite("stop", &SamplingParams::stop)
        .def_readwrite("logprobs", &SamplingParams::logprobs)
        .def_readwrite("n_probs", &SamplingParams::n_probs)
        .def_readwrite("post_sampling_probs", &SamplingParams::post_sampling_probs)
        .def_readwrite("prompt_logprobs", &SamplingParams::prompt_logprobs)
        .def_readwrite("mirostat", &SamplingParams::mirostat)
        .def_readwrite("mirostat_tau", &SamplingParams::mirostat_tau)
        .def_readwrite("mirostat_eta", &SamplingParams::mirostat_eta)
        .def_readwrite("draft_max", &SamplingParams::draft_max)
        .def_readwrite("draft_min", &SamplingParams::draft_min)
        .def_readwrite("ngram", &SamplingParams::ngram)
        .def_readwrite("use_draft_model", &SamplingParams::use_draft_model)
        .def_readwrite("draft_p_min", &SamplingParams::draft_p_min)
        .def_readwrite("lora_set", &SamplingParams::lora_set)
        .def_readwrite("id_slot", &SamplingParams::id_slot)
        .def_readwrite("lora", &SamplingParams::lora);

    py::class_<EmbedderParams>(m, "EmbedderParams")
        .def(py::init<>())
        .def_readwrite("n_ctx", &EmbedderParams::n_ctx)
        .def_readwrite("n_threads", &EmbedderParams::n_threads)
        .def_readwrite("adaptive_threads", &EmbedderParams::adaptive_threads)
        .def_readwrite("pooling", &EmbedderParams::pooling)
        .def_readwrite("n_seq_max", &EmbedderParams::n_seq_max);

    // The lazy grammar's trigger search without a model (grammar_trigger.h), for tests: `pieces` written one after
    // another, searched after each as a lazy grammar does. (the piece's index, where the constrained text begins)
    // of the first match, or None. `everywhere`: the whole text every time, as llama.cpp searches it.
    m.def(
        "trigger_scan",
        [](const std::vector<std::string> & patterns, const std::vector<py::bytes> & pieces,
           bool everywhere) -> py::object {
            const TriggerPatterns compiled(patterns);
            std::string text;
            for (size_t i = 0; i < pieces.size(); ++i) {
                const size_t checked = text.size();
                text += std::string(pieces[i]);
                const size_t start = compiled.find(text, checked, everywhere);
                if (start != std::string::npos) return py::make_tuple(i, start);
            }
            return py::none();
        },
        py::arg("patterns"), py::arg("pieces"), py::arg("everywhere") = false);
    // How a trigger pattern is searched: (tail, tail_max), the pattern every new match ends with a match of and its
    // longest match in bytes; None for a pattern searched whole every token.
    m.def("trigger_shape", [](const std::string & pattern) -> py::object {
        const auto shape = TriggerPatterns::shape_of(pattern);
        if (shape.tail.empty()) return py::none();
        return py::make_tuple(py::bytes(shape.tail), shape.tail_max);
    });
}

}  // namespace jan
