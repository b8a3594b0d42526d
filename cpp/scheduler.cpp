#include "scheduler.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <stdexcept>

#include <sys/stat.h>

#ifdef __linux__
#include <pthread.h>
#endif

#include "errors.h"
#include "kv_cache.h"
#include "step_threads.h"

namespace jan {

using Clock = std::chrono::steady_clock;

namespace {

// SamplingParams::prompt_logprobs: prompt tokens evaluated with logits per step, at most. llama.cpp's
// output buffer holds one row of n_vocab floats per output of the largest step (~19 MiB at 128 tokens
// of a 38k vocabulary, ~78 MiB of a 152k one) and keeps it; 128 rows keep that bounded.
constexpr size_t kPromptLogprobsPerStep = 128;

// Batches at least this long take ThreadGovernor::recheck_after_resume's few milliseconds (a 64-token
// batch of stories260K on one thread takes about as long; of a real model, much longer).
constexpr int32_t kRecheckBatchTokens = 64;

double ms_between(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
}

// Generation is memory-bound: past the physical cores (about half the
// hardware threads) more threads only fight over the same bandwidth, and a
// loaded machine turns the extra OpenMP barriers into stalls. Prompt
// processing is compute-bound and gets every hardware thread.
int32_t default_threads(int32_t requested, bool batch) {
    if (requested > 0) return requested;
    // (at most ggml's GGML_MAX_N_THREADS: a machine with more hardware threads than one graph runs on got them all)
    const int32_t hw = (int32_t)std::clamp(std::thread::hardware_concurrency(), 1u, (unsigned)GGML_MAX_N_THREADS);
    return batch ? hw : std::max(1, hw / 2);
}

}  // namespace

Scheduler::Scheduler(std::shared_ptr<Model> model, const ContextParams & params, std::shared_ptr<Model> draft,
                     std::vector<std::shared_ptr<LoraAdapter>> loras, std::vector<float> lora_scales)
    : model_(std::move(model)), params_(params), loras_(std::move(loras)) {
    for (const auto & lora : loras_)
        if (!lora || &lora->model() != model_.get())
            throw std::invalid_argument("lora: an adapter was loaded against another model");
    if (lora_scales.empty()) lora_scales.assign(loras_.size(), 1.0f);
    check_lora_scales(lora_scales, loras_.size(), "lora");
    lora_defaults_ = std::move(lora_scales);
    lora_applied_.assign(loras_.size(), 0.0f);  // a new context has no adapters: every scale 0
    if (params_.n_parallel < 1) throw std::invalid_argument("n_parallel: must be >= 1");
    if (params_.n_ctx < 8) throw std::invalid_argument("n_ctx: must be >= 8");
    if (params_.n_batch < 1) throw std::invalid_argument("n_batch: must be >= 1");
    if (params_.max_queue < 0) throw std::invalid_argument("max_queue: must be >= 0");
    if (params_.n_ubatch < 1 || params_.n_ubatch > params_.n_batch) params_.n_ubatch = params_.n_batch;
    if (!model_->has_decoder() && model_->has_encoder())
        throw std::invalid_argument("this model has no decoder; it can only embed");

    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)params_.n_ctx * (uint32_t)params_.n_parallel;
    cp.n_batch = params_.n_batch;
    cp.n_ubatch = params_.n_ubatch;
    cp.n_seq_max = params_.n_parallel;
    cp.n_threads = default_threads(params_.n_threads, false);
    cp.n_threads_batch = default_threads(params_.n_threads_batch, true);
    cp.flash_attn_type = params_.flash_attn < 0   ? LLAMA_FLASH_ATTN_TYPE_AUTO
                         : params_.flash_attn == 0 ? LLAMA_FLASH_ATTN_TYPE_DISABLED
                                                   : LLAMA_FLASH_ATTN_TYPE_ENABLED;
    cp.kv_unified = params_.kv_unified;
    // Sliding-window layers (Gemma 2/3, gpt-oss, Cohere 2, ...) keep a window-size cache, not a
    // full-context one: a fraction of the memory (llama-server's default too). assign() then reuses a
    // slot's prefix only while the window before it is still cached (prefix_reusable).
    cp.swa_full = false;
    cp.type_k = kv_cache_type(params_.cache_type_k, "cache_type_k");
    cp.type_v = kv_cache_type(params_.cache_type_v, "cache_type_v");
    check_kv_cache_types(*model_, cp.type_k, cp.type_v);
    // llama.cpp stores a quantized V cache only for flash attention (it is
    // read transposed otherwise). As llama-server: auto turns it on, off is refused.
    if (ggml_is_quantized(cp.type_v)) {
        if (params_.flash_attn == 0)
            throw std::invalid_argument("cache_type_v: a quantized V cache (" + params_.cache_type_v +
                                        ") needs flash attention; flash_attn is off");
        cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_ENABLED;
    }
    cp.no_perf = true;
    cp.offload_kqv = params_.offload_kqv;
    cp.embeddings = params_.embeddings;
    cp.op_offload = params_.op_offload;
    if (params_.poll < 0 || params_.poll > 100) throw std::invalid_argument("poll: must be 0 to 100");
    if (params_.prio < GGML_SCHED_PRIO_LOW || params_.prio > GGML_SCHED_PRIO_REALTIME)
        throw std::invalid_argument("prio: must be -1 (low) to 3 (realtime)");
    if (params_.cpumask.size() > GGML_MAX_N_THREADS)
        throw std::invalid_argument("cpumask: at most " + std::to_string(GGML_MAX_N_THREADS) + " CPUs");
    if (params_.threadpool) {
        // looked up in the CPU backend as llama-bench does (it may be a backend loaded at run time)
        ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
        ggml_backend_reg_t reg = cpu ? ggml_backend_dev_backend_reg(cpu) : nullptr;
        using new_fn = ggml_threadpool * (*)(ggml_threadpool_params *);
        using free_fn = void (*)(ggml_threadpool *);
        auto make = reg ? (new_fn)ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_new") : nullptr;
        auto drop = reg ? (free_fn)ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_free") : nullptr;
        if (!make || !drop) throw std::invalid_argument("threadpool: this build's CPU backend makes no threadpools");
        ggml_threadpool_params tpp = ggml_threadpool_params_default((int)std::max(cp.n_threads, cp.n_threads_batch));
        for (size_t i = 0; i < params_.cpumask.size(); ++i) tpp.cpumask[i] = params_.cpumask[i];
        tpp.strict_cpu = params_.cpu_strict;
        tpp.poll = (uint32_t)params_.poll;
        tpp.prio = (ggml_sched_priority)params_.prio;
        threadpool_ = std::unique_ptr<ggml_threadpool, void (*)(ggml_threadpool *)>(make(&tpp), drop);
        if (!threadpool_) throw ModelLoadError("ggml could not make a threadpool of " + std::to_string(tpp.n_threads) +
                                               " threads");
    }
    ctx_.reset(llama_init_from_model(model_->get(), cp));
    if (!ctx_) throw ModelLoadError("llama.cpp could not create a context of " + std::to_string(cp.n_ctx) +
                                    " tokens for '" + model_->path() + "' (out of memory?)");
    if (threadpool_) llama_attach_threadpool(ctx_.get(), threadpool_.get(), nullptr);
    memory_ = llama_get_memory(ctx_.get());
    n_swa_ = llama_model_n_swa(model_->get());
    n_params_ = llama_model_n_params(model_->get());
    n_layer_ = llama_model_n_layer(model_->get());
    n_embd_ = llama_model_n_embd(model_->get());
    kv_cache_bytes_ = kv_cache_size(*model_, llama_n_ctx(ctx_.get()), cp.type_k, cp.type_v);
    // llama.cpp pads the context and caps the batch at it: a slot still gets
    // exactly what was asked for (when it fits), and batches stay decodable.
    params_.n_ctx = std::min<int32_t>(params_.n_ctx, (int32_t)(llama_n_ctx(ctx_.get()) / (uint32_t)params_.n_parallel));
    params_.n_batch = std::min<int32_t>(params_.n_batch, (int32_t)llama_n_batch(ctx_.get()));

