// One generation scheduler per loaded model: a thread that owns the
// llama_context, n_parallel slots (one KV sequence each) and a bounded wait
// queue. Every step it builds one batch from all busy slots — the last
// sampled token of each generating slot plus a bounded chunk of each
// prefilling prompt — and calls llama_decode once (continuous batching).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "draft_model.h"
#include "llama-cpp.h"
#include "lora.h"
#include "media.h"
#include "model.h"
#include "request.h"
#include "prompt_cache.h"
#include "sampling.h"
#include "text_stream.h"
#include "thread_governor.h"

namespace jan {

struct ContextParams {
    int32_t n_ctx = 2048;        // per slot: every request may use this much context
    int32_t n_parallel = 1;      // slots = requests generating at once
    int32_t n_batch = 512;       // tokens per decode step across all slots
    int32_t n_ubatch = 512;
    int32_t n_threads = -1;      // -1: half the hardware threads (the Python façade passes the physical cores)
    int32_t n_threads_batch = -1; // -1: all hardware threads
    int32_t flash_attn = -1;     // -1 auto, 0 off, 1 on
    int32_t max_queue = 64;      // requests waiting for a slot before QueueFullError
    bool kv_unified = false;     // separate KV streams keep slots independent
    // Fewer threads while other processes keep cores busy (thread_governor.h); false: always n_threads.
    bool adaptive_threads = true;
    // ...except on steps where fewer threads would change what a reproducible request (greedy or
    // seeded, SamplingParams::reproducible) generates (Scheduler::thread_count_matters).
    bool exact_threads = true;
    // KV cache element types by ggml name (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl).
    // A quantized V cache needs flash attention: auto turns it on, off is an error.
    std::string cache_type_k = "f16";
    std::string cache_type_v = "f16";
    bool offload_kqv = true;   // KV cache and attention on the GPU of their layer (false: llama-bench's -nkvo 1)
    bool embeddings = false;   // the context also outputs embeddings (every token's: llama-bench's -embd 1)
    bool op_offload = true;    // llama.cpp's op_offload: host tensors' operations run on the GPU (false: -nopo 1)
    // A ggml threadpool of these settings attached to the context, as llama-bench makes one for each test: the
    // CPUs its threads may run on (cpumask[i]: CPU i; none set: any), strict placement (one thread a CPU), how
    // long idle threads spin before sleeping (0-100), their priority (ggml_sched_priority -1 low ... 3 realtime).
    bool threadpool = false;
    std::vector<bool> cpumask;
    bool cpu_strict = false;
    int32_t poll = 50;
    int32_t prio = 0;
    // Host-memory prompt cache (prompt_cache.h, llama-server's --cache-ram): MiB of saved slot sequences;
    // -1 no limit, 0 off. Off for recurrent and hybrid models (their state is not cut at a position).
    int32_t cache_ram_mib = 8192;
};

struct SchedulerMetrics {
    uint64_t requests_total = 0;
    uint64_t requests_finished = 0;
    uint64_t requests_cancelled = 0;
    uint64_t requests_failed = 0;
    uint64_t prompt_tokens_total = 0;     // prompt tokens evaluated
    uint64_t cached_tokens_total = 0;     // prompt tokens reused from cache
    uint64_t generated_tokens_total = 0;
    uint64_t draft_tokens_total = 0;      // speculative decoding: tokens proposed
    uint64_t draft_accepted_total = 0;    // and accepted
    uint64_t decode_calls = 0;            // every llama_decode of the slots: steps and media chunks
    double decode_seconds = 0.0;
    // llama-server's per-phase accounting (its --metrics), kept to its meaning:
    // prompt processing as wall time of the decodes that evaluate prompt tokens, from the start of the first
    // such decode until a decode with output (or the slots going idle) settles them, with the tokens so timed;
    uint64_t prompt_tokens_timed = 0;
    double prompt_seconds = 0.0;
    // generation per request, added when it ends: its tokens, its decode steps (all but the first token, which
    // the prompt's last decode gives) and its seconds from the first token to the end (the usage's generation_ms);
    uint64_t predicted_tokens = 0;
    uint64_t predicted_steps = 0;
    double predicted_seconds = 0.0;
    // the slots' text steps (llama_decode calls but media chunks' and the draft model's), the busy slots summed
    // over them, and the most tokens a slot's sequence held after one (prompt and generated)
    uint64_t step_decodes = 0;
    uint64_t busy_slots_per_step = 0;
    uint64_t n_tokens_max = 0;
    double busy_seconds = 0.0;            // wall time with at least one busy slot
    int32_t slots_busy = 0;
    int32_t slots_total = 0;
    int32_t queue_depth = 0;
    // threads a generation step uses now (thread_governor.h); a step whose output the count would
    // change keeps the configured one (Scheduler::thread_count_matters)
    int32_t n_threads = 0;
    int32_t n_threads_batch = 0;          // and a prompt-processing step
    double cpu_busy_elsewhere = 0.0;      // cores busy with anything but this model's compute threads, last sample
    uint64_t thread_changes_total = 0;    // times the governor changed the thread counts
    int32_t threads_apart = 0;            // compute threads held to their own CPUs now (thread_governor.h)
    int32_t step_threads = 0;             // threads the last decode step ran on: at most its work's worth (step_threads.h)
    uint64_t prompt_cache_bytes = 0;      // host memory held by saved slot sequences (prompt_cache.h)
    int32_t prompt_cache_prompts = 0;     // and how many
};

// LoRA: the scheduler holds the model's adapters (lora.h) and every request's scale for each, resolved at submit
// (its own SamplingParams::lora, else the defaults of that moment). One decode runs under one set of scales, so a
// step's batch holds only slots of one scale vector: when requests of several are busy, each step takes the next
// group in turn (round-robin, no group starves) and the others wait that step. A slot's cached tokens, and each
// prompt saved in the host-memory prompt cache, are tagged with the scales their KV was computed under and reused
// only by a request with the same scales.
class Scheduler {
public:
    // `draft`: a draft model for speculative decoding (its own context, one
    // sequence per slot); std::invalid_argument when its vocabulary differs.
    // `loras`: adapters loaded against `model`; `lora_scales` their default scales (one each; empty: all 1.0).
    Scheduler(std::shared_ptr<Model> model, const ContextParams & params, std::shared_ptr<Model> draft = nullptr,
              std::vector<std::shared_ptr<LoraAdapter>> loras = {}, std::vector<float> lora_scales = {});
    ~Scheduler();
    Scheduler(const Scheduler &) = delete;
    Scheduler & operator=(const Scheduler &) = delete;

