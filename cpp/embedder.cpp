#include "embedder.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <thread>

#include "errors.h"

namespace jan {

Embedder::Embedder(std::shared_ptr<Model> model, const EmbedderParams & params) : model_(std::move(model)) {
    n_ctx_ = params.n_ctx > 0 ? params.n_ctx : std::min<int32_t>(std::max<int32_t>(model_->n_ctx_train(), 8), 8192);
    n_seq_max_ = std::max<int32_t>(1, std::min<int32_t>(params.n_seq_max, 256));
    if (params.pooling >= 0) {
        pooling_ = params.pooling;  // asked for: none gives a vector per token (embed_tokens())
    } else {
        pooling_ = model_->pooling_type();
        if (pooling_ == LLAMA_POOLING_TYPE_UNSPECIFIED || pooling_ == LLAMA_POOLING_TYPE_NONE)
            pooling_ = LLAMA_POOLING_TYPE_MEAN;  // the model's own: one vector per input, per token only when asked
    }
    if (pooling_ < LLAMA_POOLING_TYPE_NONE || pooling_ > LLAMA_POOLING_TYPE_RANK)
        throw std::invalid_argument("pooling: unknown pooling type " + std::to_string(pooling_));

    llama_context_params cp = llama_context_default_params();
    cp.embeddings = true;
    cp.pooling_type = static_cast<enum llama_pooling_type>(pooling_);
    cp.n_ctx = n_ctx_;
    cp.n_batch = n_ctx_;
    cp.n_ubatch = n_ctx_;  // non-causal models need a whole input in one ubatch
    cp.n_seq_max = n_seq_max_;
    cp.kv_unified = true;  // inputs come and go each call; no per-sequence split of the context
    const int32_t threads = params.n_threads > 0 ? params.n_threads : (int32_t)std::clamp(std::thread::hardware_concurrency(), 1u, (unsigned)GGML_MAX_N_THREADS);
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.no_perf = true;
    ctx_.reset(llama_init_from_model(model_->get(), cp));
    if (!ctx_) throw ModelLoadError("llama.cpp could not create an embedding context for '" + model_->path() + "'");
    thread_name_ = ThreadGovernor::next_thread_name("jan-emb");
    governor_ = std::make_unique<ThreadGovernor>(threads, threads, params.adaptive_threads, thread_name_);
    n_embd_ = llama_model_n_embd_out(model_->get());
    if (n_embd_ <= 0) n_embd_ = model_->n_embd();
    // rank pooling (a reranker): each input's pooled output is its classifier head's scores (llama.h:
    // llama_get_embeddings_seq returns float[n_cls_out] then), not a vector of n_embd
    if (pooling_ == LLAMA_POOLING_TYPE_RANK) n_embd_ = (int32_t)std::max<uint32_t>(1, model_->n_cls_out());
}

namespace {

// L2-normalizes n floats in place (a zero vector stays zero); the pooled and the per-token output alike.
void normalize_l2(float * v, size_t n) {
    double norm = 0.0;
    for (size_t i = 0; i < n; ++i) norm += (double)v[i] * v[i];
    norm = std::sqrt(norm);
    if (norm > 0)
        for (size_t i = 0; i < n; ++i) v[i] = (float)(v[i] / norm);
}

}  // namespace

std::vector<std::vector<float>> Embedder::embed(const std::vector<std::vector<llama_token>> & inputs, bool normalize) {
    if (pooling_ == LLAMA_POOLING_TYPE_NONE)
        throw std::invalid_argument("embed: this embedder has pooling none (a vector per token): use embed_tokens");
    return run(inputs, normalize, false);
}

std::vector<std::vector<float>> Embedder::embed_tokens(const std::vector<std::vector<llama_token>> & inputs,
                                                       bool normalize) {
    if (pooling_ != LLAMA_POOLING_TYPE_NONE)
        throw std::invalid_argument("embed_tokens: vectors per token need an embedder with pooling none");
    return run(inputs, normalize, true);
}

std::vector<float> Embedder::embed_media(const MediaPrompt & prompt, bool normalize) {
    if (pooling_ == LLAMA_POOLING_TYPE_RANK)  // (a reranker scores a query and a document: rerank(), text only)
        throw std::invalid_argument("embed_media: a reranker's embedder takes no images or audio");
    const auto & tokens = prompt.tokens;
    if (tokens.empty()) throw std::invalid_argument("input: is empty");
    if ((int32_t)tokens.size() > n_ctx_)
        throw ContextOverflowError("the input has " + std::to_string(tokens.size()) +
                                       " tokens (its images and audio " + std::to_string(prompt.n_media_tokens()) +
                                       " of them) but the embedding context holds " + std::to_string(n_ctx_),
                                   (long)tokens.size(), n_ctx_);
    // every chunk encoded, where the tokens say, and a non-causal one within a decode
    prompt.track.validate(tokens, llama_model_n_embd_inp(model_->get()), n_ctx_);
    for (auto t : tokens)
        if (t != LLAMA_TOKEN_NULL) model_->check_token(t);
    std::lock_guard<std::mutex> lock(mutex_);
    llama_memory_t memory = llama_get_memory(ctx_.get());
    // text and media are separate decodes of one sequence: the later ones must see the earlier ones' KV
    if (!memory || (model_->has_encoder() && !model_->has_decoder()))
        throw std::invalid_argument("images and audio in an embedding input need a decoder model; '" +
                                    model_->path() + "' reads its input in one pass");
    const ScopedThreadName compute_thread(thread_name_);  // see thread_governor.h
    governor_->resume();
    llama_memory_clear(memory, true);
    struct Cleared {  // no sequence of this input is left for the next call (the plain path clears first too)
        llama_memory_t m;
        ~Cleared() { llama_memory_clear(m, true); }
    } cleared{memory};

    const bool per_token = pooling_ == LLAMA_POOLING_TYPE_NONE;
    std::vector<float> out(per_token ? tokens.size() * (size_t)n_embd_ : (size_t)n_embd_, 0.0f);
    std::vector<double> sum((size_t)n_embd_, 0.0);  // mean pooling: each decode's mean times its rows
    size_t rows_done = 0;
    // one decode of n rows (batch), all of them outputs; then this decode's share of the result
    auto decode = [&](llama_batch & batch, int32_t n, bool non_causal) {
        if (cancelled_.load())
            throw EmbedCancelledError("the embedding was stopped before it finished: its model was unloaded");
        if (governor_->update(ThreadGovernor::Clock::now()))
            llama_set_n_threads(ctx_.get(), governor_->n_threads(), governor_->n_threads_batch());
        if (non_causal) llama_set_causal_attn(ctx_.get(), false);
        const int32_t rc = llama_decode(ctx_.get(), batch);
        if (non_causal) llama_set_causal_attn(ctx_.get(), true);
        if (rc != 0) throw EngineError("embedding failed: llama.cpp returned " + std::to_string(rc));
        if (per_token) {
            for (int32_t r = 0; r < n; ++r) {
                const float * e = llama_get_embeddings_ith(ctx_.get(), r);
                if (!e) throw EngineError("llama.cpp returned no embedding for a token");
                std::copy(e, e + n_embd_, out.data() + (rows_done + (size_t)r) * (size_t)n_embd_);
            }
        } else {
            // llama.cpp pools within one decode: the input's pooling is made of each decode's
            const float * e = llama_get_embeddings_seq(ctx_.get(), 0);
            if (!e) throw EngineError("llama.cpp returned no pooled embedding");
            if (pooling_ == LLAMA_POOLING_TYPE_MEAN) {
                for (int32_t j = 0; j < n_embd_; ++j) sum[(size_t)j] += (double)e[j] * n;
            } else if (pooling_ == LLAMA_POOLING_TYPE_LAST || rows_done == 0) {  // cls, rank: the first row's
                std::copy(e, e + n_embd_, out.data());
            }
        }
        rows_done += (size_t)n;
    };

    llama_batch text = llama_batch_init(n_ctx_, 0, 1);
    struct BatchFree {
        llama_batch & b;
        ~BatchFree() { llama_batch_free(b); }
    } text_free{text};
    size_t at = 0;
    while (at < tokens.size()) {
        if (const MediaSpan * span = prompt.track.containing(at)) {
            const MediaChunk & chunk = *span->chunk;
            const int32_t n = chunk.n_tokens;
            std::vector<llama_pos> pos = chunk.positions(prompt.track.pos_at(at), 0, n, chunk.mrope ? 4 : 1);
            std::vector<int32_t> n_seq_id((size_t)n, 1);
            std::vector<llama_seq_id> seq_ids((size_t)n, 0);
            std::vector<llama_seq_id *> seq_ptrs((size_t)n);
            for (int32_t i = 0; i < n; ++i) seq_ptrs[(size_t)i] = &seq_ids[(size_t)i];
            std::vector<int8_t> outputs((size_t)n, 1);
            llama_batch batch{};
            batch.n_tokens = n;
            batch.embd = const_cast<float *>(chunk.embd->data());
            batch.pos = pos.data();
            batch.n_seq_id = n_seq_id.data();
            batch.seq_id = seq_ptrs.data();
            batch.logits = outputs.data();
            decode(batch, n, chunk.non_causal);
            at = span->end();
            continue;
        }
        const size_t end = prompt.track.text_end(at, tokens.size());
        text.n_tokens = 0;
        for (size_t p = at; p < end; ++p) {
            const int32_t i = text.n_tokens++;
            text.token[i] = tokens[p];
            text.pos[i] = prompt.track.pos_at(p);
            text.n_seq_id[i] = 1;
            text.seq_id[i][0] = 0;
            text.logits[i] = true;
        }
        decode(text, text.n_tokens, false);
        at = end;
    }
    if (pooling_ == LLAMA_POOLING_TYPE_MEAN)
        for (int32_t j = 0; j < n_embd_; ++j) out[(size_t)j] = (float)(sum[(size_t)j] / (double)rows_done);
    if (normalize) {
        if (per_token) {
            for (size_t r = 0; r < tokens.size(); ++r) normalize_l2(out.data() + r * (size_t)n_embd_, (size_t)n_embd_);
        } else {
            normalize_l2(out.data(), out.size());
        }
    }
    return out;
}

std::vector<std::vector<float>> Embedder::run(const std::vector<std::vector<llama_token>> & inputs, bool normalize,
                                              bool per_token) {
    for (size_t i = 0; i < inputs.size(); ++i) {
        if (inputs[i].empty()) throw std::invalid_argument("input[" + std::to_string(i) + "]: is empty");
        if ((int32_t)inputs[i].size() > n_ctx_)
            throw ContextOverflowError("input[" + std::to_string(i) + "] has " + std::to_string(inputs[i].size()) +
                                           " tokens but the embedding context holds " + std::to_string(n_ctx_),
                                       (long)inputs[i].size(), n_ctx_);
        for (auto t : inputs[i]) model_->check_token(t);
    }
    std::lock_guard<std::mutex> lock(mutex_);
    const ScopedThreadName compute_thread(thread_name_);  // see thread_governor.h
    governor_->resume();  // calls come and go: a call after a pause does not average the pause in
    std::vector<std::vector<float>> out(inputs.size());
    llama_batch batch = llama_batch_init(n_ctx_, 0, 1);
    struct BatchFree {
        llama_batch & b;
        ~BatchFree() { llama_batch_free(b); }
    } batch_free{batch};
    llama_memory_t memory = llama_get_memory(ctx_.get());
    const bool encoder_only = model_->has_encoder() && !model_->has_decoder();

    size_t next = 0;
    while (next < inputs.size()) {
        // Pack as many whole inputs as fit in one decode, each its own sequence.
        batch.n_tokens = 0;
        std::vector<size_t> members;
        while (next < inputs.size() && (int32_t)members.size() < n_seq_max_ &&
               batch.n_tokens + (int32_t)inputs[next].size() <= n_ctx_) {
            const auto & toks = inputs[next];
            const llama_seq_id seq = (llama_seq_id)members.size();
            for (size_t p = 0; p < toks.size(); ++p) {
                const int32_t i = batch.n_tokens++;
                batch.token[i] = toks[p];
                batch.pos[i] = (llama_pos)p;
                batch.n_seq_id[i] = 1;
                batch.seq_id[i][0] = seq;
                batch.logits[i] = true;
            }
            members.push_back(next++);
        }
        if (cancelled_.load())  // checked before each decode: a stop waits at most one decode for the compute to end
            throw EmbedCancelledError("the embedding was stopped before it finished: its model was unloaded");
        if (memory) llama_memory_clear(memory, true);
        if (governor_->update(ThreadGovernor::Clock::now()))
            llama_set_n_threads(ctx_.get(), governor_->n_threads(), governor_->n_threads_batch());
        const int32_t rc = encoder_only ? llama_encode(ctx_.get(), batch) : llama_decode(ctx_.get(), batch);
        if (rc != 0) throw EngineError("embedding failed: llama.cpp returned " + std::to_string(rc));
        if (per_token) {
            // every token was an output: its row is its batch index's (inputs packed in order from 0)
            int32_t first = 0;
            for (size_t s = 0; s < members.size(); ++s) {
                const size_t n_tokens = inputs[members[s]].size();
                std::vector<float> v(n_tokens * (size_t)n_embd_);
                for (size_t p = 0; p < n_tokens; ++p) {
                    const float * e = llama_get_embeddings_ith(ctx_.get(), first + (int32_t)p);
                    if (!e) throw EngineError("llama.cpp returned no embedding for a token");
                    float * row = v.data() + p * (size_t)n_embd_;
                    std::copy(e, e + n_embd_, row);
                    if (normalize) normalize_l2(row, (size_t)n_embd_);
                }
                first += (int32_t)n_tokens;
                out[members[s]] = std::move(v);
            }
        } else {
            for (size_t s = 0; s < members.size(); ++s) {
                const float * e = llama_get_embeddings_seq(ctx_.get(), (llama_seq_id)s);
                if (!e) throw EngineError("llama.cpp returned no pooled embedding");
                std::vector<float> v(e, e + n_embd_);
                if (normalize) normalize_l2(v.data(), v.size());
                out[members[s]] = std::move(v);
            }
        }
    }
    return out;
}

}  // namespace jan