    if (draft) {
        ContextParams dp = params_;
        dp.n_threads = (int32_t)cp.n_threads;
        dp.n_threads_batch = (int32_t)cp.n_threads_batch;
        drafter_ = std::make_unique<DraftModel>(std::move(draft), *model_, dp);
    }
    // The engine thread and the OpenMP workers it starts (they inherit its name) are this model's
    // compute threads; the governor counts every other thread, jan's own included, as load.
    thread_name_ = ThreadGovernor::next_thread_name("jan-gen");
    governor_ = std::make_unique<ThreadGovernor>((int32_t)cp.n_threads, (int32_t)cp.n_threads_batch,
                                                 params_.adaptive_threads, thread_name_);
    n_threads_set_ = (int32_t)cp.n_threads;
    n_threads_batch_set_ = (int32_t)cp.n_threads_batch;
    // flash attention's split-KV decode path (ggml-cpu ops.cpp) is taken only for f16/f32 caches of
    // one type, and only when attention is (or may be, "auto") flash attention.
    split_kv_possible_ = cp.flash_attn_type != LLAMA_FLASH_ATTN_TYPE_DISABLED && cp.type_k == cp.type_v &&
                         (cp.type_k == GGML_TYPE_F16 || cp.type_k == GGML_TYPE_F32);
    metrics_.n_threads = governor_->n_threads();
    metrics_.n_threads_batch = governor_->n_threads_batch();
    batch_ = llama_batch_init(params_.n_batch, 0, 1);
    slots_.resize(params_.n_parallel);
    for (int32_t i = 0; i < params_.n_parallel; ++i) {
        slots_[i].id = i;
        slots_[i].lora = lora_applied_;
    }
    const bool cuttable = !llama_model_is_recurrent(model_->get()) && !llama_model_is_hybrid(model_->get());
    if (cuttable && params_.cache_ram_mib != 0)
        prompt_cache_ = PromptCache(params_.cache_ram_mib < 0 ? -1 : (int64_t)params_.cache_ram_mib << 20);
    metrics_.slots_total = params_.n_parallel;
    thread_ = std::thread([this] { run(); });
}

Scheduler::~Scheduler() {
    shutdown();
    llama_batch_free(batch_);
}

void Scheduler::shutdown() {
    // A forked child: the engine thread (and whoever held mutex_ when the parent forked) is not in this process;
    // locking could wait forever and joining throws. Python refuses every use of the model here (model.py's _live).
    if (forked()) return;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

std::shared_ptr<RequestState> Scheduler::submit(std::vector<llama_token> prompt, const SamplingParams & params,
                                                MediaTrack media) {
    params.validate(*model_);
    if (params.use_draft_model && params.draft_max > 0 && !drafter_)
        throw std::invalid_argument("speculative: 'draft' needs a draft model, and this model was loaded without one");
    if (prompt.empty()) throw std::invalid_argument("prompt: must contain at least one token");
    if (params.id_slot < -1 || params.id_slot >= params_.n_parallel)
        throw std::invalid_argument("id_slot: " + std::to_string(params.id_slot) +
                                    " is not a slot of this model (slots 0.." + std::to_string(params_.n_parallel - 1) +
                                    ", or -1 for any)");
    if (params.prompt_logprobs && !media.empty())
        throw std::invalid_argument("prompt_logprobs: not available for a prompt with images or audio");
    for (auto t : prompt)
        if (t != LLAMA_TOKEN_NULL) model_->check_token(t);  // [media] NULL entries are image/audio
    media.validate(prompt, llama_model_n_embd_inp(model_->get()), params_.n_ubatch);
    if ((int64_t)prompt.size() >= params_.n_ctx)
        throw ContextOverflowError("the prompt has " + std::to_string(prompt.size()) +
                                       " tokens but the context holds " + std::to_string(params_.n_ctx) +
                                       " (one more is needed to generate)",
                                   (long)prompt.size(), params_.n_ctx);
    std::vector<float> lora = resolve_lora(params);
    llama_sampler_ptr grammar = prepare_grammar(*model_, params);  // (outside the lock: it can take a while)
    auto request = std::make_shared<RequestState>();
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_) throw ModelClosedError("the model is being unloaded");
        const int32_t free_slots = params_.n_parallel - busy_.load();
        if ((int32_t)waiting_.size() - free_slots >= params_.max_queue)
            throw QueueFullError("all " + std::to_string(params_.n_parallel) + " slots are busy and " +
                                 std::to_string(waiting_.size()) + " requests are already waiting");
        waiting_.push_back({request, std::move(prompt), params, Clock::now(), std::move(media), std::move(grammar),
                            std::move(lora)});
        metrics_.requests_total++;
    }
    cv_.notify_all();
    return request;
}

std::vector<float> Scheduler::lora_defaults() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return lora_defaults_;
}

void Scheduler::set_lora_defaults(std::vector<float> scales) {
    check_lora_scales(scales, loras_.size(), "lora");
    std::lock_guard<std::mutex> lock(mutex_);
    lora_defaults_ = std::move(scales);
}

std::vector<float> Scheduler::resolve_lora(const SamplingParams & params) const {
    if (!params.lora_set) return lora_defaults();
    std::vector<float> scales(loras_.size(), 0.0f);
    std::vector<bool> seen(loras_.size(), false);
    for (const auto & [id, scale] : params.lora) {
        if (loras_.empty())
            throw std::invalid_argument("lora: this model was loaded without LoRA adapters");
        if (id < 0 || (size_t)id >= loras_.size())
            throw std::invalid_argument("lora: adapter id " + std::to_string(id) + " is out of range (0.." +
                                        std::to_string(loras_.size() - 1) + ")");
        if (seen[id]) throw std::invalid_argument("lora: adapter id " + std::to_string(id) + " is given twice");
        if (!std::isfinite(scale))
            throw std::invalid_argument("lora: the scale of adapter " + std::to_string(id) + " is not a finite number");
        seen[id] = true;
        scales[id] = scale;
    }
    return scales;
}

void Scheduler::apply_lora(const std::vector<float> & scales) {
    if (loras_.empty() || scales == lora_applied_) return;
    std::vector<llama_adapter_lora *> adapters;
    for (const auto & lora : loras_) adapters.push_back(lora->get());
    std::vector<float> copy = scales;  // (llama.cpp takes a non-const pointer)
    llama_set_adapters_lora(ctx_.get(), adapters.data(), adapters.size(), copy.data());
    lora_applied_ = scales;
}

void Scheduler::pick_lora_group() {
    if (loras_.empty()) {  // one group, of no scales: every busy slot (without the lists this step would allocate)
        for (auto & slot : slots_) slot.in_step = slot.state != SlotState::Idle;
        return;
    }
    // The groups in slot order; the one after last step's is next (the first when that one is gone), so every
    // group gets a step in turn however long another's requests run.
    std::vector<const std::vector<float> *> groups;
    for (const auto & slot : slots_) {
        if (slot.state == SlotState::Idle) continue;
        if (std::none_of(groups.begin(), groups.end(), [&](const auto * g) { return *g == slot.lora; }))
            groups.push_back(&slot.lora);
    }
    if (groups.empty()) {
        for (auto & slot : slots_) slot.in_step = false;
        return;
    }
    size_t pick = 0;
    for (size_t i = 0; i < groups.size(); ++i)
        if (*groups[i] == lora_last_group_) {
            pick = (i + 1) % groups.size();
            break;
        }
    std::vector<float> chosen = *groups[pick];
    for (auto & slot : slots_) slot.in_step = slot.state != SlotState::Idle && slot.lora == chosen;
    apply_lora(chosen);
    lora_last_group_ = std::move(chosen);
}