    // Validates, then queues. Throws ContextOverflowError, QueueFullError,
    // std::invalid_argument; never blocks on the engine thread. `media` says
    // which LLAMA_TOKEN_NULL entries of `prompt` are encoded image/audio chunks.
    std::shared_ptr<RequestState> submit(std::vector<llama_token> prompt, const SamplingParams & params,
                                         MediaTrack media = {});

    // llama-server's slot actions (POST /slots/{id}?action=save|restore|erase with --slot-save-path): a slot's
    // cached tokens (with its images' and audio's chunks, packed as llama-server packs them, where it holds any)
    // and KV sequence written to the file `path` (llama_state_seq_save_file, to a temporary name
    // renamed over `path` once whole), read back from one into the slot (what it held dropped first), or dropped.
    // Run on the engine thread between steps once the slot is idle (a busy slot's action waits for its request to
    // end, as llama-server defers it); the caller blocks until it is done. std::invalid_argument for a slot id out
    // of range; SlotFileError for a file restore cannot use
    // (the slot is left empty); EngineError for a save that could not be written; ModelClosedError once shut down.
    enum class SlotAction { Save, Restore, Erase };
    struct SlotActionResult {
        int32_t id_slot = 0;
        uint64_t n_tokens = 0;  // saved, restored or erased
        uint64_t n_bytes = 0;   // written or read (0 for an erase)
        double ms = 0.0;        // the action's own time, on the engine thread
    };
    // `media`: whether the model takes images or audio (it has a projector); without, a restore of a file that
    // holds media is a SlotFileError (the slot is left empty), as no prompt of that model could continue it.
    SlotActionResult slot_action(SlotAction action, int32_t id_slot, const std::string & path = {},
                                 bool media = false);
    // With adapters, a save also writes the scales the slot's KV was computed under beside the file (`path` +
    // kLoraSuffix, llama-server's slot files tell none), and a restore tags the slot with them: a file without them
    // (llama-server's, a save made without adapters) is taken as computed under the default scales; one whose
    // scales are for another adapter count, or that names adapters a model without them lacks, is a SlotFileError.
    // The suffix holds "..", which no slot file name llama-server (and jan's server) takes may hold, so that the
    // scales of `a.bin` can never be written over a slot file saved as `a.bin.lora` (the suffix ".lora" was).
    static constexpr const char * kLoraSuffix = "..lora";

