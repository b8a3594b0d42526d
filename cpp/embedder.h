// Sentence embeddings: a separate llama_context with embeddings enabled and
// pooling, fed many inputs per decode as separate sequences. Calls are
// serialized by a mutex; callers run it off the event loop.
// With pooling none (asked for explicitly) the context keeps every token's
// output state and embed_tokens() returns one vector per input token.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "llama-cpp.h"
#include "media.h"
#include "model.h"
#include "thread_governor.h"

namespace jan {

struct EmbedderParams {
    int32_t n_ctx = 0;        // tokens per decode (and the longest input); 0: the model's training context, capped
    int32_t n_threads = -1;
    bool adaptive_threads = true;  // fewer threads while other processes keep cores busy (thread_governor.h)
    int32_t pooling = -1;     // enum llama_pooling_type; -1: the model's own (mean when it has none or says none);
                              // LLAMA_POOLING_TYPE_NONE: a vector per token (embed_tokens())
    int32_t n_seq_max = 64;   // inputs per decode
};

class Embedder {
public:
    Embedder(std::shared_ptr<Model> model, const EmbedderParams & params);
    // One vector (n_embd floats) per input, pooled (mean, cls, last); with rank pooling (a reranker) the input's
    // scores from the classifier head (n_embd() == n_cls_out, most often 1). invalid_argument with pooling none.
    std::vector<std::vector<float>> embed(const std::vector<std::vector<llama_token>> & inputs, bool normalize);
    // One vector per token of each input, in order: inputs[i].size() * n_embd floats, row-major, per input; each row
    // L2-normalized when asked. Only with pooling none (invalid_argument otherwise).
    std::vector<std::vector<float>> embed_tokens(const std::vector<std::vector<llama_token>> & inputs,
                                                 bool normalize);
    // One input with images or audio (a MediaPrompt from Projector::tokenize, its chunks encoded): its text runs and
    // media chunks decoded in turn into one sequence (llama_decode takes tokens or embeddings, never both), so only a
    // model with a memory (a decoder; not an encoder-only one) takes it. Pooled over every position, text and media:
    // mean weighs each decode's mean by its rows, cls is the first row's, last the last's; with pooling none, one
    // row per position (tokens.size() * n_embd floats). invalid_argument for an encoder-only model or a prompt whose
    // chunks are not encoded, ContextOverflowError for one longer than n_ctx().
    std::vector<float> embed_media(const MediaPrompt & prompt, bool normalize);
    int32_t n_ctx() const { return n_ctx_; }
    int32_t pooling() const { return pooling_; }
    int32_t n_embd() const { return n_embd_; }
    // Ends a running embed() before its next decode (EmbedCancelledError), and every later one: the model is being
    // unloaded, and a stopped model must not keep computing (nor holding its memory) for a request it dropped.
    void cancel() { cancelled_.store(true); }

private:
    std::vector<std::vector<float>> run(const std::vector<std::vector<llama_token>> & inputs, bool normalize,
                                        bool per_token);

    std::shared_ptr<Model> model_;
    llama_context_ptr ctx_;
    int32_t n_ctx_ = 0;
    int32_t n_seq_max_ = 0;
    int32_t pooling_ = 0;
    int32_t n_embd_ = 0;
    std::unique_ptr<ThreadGovernor> governor_;
    std::string thread_name_;  // the caller's thread's during embed() (its OpenMP workers inherit it)
    std::mutex mutex_;  // one embed() at a time; guards ctx_ and governor_
    std::atomic<bool> cancelled_{false};  // set by cancel(), from any thread, without the mutex
};

}  // namespace jan