SchedulerMetrics Scheduler::metrics() const {
    std::lock_guard<std::mutex> lock(mutex_);
    SchedulerMetrics m = metrics_;
    m.slots_busy = busy_.load();
    m.queue_depth = (int32_t)waiting_.size() + starting_;
    return m;
}

void Scheduler::adapt_threads() {
    if (!governor_->update(Clock::now())) return;
    set_step_threads(governor_->n_threads(), governor_->n_threads_batch());
    // A draft only proposes tokens, which the target verifies; but other drafts make other target
    // batches, and whether llama.cpp's CPU matmuls give the same sums for every batch shape is not
    // something jan can promise. "exact" keeps the draft model's count, "always" adapts it.
    if (drafter_ && !params_.exact_threads)
        drafter_->set_n_threads(governor_->n_threads(), governor_->n_threads_batch());
}

void Scheduler::record_thread_metrics_locked() {
    metrics_.n_threads = governor_->n_threads();
    metrics_.n_threads_batch = governor_->n_threads_batch();
    metrics_.cpu_busy_elsewhere = governor_->cpu_busy_elsewhere();
    metrics_.thread_changes_total = governor_->changes();
    metrics_.threads_apart = governor_->threads_apart();
}

void Scheduler::set_step_threads(int32_t n_threads, int32_t n_threads_batch) {
    if (n_threads == n_threads_set_ && n_threads_batch == n_threads_batch_set_) return;
    llama_set_n_threads(ctx_.get(), n_threads, n_threads_batch);
    n_threads_set_ = n_threads;
    n_threads_batch_set_ = n_threads_batch;
}

bool Scheduler::thread_count_matters(const Slot & slot) const {
    // The only op whose result depends on the thread count: flash attention over one query token
    // (a one-token ubatch, neq1 == 1) with a KV view of >= 512 cells sums per-thread chunks of the
    // view, then merges them (ggml-cpu ops.cpp, use_split_kv_path). llama.cpp's view is the cells up
    // to the highest one used, padded to 256 (llama_kv_cache::get_n_kv), so it reaches 512 once more
    // than 256 cells are used. A slot's own KV stream fills its cells in order (freed cells at the end
    // are reused first), so that is its cache length, this step's token included; a unified cache
    // mixes all slots' cells.
    if (!split_kv_possible_) return false;
    if (params_.kv_unified) return llama_n_ctx(ctx_.get()) >= 512;
    return slot.cache.size() > 256;
}

bool Scheduler::has_work_locked() const {
    return stopping_ || !waiting_.empty() || busy_.load() > 0 || !slot_ops_.empty() || !info_ops_.empty();
}