    // What llama-server's GET /slots tells of each slot: its current request, else the last one it ran (has_task
    // false: none since load; an idle slot's counts are 0 and n_remain -1, as llama-server resets them when a request
    // ends). Taken on the engine thread between steps (blocks until the current step ends); ModelClosedError once
    // shut down.
    struct SlotInfo {
        int32_t id = 0;
        bool is_processing = false;
        bool has_task = false;
        int64_t id_task = -1;            // the request's number (in order of start, from 0)
        int32_t n_cache_tokens = 0;      // tokens the slot holds (prompt and what was generated)
        int32_t n_prompt_tokens = 0;     // the request's prompt
        int32_t n_prompt_processed = 0;  // of them evaluated so far (not taken from the cache)
        int32_t n_prompt_cached = 0;     // of them taken from the cache
        int32_t n_decoded = 0;           // tokens generated so far
        int32_t n_remain = -1;           // left before max_tokens (-1: no limit)
        bool has_next_token = false;     // still generating
        bool has_new_line = false;       // its output holds a line break
        SamplingParams params;
        std::vector<float> lora;         // the scales it runs (ran) under
    };
    std::vector<SlotInfo> slots_info();

    SchedulerMetrics metrics() const;
    // The adapters, and the scales requests submitted from now on run under unless they name their own
    // (std::invalid_argument for another count or a scale that is not finite). Thread-safe.
    const std::vector<std::shared_ptr<LoraAdapter>> & loras() const { return loras_; }
    std::vector<float> lora_defaults() const;
    void set_lora_defaults(std::vector<float> scales);
    // A request's scales: `params.lora` over zeros when lora_set, else the defaults (std::invalid_argument naming
    // "lora" for an id out of range, one given twice, a scale that is not finite).
    std::vector<float> resolve_lora(const SamplingParams & params) const;
    int32_t n_ctx_slot() const { return params_.n_ctx; }
    int32_t n_parallel() const { return params_.n_parallel; }
    // Bytes the KV cache holds for all slots (K and V, every layer, every cell).
    uint64_t kv_cache_bytes() const { return kv_cache_bytes_; }
    // Bytes of the draft model's KV cache (0 without a draft model).
    uint64_t draft_kv_cache_bytes() const { return drafter_ ? drafter_->kv_cache_bytes() : 0; }
    bool has_draft_model() const { return drafter_ != nullptr; }
    // Stops the thread; running and queued requests finish with "cancelled". In a child process forked after the
    // scheduler started (os.fork), a no-op: the engine thread exists only in the parent, so there is nothing to stop,
    // and joining it there throws std::system_error (EINVAL), which terminated the child at its exit.
    void shutdown();
    // Whether this is a child process forked after the scheduler was made (its engine thread is not here: nothing it
    // owns may be locked, waited on or destroyed; see the deleter in bind_scheduler.cpp).
    bool forked() const { return ::getpid() != owner_pid_; }

private:
    struct Pending {
        std::shared_ptr<RequestState> request;
        std::vector<llama_token> prompt;
        SamplingParams params;
        std::chrono::steady_clock::time_point submitted;
        MediaTrack media;
        llama_sampler_ptr grammar;  // prepare_grammar's, made at submit (nullptr without a grammar)
        std::vector<float> lora;    // the adapters' scales it runs under (resolve_lora)
    };
    enum class SlotState { Idle, Prefill, Generate };
    struct Slot {
        int32_t id = 0;
        SlotState state = SlotState::Idle;
        std::vector<llama_token> cache;  // tokens whose KV is in this slot's sequence
        uint64_t last_used = 0;
        std::shared_ptr<RequestState> request;
        std::vector<llama_token> prompt;
        size_t prompt_done = 0;
        SamplingParams params;
        SlotSampler sampler;
        std::unique_ptr<TextStream> stream;
        llama_token next_token = 0;
        int32_t n_generated = 0;
        int32_t n_cached = 0;
        int32_t i_batch = -1;
        // SamplingParams::prompt_logprobs: this step's prompt tokens with logits, from batch index
        // lp_batch on, prompt positions lp_pos .. lp_pos + lp_count - 1.
        int32_t lp_batch = -1;
        size_t lp_pos = 0;
        int32_t lp_count = 0;
        // Speculative decoding (speculative.cpp): this step's draft, after the pending token in the batch.
        std::vector<llama_token> draft;
        std::vector<llama_token> model_draft;  // proposed by the draft model before the batch is built
        int32_t n_drafted = 0;
        int32_t n_accepted = 0;
        std::chrono::steady_clock::time_point t_submitted, t_started, t_first_token;
        MediaTrack prompt_media;  // media chunks of `prompt`
        MediaTrack cache_media;   // media chunks of `cache` (kept between requests)
        std::vector<float> lora;  // the LoRA scales `cache` was computed under (and the request runs under)
        bool in_step = false;     // busy and of this step's LoRA group (pick_lora_group)
        int64_t id_task = -1;     // the request it runs (ran last), for slots_info
        int32_t n_prompt_last = 0;  // and its prompt's length
        bool has_new_line = false;
    };

