// Speculative decoding with a draft model: a small model that shares the
// target's vocabulary proposes the next tokens greedily; the target verifies
// them in its own batch exactly as it verifies n-gram drafts (speculative.h),
// so greedy output is unchanged.
//
// The draft model has its own llama_context with one sequence per target
// slot. Before drafting, each sequence is brought up to the slot's tokens
// (its cache plus the pending token): whatever it already holds of them is
// kept (the accepted drafts of the last step usually are), the rest is
// evaluated, all slots in one batch. Then every drafting slot grows its draft
// one token per decode, again all slots in one batch.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "llama-cpp.h"
#include "model.h"

namespace jan {

struct ContextParams;

// std::invalid_argument ("draft_model: ...") when `draft` cannot propose
// tokens for `target`: another tokenizer type, other special tokens, a
// vocabulary size differing by more than a few padding entries, or a token
// whose text differs.
void check_draft_vocab(const Model & target, const Model & draft);

class DraftModel {
public:
    // `params` are the target's (after its context was made): n_ctx per slot,
    // n_parallel sequences, n_batch, threads and KV cache types.
    DraftModel(std::shared_ptr<Model> draft, const Model & target, const ContextParams & params);

    struct Job {
        int32_t seq = 0;                               // the target slot
        const std::vector<llama_token> * history = nullptr;  // the slot's tokens, ending with the pending one
        int32_t n_max = 0;                             // draft at most this many
        float p_min = 0.0f;                            // stop when the draft's top probability is lower
        std::vector<llama_token> out;                  // the draft
    };
    // Fills every job's `out` (possibly empty). Never throws for a failed
    // decode: that slot just gets no draft and its sequence is cleared.
    void draft(std::vector<Job> & jobs);

    uint64_t kv_cache_bytes() const { return kv_cache_bytes_; }
    // The target's thread counts, as its ThreadGovernor changes them: each decode takes no more of them than its
    // work is worth (step_threads.h; a small draft model's one-token steps run on one thread).
    void set_n_threads(int32_t n_threads, int32_t n_threads_batch) {
        n_threads_ = n_threads;
        n_threads_batch_ = n_threads_batch;
    }
    const Model & model() const { return *model_; }

private:
    // Greedy next token at batch index `idx`; false when it should not be drafted.
    bool pick(int32_t idx, float p_min, llama_token * out) const;
    // llama_decode of batch_, whose tokens hold `work` multiply-adds (step_threads.h), on as many threads as that is
    // worth.
    int32_t decode(double work);

    std::shared_ptr<Model> model_;
    int32_t n_vocab_target_ = 0;
    int32_t n_batch_ = 0;
    llama_context_ptr ctx_;
    llama_memory_t memory_ = nullptr;
    llama_batch batch_{};
    std::vector<std::vector<llama_token>> cache_;  // per sequence: tokens whose KV the draft context holds
    uint64_t kv_cache_bytes_ = 0;
    uint64_t n_params_ = 0;
    int32_t n_layer_ = 0, n_embd_ = 0;
    int32_t n_threads_ = 1, n_threads_batch_ = 1;  // what the target's scheduler allows (set_n_threads)
    int32_t applied_threads_ = 0, applied_batch_ = 0;  // what the context was last given

public:
    ~DraftModel();
    DraftModel(const DraftModel &) = delete;
    DraftModel & operator=(const DraftModel &) = delete;
};

}  // namespace jan