namespace {

// A file being written under a temporary name: renamed over its real name by commit(), removed otherwise (a save
// that failed halfway leaves neither a torn file under the real name nor a stray temporary one).
class PendingFile {
public:
    explicit PendingFile(std::string path)
        : path_(std::move(path)), tmp_(path_ + ".tmp-" + std::to_string(::getpid()) + "-" +
                                       std::to_string(counter_.fetch_add(1))) {}
    ~PendingFile() {
        if (!committed_) std::remove(tmp_.c_str());
    }
    PendingFile(const PendingFile &) = delete;
    PendingFile & operator=(const PendingFile &) = delete;
    const std::string & tmp() const { return tmp_; }
    // Throws EngineError saying why the file cannot be written (llama.cpp's save returns 0 and tells no cause: a
    // folder without write permission or on a read-only disk read as "could not write" and nothing more).
    void check_writable() const {
        std::FILE * f = std::fopen(tmp_.c_str(), "wb");
        if (!f)
            throw EngineError("Unable to save slot: cannot write a file in the slot folder (" + path_ + "): " +
                              std::strerror(errno));
        std::fclose(f);
    }
    void commit() {
        if (std::rename(tmp_.c_str(), path_.c_str()) != 0)
            throw EngineError("Unable to save slot: cannot rename the file into place: " +
                              std::string(std::strerror(errno)));
        committed_ = true;
    }

private:
    static inline std::atomic<uint64_t> counter_{0};
    std::string path_, tmp_;
    bool committed_ = false;
};

// A slot file's tokens as llama-server packs them (its server_tokens state, read by newer llama-servers): the
// LLAMA_TOKEN_NULL marker, a format version, the token count, the tokens (an image's or audio's entries
// LLAMA_TOKEN_NULL), the media count and each one's first entry, then each media chunk as libmtmd serializes it (its
// byte count, its bytes), the whole padded to whole tokens. Text alone: three numbers before the tokens, one after.
constexpr size_t kPackedHeader = 4;
constexpr uint32_t kPackedVersion = 1;

// What a slot file holds: its tokens and, for a packed one with images or audio, where those lie.
struct SlotFileContent {
    std::vector<llama_token> tokens;
    MediaTrack media;
};

// A slot's tokens and media packed as llama-server packs them, for llama_state_seq_save_file (a slot of text alone is
// saved as its plain token list, as before: what older llama-servers read too).
std::vector<llama_token> pack_slot(const std::vector<llama_token> & tokens, const MediaTrack & media) {
    std::vector<char> data;
    auto put = [&](const void * p, size_t n) {
        const char * c = static_cast<const char *>(p);
        data.insert(data.end(), c, c + n);
    };
    auto put_u32 = [&](size_t v) {
        if (v > UINT32_MAX) throw EngineError("Unable to save slot: an image or audio chunk is too big to save");
        const uint32_t u = (uint32_t)v;
        put(&u, sizeof(u));
    };
    const llama_token marker = LLAMA_TOKEN_NULL;
    put(&marker, sizeof(marker));
    put_u32(kPackedVersion);
    put_u32(tokens.size());
    put(tokens.data(), tokens.size() * sizeof(llama_token));
    put_u32(media.spans().size());
    for (const auto & span : media.spans()) put_u32(span.start);
    for (const auto & span : media.spans()) {
        size_t n = 0;
        const mtmd_input_chunk * chunk = span.chunk->chunk.get();
        std::vector<char> bytes;
        if (chunk && mtmd_input_chunk_save(chunk, nullptr, 0, &n) == 0 && n > 0) {
            bytes.resize(n);
            if (mtmd_input_chunk_save(chunk, bytes.data(), bytes.size(), nullptr) != 0) bytes.clear();
        }
        if (bytes.empty())
            throw EngineError("Unable to save slot: libmtmd could not serialize an image or audio chunk");
        put_u32(bytes.size());
        put(bytes.data(), bytes.size());
    }
    data.resize((data.size() + sizeof(llama_token) - 1) / sizeof(llama_token) * sizeof(llama_token), 0);
    std::vector<llama_token> packed(data.size() / sizeof(llama_token));
    std::memcpy(packed.data(), data.data(), data.size());
    return packed;
}

// The tokens (and media) a slot file holds: a plain list (jan's text saves, older llama-servers') as it is, a packed
// one unpacked, its media chunks read back with libmtmd and named as Projector names a prompt's (their id and
// ordinal), so that a prompt with the same images continues them. SlotFileError for ids outside the vocabulary, more
// than `n_ctx` tokens, a packed state of another version, media that do not cover exactly the media entries, or one
// cut short.
SlotFileContent slot_file_content(std::vector<llama_token> tokens, int32_t n_vocab, int32_t n_ctx) {
    const std::string bad = "Unable to restore slot: not a slot file of this model";
    SlotFileContent out;
    std::vector<bool> covered;
    if (!tokens.empty() && tokens[0] == LLAMA_TOKEN_NULL) {
        const char * data = reinterpret_cast<const char *>(tokens.data());
        const size_t size = tokens.size() * sizeof(llama_token);
        size_t at = sizeof(llama_token);
        auto get_u32 = [&]() {
            if (size - at < sizeof(uint32_t)) throw SlotFileError(bad);
            uint32_t v = 0;
            std::memcpy(&v, data + at, sizeof(v));
            at += sizeof(v);
            return v;
        };
        if (get_u32() != kPackedVersion) throw SlotFileError(bad);
        const size_t n = get_u32();
        if (n > (size - at) / sizeof(llama_token)) throw SlotFileError(bad);
        out.tokens.resize(n);
        std::memcpy(out.tokens.data(), data + at, n * sizeof(llama_token));
        at += n * sizeof(llama_token);
        const size_t n_media = get_u32();
        if (n_media > (size - at) / sizeof(uint32_t)) throw SlotFileError(bad);
        std::vector<size_t> starts;
        for (size_t i = 0; i < n_media; ++i) starts.push_back(get_u32());
        covered.assign(n, false);
        std::unordered_map<std::string, int> seen;  // (slices of one image share its id: Projector::tokenize's names)
        size_t previous_end = 0;
        for (size_t i = 0; i < n_media; ++i) {
            const size_t len = get_u32();
            if (len == 0 || len > size - at) throw SlotFileError(bad);
            mtmd::input_chunk_ptr chunk(mtmd_input_chunk_load(data + at, len));
            at += len;
            if (!chunk)
                throw SlotFileError("Unable to restore slot: an image or audio chunk of the file is unreadable");
            const auto type = mtmd_input_chunk_get_type(chunk.get());
            const size_t start = starts[i];
            const size_t n_chunk = mtmd_input_chunk_get_n_tokens(chunk.get());
            if (type == MTMD_INPUT_CHUNK_TYPE_TEXT || n_chunk == 0 || start < previous_end || start > n ||
                n_chunk > n - start)
                throw SlotFileError(bad);
            for (size_t k = start; k < start + n_chunk; ++k) {
                if (out.tokens[k] != LLAMA_TOKEN_NULL) throw SlotFileError(bad);
                covered[k] = true;
            }
            previous_end = start + n_chunk;
            auto mc = std::make_shared<MediaChunk>();
            const char * id = mtmd_input_chunk_get_id(chunk.get());
            const std::string base = id ? id : "";
            mc->id = base.empty() ? std::string() : base + "#" + std::to_string(seen[base]++);
            mc->n_tokens = (int32_t)n_chunk;
            mc->n_pos = mtmd_input_chunk_get_n_pos(chunk.get());
            mc->audio = type == MTMD_INPUT_CHUNK_TYPE_AUDIO;
            mc->chunk = std::move(chunk);
            out.media.add(start, std::move(mc));
        }
        if (size - at >= sizeof(llama_token)) throw SlotFileError(bad);  // (more than the padding after the state)
    } else {
        out.tokens = std::move(tokens);
        covered.assign(out.tokens.size(), false);
    }
    if (out.tokens.size() > (size_t)n_ctx)
        throw SlotFileError("Unable to restore slot: the file holds " + std::to_string(out.tokens.size()) +
                            " tokens, more than a slot's context (" + std::to_string(n_ctx) + ")");
    for (size_t i = 0; i < out.tokens.size(); ++i)
        if (!covered[i] && (out.tokens[i] < 0 || out.tokens[i] >= n_vocab)) throw SlotFileError(bad);
    return out;
}

// How many KV streams the cache whose state follows a sequence file's `n_tokens` tokens was saved with (llama.cpp's
// KV cache writes that count first: one per slot, or one for a unified cache), or 0 where the file is too short.
uint32_t slot_file_streams(const std::string & path, size_t n_tokens) {
    std::FILE * f = std::fopen(path.c_str(), "rb");
    if (!f) return 0;
    uint32_t streams = 0;
    const long at = (long)(3 * sizeof(uint32_t) + n_tokens * sizeof(llama_token));
    if (std::fseek(f, at, SEEK_SET) != 0 || std::fread(&streams, sizeof(streams), 1, f) != 1) streams = 0;
    std::fclose(f);
    return streams;
}

// The LoRA scales a save's KV was computed under, one per line after a header, written beside the slot file.
void write_lora_scales(const std::string & path, const std::vector<float> & scales) {
    std::FILE * f = std::fopen(path.c_str(), "w");
    if (!f)
        throw EngineError("Unable to save slot: cannot write its LoRA scales: " + std::string(std::strerror(errno)));
    bool ok = std::fprintf(f, "jan-slot-lora 1\n%zu\n", scales.size()) > 0;
    for (float scale : scales) ok = ok && std::fprintf(f, "%.9g\n", (double)scale) > 0;
    ok = (std::fclose(f) == 0) && ok;
    if (!ok) throw EngineError("Unable to save slot: cannot write its LoRA scales");
}

// The scales write_lora_scales wrote at `path`: empty when there is no such file, or it tells scales of 0 only for
// a model with no adapters; SlotFileError for a file that is not one, or tells scales for another count of adapters.
std::vector<float> read_lora_scales(const std::string & path, size_t n_adapters) {
    std::FILE * f = std::fopen(path.c_str(), "r");
    if (!f) return {};
    std::vector<float> scales;
    int version = 0;
    size_t n = 0;
    bool ok = std::fscanf(f, "jan-slot-lora %d %zu", &version, &n) == 2 && version == 1 && n <= 4096;
    for (size_t i = 0; ok && i < n; ++i) {
        float scale = 0.0f;
        ok = std::fscanf(f, "%f", &scale) == 1 && std::isfinite(scale);
        scales.push_back(scale);
    }
    std::fclose(f);
    if (!ok) throw SlotFileError("Unable to restore slot: its LoRA scales file (" + path + ") is not one jan wrote");
    if (n_adapters == 0 && std::all_of(scales.begin(), scales.end(), [](float x) { return x == 0.0f; })) return {};
    if (scales.size() != n_adapters)
        throw SlotFileError("Unable to restore slot: it was saved under " + std::to_string(scales.size()) +
                            " LoRA adapters, and this model has " + std::to_string(n_adapters) +
                            ": its cache was computed with other weights");
    return scales;
}

std::string cache_layout(uint32_t streams) {
    return streams == 1 ? "one cache for all slots (--parallel 1, or a unified KV cache)"
                        : "a cache for each of " + std::to_string(streams) + " slots (--parallel " +
                              std::to_string(streams) + ")";
}

}  // namespace

std::string Scheduler::slot_file_mismatch(const std::string & path, size_t n_tokens) const {
    // (a recurrent model's state opens with its cells, not a stream count: nothing to compare)
    if (llama_model_is_recurrent(model_->get()) && !llama_model_is_hybrid(model_->get())) return {};
    const uint32_t saved = slot_file_streams(path, n_tokens);
    const uint32_t here = params_.kv_unified ? 1u : (uint32_t)params_.n_parallel;
    if (saved == 0 || saved == here || saved > 4096) return {};
    return "Unable to restore slot: the file was saved with " + cache_layout(saved) + ", and this model has " +
           cache_layout(here) + ": restore it into the model it was saved from, loaded with the same slots";
}

Scheduler::SlotActionResult Scheduler::slot_action(SlotAction action, int32_t id_slot, const std::string & path,
                                                   bool media) {
    if (id_slot < 0 || id_slot >= (int32_t)slots_.size())
        throw std::invalid_argument("Invalid slot ID: " + std::to_string(id_slot) + " (this model's slots are 0.." +
                                    std::to_string(slots_.size() - 1) + ")");
    if (action != SlotAction::Erase && path.empty()) throw std::invalid_argument("a slot file needs a path");
    std::future<SlotActionResult> result;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_) throw ModelClosedError("the model was unloaded");
        slot_ops_.push_back({action, id_slot, path, media, {}});
        result = slot_ops_.back().done.get_future();
    }
    cv_.notify_all();
    return result.get();  // (rethrows the action's error)
}