    struct SlotOp {
        SlotAction action;
        int32_t id_slot;
        std::string path;
        bool media;  // the model takes images or audio (slot_action's `media`)
        std::promise<SlotActionResult> done;
    };

    void run();
    // Engine thread, mutex_ held (released while each runs): the slot actions whose slot is idle, in order.
    void run_slot_ops(std::unique_lock<std::mutex> & lock);
    SlotActionResult do_slot_action(Slot & slot, SlotAction action, const std::string & path, bool media);
    SlotInfo slot_info(const Slot & slot) const;  // engine thread
    // Why a slot file of `n_tokens` tokens this model's context refused was saved for another slot layout (another
    // --parallel, a unified cache or not), or "" where that is not why.
    std::string slot_file_mismatch(const std::string & path, size_t n_tokens) const;
    // Marks the busy slots of this step's LoRA group (Slot::in_step) and sets the context's adapters to its scales.
    void pick_lora_group();
    void apply_lora(const std::vector<float> & scales);  // llama_set_adapters_lora when they change
    void assign(Slot & slot, Pending && pending);
    void swap_saved_prompt(Slot & slot, const Pending & pending);  // the host-memory prompt cache, before assign
    void swap_saved_prompt_counted(Slot & slot, const Pending & pending);  // and its size into metrics_
    Slot * pick_slot(const Pending & pending);
    void decode_media_step();  // scheduler_media.cpp
    void finish(Slot & slot, const std::string & reason, const std::string & error = {});
    Usage usage_so_far(const Slot & slot, std::chrono::steady_clock::time_point now) const;
    void sample_slot(Slot & slot);
    void emit_prompt_logprobs(Slot & slot);
    std::vector<llama_token> plan_draft(Slot & slot, int32_t room);  // speculative.cpp
    int32_t draft_limit(const Slot & slot, int32_t room, size_t cache_size) const;  // speculative.cpp
    void draft_with_model();                                         // speculative.cpp
    void verify_draft(Slot & slot);                                  // speculative.cpp
    bool has_work_locked() const;
    void adapt_threads();  // the governor's counts, applied to this context and the draft model's
    void set_step_threads(int32_t n_threads, int32_t n_threads_batch);  // llama_set_n_threads when they change
    void record_thread_metrics_locked();  // the governor's counts into metrics_ (mutex_ held)
    // Whether a one-token step of `slot` would generate differently with another thread count.
    bool thread_count_matters(const Slot & slot) const;