void Scheduler::run_slot_ops(std::unique_lock<std::mutex> & lock) {
    for (auto it = slot_ops_.begin(); it != slot_ops_.end();) {
        Slot & slot = slots_[it->id_slot];
        if (slot.state != SlotState::Idle) {  // deferred until its request ends (llama-server's defer)
            ++it;
            continue;
        }
        SlotOp op = std::move(*it);
        it = slot_ops_.erase(it);
        lock.unlock();
        try {
            op.done.set_value(do_slot_action(slot, op.action, op.path, op.media));
        } catch (...) {
            op.done.set_exception(std::current_exception());
        }
        lock.lock();
        it = slot_ops_.begin();  // (the deque may have grown meanwhile: start over; those run are gone)
    }
}

std::vector<Scheduler::SlotInfo> Scheduler::slots_info() {
    std::future<std::vector<SlotInfo>> result;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_) throw ModelClosedError("the model was unloaded");
        info_ops_.emplace_back();
        result = info_ops_.back().get_future();
    }
    cv_.notify_all();
    return result.get();
}

Scheduler::SlotInfo Scheduler::slot_info(const Slot & slot) const {
    SlotInfo info;
    info.id = slot.id;
    info.is_processing = slot.state != SlotState::Idle;
    info.n_cache_tokens = (int32_t)slot.cache.size();
    if (slot.id_task < 0) return info;  // (no request since load)
    info.has_task = true;
    info.id_task = slot.id_task;
    info.n_prompt_tokens = slot.n_prompt_last;
    info.params = slot.params;
    info.lora = slot.lora;
    // An idle slot tells its last request's number, prompt and params, and counts of 0 (n_remain -1): llama-server
    // resets a slot's counts when its request ends and keeps the request as its previous task.
    if (!info.is_processing) return info;
    info.n_prompt_cached = slot.n_cached;
    info.n_prompt_processed = std::max<int32_t>(0, (int32_t)slot.prompt_done - slot.n_cached);
    info.n_decoded = slot.n_generated;
    info.n_remain = slot.params.max_tokens < 0 ? -1 : std::max(0, slot.params.max_tokens - slot.n_generated);
    info.has_next_token = true;
    info.has_new_line = slot.has_new_line;
    return info;
}

Scheduler::SlotActionResult Scheduler::do_slot_action(Slot & slot, SlotAction action, const std::string & path,
                                                      bool media) {
    const auto t0 = Clock::now();
    SlotActionResult out;
    out.id_slot = slot.id;
    auto clear = [&] {
        llama_memory_seq_rm(memory_, slot.id, -1, -1);
        slot.cache.clear();
        slot.cache_media.clear();
    };
    if (action == SlotAction::Erase) {
        out.n_tokens = slot.cache.size();
        clear();
    } else if (action == SlotAction::Save) {
        // (images or audio: packed with their chunks as llama-server packs them, its restore reads them back)
        const std::vector<llama_token> packed =
            slot.cache_media.empty() ? std::vector<llama_token>{} : pack_slot(slot.cache, slot.cache_media);
        const std::vector<llama_token> & saved = slot.cache_media.empty() ? slot.cache : packed;
        PendingFile file(path);
        file.check_writable();
        const size_t written = llama_state_seq_save_file(ctx_.get(), file.tmp().c_str(), slot.id, saved.data(),
                                                         saved.size());
        if (written == 0) throw EngineError("Unable to save slot: llama.cpp could not write " + path);
        const std::string lora_path = path + kLoraSuffix;
        if (!loras_.empty()) {
            // (written whole before either is renamed into place: a failed save leaves the old pair as it was)
            PendingFile scales(lora_path);
            write_lora_scales(scales.tmp(), slot.lora);
            file.commit();
            scales.commit();
        } else {
            file.commit();
            std::remove(lora_path.c_str());  // (an earlier save's scales under this name no longer hold)
        }
        out.n_tokens = slot.cache.size();
        out.n_bytes = written;
    } else {
        clear();  // (what the slot held goes whatever the file holds: an empty slot on failure, as llama-server's)
        struct stat st {};
        if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
            throw SlotFileError("Unable to restore slot: no such slot file");
        size_t n_tokens = 0;
        size_t read = llama_state_seq_load_file(ctx_.get(), path.c_str(), slot.id, nullptr, 0, &n_tokens);
        if (read == 0) throw SlotFileError("Unable to restore slot: not a slot file of this model");
        const size_t n_file_tokens = n_tokens;
        // (a packed state holds its media chunks among its "tokens": bounded by the file, not the context, here)
        if (n_tokens > (size_t)params_.n_ctx + kPackedHeader && n_tokens > (size_t)st.st_size / sizeof(llama_token))
            throw SlotFileError("Unable to restore slot: the file holds " + std::to_string(n_tokens) +
                                " tokens, more than a slot's context (" + std::to_string(params_.n_ctx) + ")");
        std::vector<llama_token> tokens(std::max<size_t>(1, n_tokens));
        read = llama_state_seq_load_file(ctx_.get(), path.c_str(), slot.id, tokens.data(), tokens.size(), &n_tokens);
        tokens.resize(n_tokens);
        SlotFileContent content;
        try {
            if (read == 0) {  // (its tokens read, its state refused: llama.cpp tells no reason but in its log)
                const std::string other = slot_file_mismatch(path, n_file_tokens);
                throw SlotFileError(other.empty() ? "Unable to restore slot: not a slot file of this model as it is "
                                                    "loaded (the file is another model's, or was saved with other "
                                                    "cache settings: cache types, flash attention)"
                                                  : other);
            }
            content = slot_file_content(std::move(tokens), model_->n_vocab(), params_.n_ctx);
            // (its KV holds them, but no prompt of a model without a projector can continue them)
            if (!media && !content.media.empty())
                throw SlotFileError("Unable to restore slot: the file holds " +
                                    std::to_string(content.media.spans().size()) + " image or audio chunk(s), and "
                                    "this model was loaded without a projector (mmproj): load it with the projector "
                                    "the slot was saved with");
        } catch (...) {
            clear();  // (the state may be in the sequence already: gone with the tokens that did not check out)
            throw;
        }
        std::vector<float> scales;
        try {
            scales = read_lora_scales(path + kLoraSuffix, loras_.size());
        } catch (...) {
            clear();
            throw;
        }
        slot.cache = std::move(content.tokens);
        slot.cache_media = std::move(content.media);
        if (scales.empty()) {
            // (a file without scales, llama-server's or one saved without adapters: taken as computed under the
            // defaults, as llama-server takes a restored slot as computed under its adapters' scales of the moment)
            std::lock_guard<std::mutex> lock(mutex_);
            scales = lora_defaults_;
        }
        slot.lora = std::move(scales);
        slot.last_used = ++use_counter_;
        out.n_tokens = slot.cache.size();
        out.n_bytes = read;
    }
    out.ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    return out;
}

Scheduler::Slot * Scheduler::pick_slot(const Pending & pending) {
    // A slot whose cache this prompt continues is taken, the longest shared prefix first (only the rest is
    // evaluated): "continues" means the shared prefix is at least half of what the slot holds, or half of the
    // prompt — a next turn of that conversation, or the same long document with a new question. A prefix that
    // is only a shared start (BOS, a chat template's header, a short system prompt) is no reason to overwrite
    // another conversation's cache: then an empty slot is taken, else the least recently used one, so that
    // with N slots the N most recent conversations all keep their caches. (Taking the longest prefix always
    // made every new conversation overwrite the last one's slot, since a used slot shares at least the BOS.)
    // A request pinned to a slot (SamplingParams::id_slot) takes that one once it is idle, and nothing else.
    if (pending.params.id_slot >= 0) {
        Slot & pinned = slots_[pending.params.id_slot];
        return pinned.state == SlotState::Idle ? &pinned : nullptr;
    }
    Slot * reuse = nullptr;
    size_t reuse_prefix = 0;
    Slot * empty = nullptr;
    Slot * lru = nullptr;
    for (auto & slot : slots_) {
        if (slot.state != SlotState::Idle) continue;
        if (!lru || slot.last_used < lru->last_used) lru = &slot;
        const size_t cached = slot.cache.size();
        if (cached == 0) {
            if (!empty || slot.last_used < empty->last_used) empty = &slot;
            continue;
        }
        // (KV computed under other LoRA scales is no prefix of this request's)
        const size_t prefix = slot.lora == pending.lora
                                  ? common_prefix(slot.cache, slot.cache_media, pending.prompt, pending.media)
                                  : 0;
        const bool continues = continues_prefix(prefix, cached, pending.prompt.size());
        if (continues && (!reuse || prefix > reuse_prefix || (prefix == reuse_prefix && slot.last_used < reuse->last_used))) {
            reuse = &slot;
            reuse_prefix = prefix;
        }
    }
    if (reuse) return reuse;
    return empty ? empty : lru;
}

void Scheduler::swap_saved_prompt(Slot & slot, const Pending & pending) {
    if (!prompt_cache_.enabled()) return;
    const size_t here = slot.lora == pending.lora
                            ? common_prefix(slot.cache, slot.cache_media, pending.prompt, pending.media)
                            : 0;
    const bool continues = continues_prefix(here, slot.cache.size(), pending.prompt.size());
    // (every prompt token's logits are wanted: all of it is evaluated whatever is cached)
    const size_t better =
        pending.params.prompt_logprobs ? 0 : prompt_cache_.best_prefix(pending.prompt, here, pending.lora);
    // Another conversation takes the slot, or this prompt branches off 32 tokens or more before the end of what
    // the slot holds (another thread after the same long system prompt, which pick_slot counts as continuing the
    // slot): what the slot holds goes to host memory first (a media prompt's is not kept). Not for a prompt the
    // slot holds whole (a retry, "regenerate"): the reply it cuts off is seldom asked for again, and the copy of
    // the whole sequence would delay its first token (hundreds of MB on a 7B model's long conversation); nor for
    // a shorter tail, cheaper to evaluate again than that copy.
    constexpr size_t kSavedTail = 32;
    const bool branches = here + 1 < pending.prompt.size() && slot.cache.size() >= here + kSavedTail;
    if ((better > 0 || !continues || branches) && slot.cache_media.empty())
        prompt_cache_.save(ctx_.get(), slot.id, slot.cache, slot.lora);
    if (better == 0) return;
    std::vector<llama_token> tokens;
    if (prompt_cache_.restore(ctx_.get(), slot.id, pending.prompt, here, pending.lora, tokens)) {
        slot.cache = std::move(tokens);
        slot.lora = pending.lora;  // (what the restored KV was computed under)
    } else {  // (llama.cpp refused the saved state, or the save above made room by dropping it)
        llama_memory_seq_rm(memory_, slot.id, -1, -1);
        slot.cache.clear();
    }
    slot.cache_media.clear();
}

void Scheduler::swap_saved_prompt_counted(Slot & slot, const Pending & pending) {
    swap_saved_prompt(slot, pending);
    std::lock_guard<std::mutex> lock(mutex_);
    metrics_.prompt_cache_bytes = prompt_cache_.bytes();
    metrics_.prompt_cache_prompts = (int32_t)prompt_cache_.size();
}

void Scheduler::assign(Slot & slot, Pending && pending) {
    swap_saved_prompt_counted(slot, pending);
    size_t keep = slot.lora == pending.lora
                      ? common_prefix(slot.cache, slot.cache_media, pending.prompt, pending.media)
                      : 0;  // KV computed under other LoRA scales: evaluated again
    slot.lora = pending.lora;
    // The last prompt token is always evaluated: its logits pick the first token.
    if (keep >= pending.prompt.size()) keep = pending.prompt.size() - 1;
    if (pending.params.prompt_logprobs) keep = 0;  // every prompt token's logits are wanted
    keep = pending.media.boundary_at_or_before(keep);  // [media] a chunk is evaluated whole
    if (!prefix_reusable(memory_, slot.id, slot.cache_media.pos_at(keep), n_swa_)) keep = 0;
    if (!llama_memory_seq_rm(memory_, slot.id, slot.cache_media.pos_at(keep), -1)) {
        llama_memory_seq_rm(memory_, slot.id, -1, -1);  // partial removal unsupported (recurrent models)
        keep = 0;
    }
    slot.cache.resize(keep);
    slot.cache_media.truncate(keep);
    slot.prompt_media = std::move(pending.media);
    slot.request = std::move(pending.request);
    slot.request->set_slot(slot.id);
    slot.prompt = std::move(pending.prompt);
    slot.params = std::move(pending.params);
    slot.prompt_done = keep;
    slot.n_cached = (int32_t)keep;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        metrics_.cached_tokens_total += keep;
    }
    slot.n_generated = 0;
    slot.id_task = n_tasks_++;
    slot.n_prompt_last = (int32_t)slot.prompt.size();
    slot.has_new_line = false;
    slot.i_batch = -1;
    slot.lp_count = 0;
    slot.sampler = build_sampler(*model_, slot.params, params_.n_ctx, slot.prompt, std::move(pending.grammar),
                                 slot.request->end_reasoning_flag());
    slot.stream = std::make_unique<TextStream>(slot.params.stop);
    slot.t_submitted = pending.submitted;
    slot.t_started = Clock::now();
    slot.last_used = ++use_counter_;
    slot.state = SlotState::Prefill;
    busy_.fetch_add(1);
}

// A request's counts and timings up to `now`: the final usage, and each token event's progress.
Usage Scheduler::usage_so_far(const Slot & slot, Clock::time_point now) const {
    Usage u;
    u.prompt_tokens = (int32_t)slot.prompt.size();
    u.completion_tokens = slot.n_generated;
    u.cached_tokens = slot.n_cached;
    u.draft_tokens = slot.n_drafted;
    u.draft_accepted = slot.n_accepted;
    u.queue_ms = ms_between(slot.t_submitted, slot.t_started);
    const bool got_first = slot.n_generated > 0;
    u.prompt_ms = ms_between(slot.t_started, got_first ? slot.t_first_token : now);
    u.generation_ms = got_first ? ms_between(slot.t_first_token, now) : 0.0;
    return u;
}

void Scheduler::finish(Slot & slot, const std::string & reason, const std::string & error) {
    Event ev;
    if (slot.stream && reason != "error" && reason != "cancelled") ev.text = slot.stream->flush();
    ev.final = true;
    ev.finish_reason = reason;
    ev.error = error;
    if (slot.stream && slot.stream->stopped()) ev.stop_string = slot.stream->matched_stop();
    // the prompt time of the decodes so far is in the metrics before the caller hears the end (a request that
    // ends at its first token ends before its step settles it)
    settle_prompt_time();
    const auto now = Clock::now();
    ev.usage = usage_so_far(slot, now);
    slot.n_drafted = slot.n_accepted = 0;
    slot.draft.clear();
    {
        std::lock_guard<std::mutex> lock(mutex_);
        metrics_.requests_finished++;
        if (reason == "cancelled") metrics_.requests_cancelled++;
        if (reason == "error") metrics_.requests_failed++;
        if (busy_.load() == 1) metrics_.busy_seconds += std::chrono::duration<double>(now - busy_since_).count();
        if (ev.usage.completion_tokens > 0) {  // (as llama-server adds a slot's generation when it is released)
            metrics_.predicted_tokens += (uint64_t)ev.usage.completion_tokens;
            metrics_.predicted_steps += (uint64_t)ev.usage.completion_tokens - 1;
            // at least a microsecond: one token's generation ends where it starts
            metrics_.predicted_seconds += std::max(ev.usage.generation_ms / 1000.0, 1e-6);
        }
    }
    // The slot is free before the caller hears the end, so metrics read
    // right after a request finishes already show it idle.
    auto request = std::move(slot.request);
    slot.sampler = SlotSampler{};
    slot.stream.reset();
    slot.prompt.clear();
    slot.prompt_media.clear();
    slot.state = SlotState::Idle;
    slot.i_batch = -1;
    busy_.fetch_sub(1);
    request->push(std::move(ev));
}