    std::shared_ptr<Model> model_;
    ContextParams params_;
    // (before ctx_: the context, which refers to the adapters it was given, is freed first)
    std::vector<std::shared_ptr<LoraAdapter>> loras_;
    std::vector<float> lora_defaults_;      // guarded by mutex_
    std::vector<float> lora_applied_;       // the scales the context decodes under now (engine thread)
    std::vector<float> lora_last_group_;    // the group the last step took (round-robin)
    // (before ctx_, which computes on it: freed after the context)
    std::unique_ptr<ggml_threadpool, void (*)(ggml_threadpool *)> threadpool_{nullptr, nullptr};
    llama_context_ptr ctx_;
    llama_memory_t memory_ = nullptr;
    int32_t n_swa_ = 0;  // the model's sliding window (tokens); 0: none
    // The model's size, for what a step's tokens cost (step_threads.h).
    uint64_t n_params_ = 0;
    int32_t n_layer_ = 0, n_embd_ = 0;
    llama_batch batch_{};
    std::unique_ptr<DraftModel> drafter_;
    std::unique_ptr<ThreadGovernor> governor_;  // made once the context's thread counts are known
    std::string thread_name_;  // the engine thread's, inherited by its OpenMP workers
    int32_t n_threads_set_ = 0, n_threads_batch_set_ = 0;  // what the context was last given
    bool split_kv_possible_ = false;  // see thread_count_matters
    std::vector<Slot> slots_;
    std::vector<Slot *> step_slots_, step_prefilling_;  // run(): a step's slots in its batch, and those prefilling
    PromptCache prompt_cache_{0};  // (made with the context: off until then)
    uint64_t use_counter_ = 0;
    uint64_t kv_cache_bytes_ = 0;
    std::chrono::steady_clock::time_point busy_since_;
    // prompt tokens decoded whose time is not yet in metrics_.prompt_seconds, and when their first decode began
    // (queue_prompt_time / settle_prompt_time: llama_decode may return before the compute is done)
    uint64_t prompt_queued_ = 0;
    std::chrono::steady_clock::time_point prompt_queued_since_;
    void queue_prompt_time(uint64_t n_tokens, std::chrono::steady_clock::time_point decode_start);
    void settle_prompt_time();

    mutable std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<Pending> waiting_;
    std::deque<SlotOp> slot_ops_;  // slot actions not run yet (guarded by mutex_)
    std::deque<std::promise<std::vector<SlotInfo>>> info_ops_;  // slots_info calls not answered yet (mutex_)
    int64_t n_tasks_ = 0;  // requests assigned so far (engine thread)
    // Requests taken out of waiting_ whose slot is being set up (outside the lock): still counted as queued, so
    // that no moment shows a request neither queued nor in a slot (a pool would unload the model under it).
    int32_t starting_ = 0;  // guarded by mutex_
    bool stopping_ = false;
    std::atomic<int32_t> busy_{0};
    SchedulerMetrics metrics_;  // guarded by mutex_
    std::thread thread_;
    pid_t owner_pid_ = ::getpid();  // the process whose engine thread thread_ is
};

}  // namespace jan