void Scheduler::emit_prompt_logprobs(Slot & slot) {
    // The logits at prompt position p score the token at p + 1 (log-softmax over the raw logits, as for
    // generated tokens); the last prompt token's score the first generated token, which sample_slot reports.
    Event ev;
    const int32_t n_vocab = model_->n_vocab();
    for (int32_t k = 0; k < slot.lp_count; ++k) {
        const size_t pos = slot.lp_pos + (size_t)k;
        if (pos == 0) {
            GeneratedToken first;
            first.id = slot.prompt[0];
            first.logprob = std::numeric_limits<float>::quiet_NaN();  // nothing before it to score it
            ev.prompt_tokens.push_back(std::move(first));
        }
        if (pos + 1 >= slot.prompt.size()) continue;
        GeneratedToken t;
        t.id = slot.prompt[pos + 1];
        const float * logits = llama_get_logits_ith(ctx_.get(), slot.lp_batch + k);
        float log_z = 0.0f;
        t.logprob = logprob_of(logits, n_vocab, t.id, &log_z);
        if (slot.params.n_probs > 0) t.top = top_logprobs(logits, n_vocab, slot.params.n_probs, log_z);
        ev.prompt_tokens.push_back(std::move(t));
    }
    slot.lp_count = 0;
    slot.request->push(std::move(ev));
}

void Scheduler::sample_slot(Slot & slot) {
    const int32_t idx = slot.i_batch;
    slot.i_batch = -1;
    const llama_token token = sample_token(slot.sampler, ctx_.get(), idx);
    if (slot.n_generated == 0) slot.t_first_token = Clock::now();
    slot.n_generated++;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        metrics_.generated_tokens_total++;
    }

    // (with ignore_eos, the chain yields one only where nothing else is left: a grammar that has finished)
    if (model_->is_eog(token)) {
        slot.n_generated--;  // the end-of-generation token is not part of the completion
        finish(slot, "stop");
        return;
    }

    GeneratedToken out;
    out.id = token;
    out.piece = model_->token_to_piece(token, slot.params.shows_special(token));
    if (slot.params.post_sampling_probs && (slot.params.n_probs > 0 || slot.params.logprobs)) {
        out.top = post_sampling_top(slot.sampler, token, slot.params.n_probs, &out.logprob);
    } else if (slot.params.n_probs > 0 || slot.params.logprobs) {
        const float * logits = llama_get_logits_ith(ctx_.get(), idx);
        float log_z = 0.0f;
        out.logprob = logprob_of(logits, model_->n_vocab(), token, &log_z);
        if (slot.params.n_probs > 0) out.top = top_logprobs(logits, model_->n_vocab(), slot.params.n_probs, log_z);
    }
    if (out.piece.find('\n') != std::string::npos) slot.has_new_line = true;
    Event ev;
    ev.text = slot.stream->push(out.piece);
    ev.tokens.push_back(std::move(out));
    if (slot.n_generated == 1) ev.cached_tokens = slot.n_cached;
    ev.usage = usage_so_far(slot, Clock::now());
    ev.progress = true;
    slot.request->push(std::move(ev));

    if (slot.stream->stopped()) {
        finish(slot, "stop");
    } else if (slot.params.max_tokens >= 0 && slot.n_generated >= slot.params.max_tokens) {
        finish(slot, "length");
    } else if ((int32_t)slot.cache.size() >= params_.n_ctx) {
        finish(slot, "length");  // no room left to evaluate the token just sampled
    } else {
        slot.next_token = token;
        slot.state = SlotState::Generate;
    }
}

void Scheduler::queue_prompt_time(uint64_t n_tokens, Clock::time_point decode_start) {
    if (prompt_queued_ == 0) prompt_queued_since_ = decode_start;
    prompt_queued_ += n_tokens;
}

void Scheduler::settle_prompt_time() {
    if (prompt_queued_ == 0) return;
    llama_synchronize(ctx_.get());  // (a decode without output may still be computing)
    const double seconds = std::chrono::duration<double>(Clock::now() - prompt_queued_since_).count();
    std::lock_guard<std::mutex> lock(mutex_);
    metrics_.prompt_seconds += seconds;
    metrics_.prompt_tokens_timed += prompt_queued_;
    prompt_queued_ = 0;
}

void Scheduler::run() {
#ifdef __linux__
    pthread_setname_np(pthread_self(), thread_name_.c_str());
#endif
    while (true) {
        {
            std::unique_lock<std::mutex> lock(mutex_);
            if (busy_.load() == 0) {
                // Idle: keep the governor's reading recent for a while (thread_governor.h), then sleep
                // until there is work.
                const int samples = governor_->adaptive() ? ThreadGovernor::kIdleSamples : 0;
                for (int i = 0; i < samples && !has_work_locked(); ++i) {
                    if (cv_.wait_for(lock, ThreadGovernor::kInterval, [&] { return has_work_locked(); })) break;
                    lock.unlock();
                    adapt_threads();
                    lock.lock();
                    record_thread_metrics_locked();
                }
                cv_.wait(lock, [&] { return has_work_locked(); });
                busy_since_ = Clock::now();
                governor_->resume();
            }
            if (stopping_) break;
            run_slot_ops(lock);  // (before new requests take slots: a restore's tokens are there for them)
            // (only the engine thread touches slots_: a snapshot taken here, between steps, is consistent)
            for (auto & op : info_ops_) {
                std::vector<SlotInfo> out;
                for (const auto & slot : slots_) out.push_back(slot_info(slot));
                op.set_value(std::move(out));
            }
            info_ops_.clear();
            // In order; one pinned to a busy slot (SamplingParams::id_slot) waits for it without holding up
            // those behind it, and still comes before them when its slot frees (it is met first).
            for (size_t i = 0; i < waiting_.size();) {
                if (waiting_[i].request->cancelled()) {
                    Event ev;
                    ev.final = true;
                    ev.finish_reason = "cancelled";
                    waiting_[i].request->push(std::move(ev));
                    metrics_.requests_finished++;
                    metrics_.requests_cancelled++;
                    waiting_.erase(waiting_.begin() + (std::ptrdiff_t)i);
                    continue;
                }
                Slot * slot = pick_slot(waiting_[i]);
                if (!slot) {
                    if (busy_.load() + starting_ >= params_.n_parallel) break;  // no slot idle: none can start
                    ++i;
                    continue;
                }
                Pending pending = std::move(waiting_[i]);
                waiting_.erase(waiting_.begin() + (std::ptrdiff_t)i);
                ++starting_;
                lock.unlock();
                auto request = pending.request;
                bool failed = false;
                try {
                    assign(*slot, std::move(pending));
                } catch (const std::exception & e) {
                    Event ev;
                    ev.final = true;
                    ev.finish_reason = "error";
                    ev.error = e.what();
                    request->push(std::move(ev));
                    failed = true;
                }
                lock.lock();
                --starting_;
                if (failed) metrics_.requests_finished++;  // it ended here: never in a slot, finished all the same
            }
        }

        for (auto & slot : slots_)
            if (slot.state != SlotState::Idle && slot.request->cancelled()) finish(slot, "cancelled");
        if (busy_.load() == 0) {
            settle_prompt_time();  // (a prompt cancelled before its last decode: its decodes' time still counts)
            continue;
        }
        adapt_threads();  // before this step's first decode (media, draft model, batch)
        pick_lora_group();  // the slots of one LoRA scale vector: this step's (Slot::in_step)
        decode_media_step();  // [media] image/audio embeddings take their own llama_decode
        if (drafter_) draft_with_model();  // speculative.cpp: proposals for this step's batch

        // Build one batch: every generating slot contributes its pending token,
        // then prompts fill what is left of n_batch, oldest request first.
        batch_.n_tokens = 0;
        double step_work = 0;  // multiply-adds of this step's tokens (step_threads.h)
        auto add = [&](Slot & slot, llama_token token, bool logits) {
            const int32_t i = batch_.n_tokens++;
            step_work += token_work(n_params_, n_layer_, n_embd_, slot.cache.size() + 1);
            batch_.token[i] = token;
            batch_.pos[i] = slot.cache_media.pos_at(slot.cache.size());
            batch_.n_seq_id[i] = 1;
            batch_.seq_id[i][0] = slot.id;
            batch_.logits[i] = logits;
            slot.cache.push_back(token);
            return i;
        };
        auto & in_batch = step_slots_;  // (members, cleared: no allocation a step)
        in_batch.clear();
        int32_t n_generating = 0;
        for (auto & slot : slots_) n_generating += slot.state == SlotState::Generate && slot.in_step;
        for (auto & slot : slots_) {
            if (slot.state != SlotState::Generate || !slot.in_step || batch_.n_tokens >= params_.n_batch) continue;
            slot.i_batch = add(slot, slot.next_token, true);
            in_batch.push_back(&slot);
            // Speculative decoding (speculative.cpp): drafts ride along, each with
            // logits, leaving room for the other generating slots' pending tokens.
            const int32_t room = params_.n_batch - batch_.n_tokens - (n_generating - (int32_t)in_batch.size());
            for (llama_token d : plan_draft(slot, room)) add(slot, d, true);
        }
        int32_t n_prompt_step = 0;  // prompt tokens in this batch
        auto & prefilling = step_prefilling_;
        prefilling.clear();
        for (auto & slot : slots_)
            if (slot.state == SlotState::Prefill && slot.in_step) prefilling.push_back(&slot);
        std::sort(prefilling.begin(), prefilling.end(),
                  [](Slot * a, Slot * b) { return a->t_submitted < b->t_submitted; });
        for (Slot * slot : prefilling) {
            const int32_t room = params_.n_batch - batch_.n_tokens;
            if (room <= 0) break;
            // [media] a text run stops at the next media chunk (decode_media_step's job)
            const size_t text_end = slot->prompt_media.text_end(slot->prompt_done, slot->prompt.size());
            const bool all_logits = slot->params.prompt_logprobs;
            size_t take = std::min<size_t>(room, text_end - slot->prompt_done);
            // Logits for every token: a bounded share per step keeps llama.cpp's output buffer (which
            // grows to the largest step's outputs x n_vocab floats, and stays) small.
            if (all_logits) take = std::min<size_t>(take, kPromptLogprobsPerStep);
            if (take == 0) continue;
            if (all_logits) {
                slot->lp_batch = batch_.n_tokens;
                slot->lp_pos = slot->prompt_done;
                slot->lp_count = (int32_t)take;
            }
            for (size_t k = 0; k < take; ++k) {
                const bool last = slot->prompt_done + 1 == slot->prompt.size();
                const int32_t i = add(*slot, slot->prompt[slot->prompt_done], last || all_logits);
                slot->prompt_done++;
                if (last) slot->i_batch = i;
            }
            in_batch.push_back(slot);
            n_prompt_step += (int32_t)take;
            std::lock_guard<std::mutex> lock(mutex_);
            metrics_.prompt_tokens_total += take;
        }
        if (batch_.n_tokens == 0) continue;
        // A long prompt batch right after a resume with fewer threads: worth a few milliseconds' look at
        // whether the cores are free by now (ThreadGovernor::recheck_after_resume; applied just below).
        if (batch_.n_tokens >= kRecheckBatchTokens) governor_->recheck_after_resume(Clock::now());
        // One-token steps use n_threads (n_threads_batch otherwise): the configured count where fewer
        // threads would change what is generated, else what the governor leaves; either way no more
        // than the step's work is worth (step_threads.h: that cap does not depend on the load).
        if (batch_.n_tokens == 1) {
            const bool exact = params_.exact_threads && in_batch.front()->params.reproducible &&
                               thread_count_matters(*in_batch.front());
            set_step_threads(threads_for_work(step_work, exact ? governor_->configured_threads()
                                                               : governor_->n_threads()),
                             governor_->n_threads_batch());
        } else {
            set_step_threads(governor_->n_threads(), threads_for_work(step_work, governor_->n_threads_batch()));
        }

        const auto t0 = Clock::now();
        const int32_t rc = llama_decode(ctx_.get(), batch_);
        const auto t1 = Clock::now();
        // More threads than the free cores (kept for exactness, here or in the draft model): hold them
        // on different CPUs (thread_governor.h, "Keeping a team apart"). Steps of several tokens always
        // take the governor's batch count (adapt_threads above), so only a one-token step can exceed it.
        governor_->place_threads((batch_.n_tokens == 1 && n_threads_set_ > governor_->n_threads()) ||
                                     (drafter_ && params_.exact_threads &&
                                      governor_->n_threads() < governor_->configured_threads()),
                                 t1);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            metrics_.decode_calls++;
            metrics_.decode_seconds += std::chrono::duration<double>(t1 - t0).count();
            metrics_.step_threads = batch_.n_tokens == 1 ? n_threads_set_ : n_threads_batch_set_;
            record_thread_metrics_locked();
            if (rc == 0) {
                metrics_.step_decodes++;
                for (const auto & slot : slots_) {
                    metrics_.busy_slots_per_step += slot.state != SlotState::Idle;
                    metrics_.n_tokens_max = std::max<uint64_t>(metrics_.n_tokens_max, slot.cache.size());
                }
            }
        }
        if (rc != 0) {
            const std::string why = "llama_decode failed (code " + std::to_string(rc) + ")";
            for (Slot * slot : in_batch) {
                llama_memory_seq_rm(memory_, slot->id, -1, -1);
                slot->cache.clear();
                slot->cache_media.clear();
                finish(*slot, "error", why);
            }
            continue;
        }
        if (n_prompt_step > 0) queue_prompt_time((uint64_t)n_prompt_step, t0);
        for (Slot * slot : in_batch) {
            if (slot->lp_count > 0) emit_prompt_logprobs(*slot);  // before the first token it may sample
            if (slot->i_batch < 0) continue;
            try {
                if (!slot->draft.empty()) verify_draft(*slot);
                else sample_slot(*slot);
            } catch (const std::exception & e) {
                // llama.cpp throws through its C API (e.g. a grammar that no token can continue).
                if (slot->state != SlotState::Idle) finish(*slot, "error", e.what());
            }
        }
        // a step with output was read above (sampling waits for the compute): its prompt tokens' time is known
        bool has_output = false;
        for (int32_t i = 0; i < batch_.n_tokens && !has_output; ++i) has_output = batch_.logits[i] != 0;
        if (has_output) settle_prompt_time();
    }

    // Unloading: nobody may be left waiting for events that will never come.
    for (auto & slot : slots_)
        if (slot.state != SlotState::Idle) finish(slot, "cancelled", "the model was unloaded");
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto & pending : waiting_) {
        Event ev;
        ev.final = true;
        ev.finish_reason = "cancelled";
        ev.error = "the model was unloaded";
        pending.request->push(std::move(ev));
    }
    waiting_.clear();
    for (auto & op : slot_ops_) op.done.set_exception(std::make_exception_ptr(ModelClosedError("the model was unloaded")));
    slot_ops_.clear();
    for (auto & op : info_ops_) op.set_exception(std::make_exception_ptr(ModelClosedError("the model was unloaded")));
    info_ops_.clear();
}

}  // namespace jan
