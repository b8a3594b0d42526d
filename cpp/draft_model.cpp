#include "draft_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "errors.h"
#include "kv_cache.h"
#include "scheduler.h"
#include "step_threads.h"

namespace jan {

namespace {

// Vocabularies of one family are often padded to a multiple of 64 or 128;
// tokens past the shorter one are never drafted (see DraftModel::pick).
constexpr int32_t kMaxVocabPadding = 128;

std::string token_text(const llama_vocab * vocab, llama_token t) {
    const char * s = llama_vocab_get_text(vocab, t);
    return s ? std::string(s) : std::string();
}

}  // namespace

void check_draft_vocab(const Model & target, const Model & draft) {
    const llama_vocab * tv = target.vocab();
    const llama_vocab * dv = draft.vocab();
    const std::string what = "draft_model: '" + draft.path() + "' cannot draft for '" + target.path() + "': ";
    if (llama_vocab_type(tv) != llama_vocab_type(dv))
        throw std::invalid_argument(what + "its tokenizer is of another type");
    if (llama_vocab_get_add_bos(tv) != llama_vocab_get_add_bos(dv) || llama_vocab_bos(tv) != llama_vocab_bos(dv) ||
        llama_vocab_eos(tv) != llama_vocab_eos(dv))
        throw std::invalid_argument(what + "its special tokens (BOS/EOS) differ");
    const int32_t nt = target.n_vocab(), nd = draft.n_vocab();
    if (std::abs(nt - nd) > kMaxVocabPadding)
        throw std::invalid_argument(what + "the vocabularies differ in size (" + std::to_string(nt) + " vs " +
                                    std::to_string(nd) + " tokens)");
    for (llama_token t = 0; t < std::min(nt, nd); ++t) {
        const std::string a = token_text(tv, t), b = token_text(dv, t);
        if (a != b)
            throw std::invalid_argument(what + "the vocabularies differ (token " + std::to_string(t) + " is '" + a +
                                        "' in the target, '" + b + "' in the draft)");
    }
}

DraftModel::DraftModel(std::shared_ptr<Model> draft, const Model & target, const ContextParams & params)
    : model_(std::move(draft)), n_vocab_target_(target.n_vocab()), n_batch_(params.n_batch) {
    if (!model_->has_decoder() || model_->has_encoder())
        throw std::invalid_argument("draft_model: '" + model_->path() + "' is not a decoder-only model");
    check_draft_vocab(target, *model_);
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)params.n_ctx * (uint32_t)params.n_parallel;
    cp.n_batch = params.n_batch;
    cp.n_ubatch = params.n_ubatch;
    cp.n_seq_max = params.n_parallel;
    if (params.n_threads > 0) cp.n_threads = params.n_threads;
    if (params.n_threads_batch > 0) cp.n_threads_batch = params.n_threads_batch;
    cp.kv_unified = params.kv_unified;
    cp.swa_full = false;  // as the target's context (scheduler.cpp); draft() checks prefix_reusable
    cp.type_k = kv_cache_type(params.cache_type_k, "cache_type_k");
    cp.type_v = kv_cache_type(params.cache_type_v, "cache_type_v");
    try {
        check_kv_cache_types(*model_, cp.type_k, cp.type_v);
    } catch (const std::invalid_argument & e) {
        throw std::invalid_argument(std::string("draft_model: ") + e.what());
    }
    cp.flash_attn_type = params.flash_attn < 0   ? LLAMA_FLASH_ATTN_TYPE_AUTO
                         : params.flash_attn == 0 ? LLAMA_FLASH_ATTN_TYPE_DISABLED
                                                   : LLAMA_FLASH_ATTN_TYPE_ENABLED;
    if (ggml_is_quantized(cp.type_v)) cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_ENABLED;
    cp.no_perf = true;
    ctx_.reset(llama_init_from_model(model_->get(), cp));
    if (!ctx_) throw ModelLoadError("llama.cpp could not create a context of " + std::to_string(cp.n_ctx) +
                                    " tokens for the draft model '" + model_->path() + "' (out of memory?)");
    memory_ = llama_get_memory(ctx_.get());
    kv_cache_bytes_ = kv_cache_size(*model_, llama_n_ctx(ctx_.get()), cp.type_k, cp.type_v);
    n_batch_ = std::min<int32_t>(n_batch_, (int32_t)llama_n_batch(ctx_.get()));
    n_params_ = llama_model_n_params(model_->get());
    n_layer_ = llama_model_n_layer(model_->get());
    n_embd_ = llama_model_n_embd(model_->get());
    n_threads_ = applied_threads_ = llama_n_threads(ctx_.get());
    n_threads_batch_ = applied_batch_ = llama_n_threads_batch(ctx_.get());
    batch_ = llama_batch_init(n_batch_, 0, 1);
    cache_.resize(params.n_parallel);
}

DraftModel::~DraftModel() { llama_batch_free(batch_); }

bool DraftModel::pick(int32_t idx, float p_min, llama_token * out) const {
    const float * logits = llama_get_logits_ith(ctx_.get(), idx);
    if (!logits) return false;
    const int32_t n = std::min(model_->n_vocab(), n_vocab_target_);
    const llama_token best = (llama_token)(std::max_element(logits, logits + n) - logits);
    if (p_min > 0.0f) {
        // The top token's softmax probability over the draft's whole vocabulary.
        double z = 0.0;
        const float top = logits[best];
        for (int32_t i = 0, nv = model_->n_vocab(); i < nv; ++i) z += std::exp((double)(logits[i] - top));
        if (1.0 / z < (double)p_min) return false;
    }
    if (model_->is_eog(best)) return false;  // the target decides where generation ends
    *out = best;
    return true;
}

int32_t DraftModel::decode(double work) {
    // llama.cpp runs a one-token batch on n_threads, any other on n_threads_batch.
    const int32_t n = batch_.n_tokens == 1 ? threads_for_work(work, n_threads_) : n_threads_;
    const int32_t nb = batch_.n_tokens == 1 ? n_threads_batch_ : threads_for_work(work, n_threads_batch_);
    if (n != applied_threads_ || nb != applied_batch_) {
        llama_set_n_threads(ctx_.get(), n, nb);
        applied_threads_ = n;
        applied_batch_ = nb;
    }
    return llama_decode(ctx_.get(), batch_);
}

void DraftModel::draft(std::vector<Job> & jobs) {
    struct State {
        Job * job;
        int32_t idx = -1;     // batch index of this step's logits
        bool active = false;  // still drafting
    };
    std::vector<State> states;
    for (auto & job : jobs) {
        job.out.clear();
        if (job.n_max <= 0 || !job.history || job.history->empty() || job.seq < 0 || job.seq >= (int32_t)cache_.size())
            continue;
        auto & cached = cache_[job.seq];
        const auto & h = *job.history;
        size_t keep = std::mismatch(cached.begin(), cached.begin() + (ptrdiff_t)std::min(cached.size(), h.size()),
                                    h.begin()).first - cached.begin();
        keep = std::min(keep, h.size() - 1);  // the last token is evaluated: its logits give the first draft
        if (!prefix_reusable(memory_, job.seq, (llama_pos)keep, llama_model_n_swa(model_->get()))) keep = 0;
        if (!llama_memory_seq_rm(memory_, job.seq, (llama_pos)keep, -1)) {
            llama_memory_seq_rm(memory_, job.seq, -1, -1);  // partial removal unsupported (recurrent models)
            keep = 0;
        }
        cached.resize(keep);
        states.push_back({&job});
    }
    auto fail = [&](State & s) {
        llama_memory_seq_rm(memory_, s.job->seq, -1, -1);
        cache_[s.job->seq].clear();
        s.job->out.clear();
        s.active = false;
    };
    double work = 0;  // multiply-adds of the batch being built (step_threads.h)
    auto add = [&](State & s, llama_token token, bool logits) {
        const int32_t i = batch_.n_tokens++;
        auto & cached = cache_[s.job->seq];
        work += token_work(n_params_, n_layer_, n_embd_, cached.size() + 1);
        batch_.token[i] = token;
        batch_.pos[i] = (llama_pos)cached.size();
        batch_.n_seq_id[i] = 1;
        batch_.seq_id[i][0] = s.job->seq;
        batch_.logits[i] = logits;
        cached.push_back(token);
        return i;
    };

    // 1. Catch up: evaluate what each sequence lacks of its slot's tokens, n_batch at a time.
    std::vector<State *> pending;
    for (auto & s : states) pending.push_back(&s);
    while (!pending.empty()) {
        batch_.n_tokens = 0;
        work = 0;
        std::vector<State *> in_batch;
        for (State * s : pending) {
            const auto & h = *s->job->history;
            auto & cached = cache_[s->job->seq];
            if (batch_.n_tokens >= n_batch_) break;
            while (batch_.n_tokens < n_batch_ && cached.size() < h.size()) {
                const bool last = cached.size() + 1 == h.size();
                const int32_t i = add(*s, h[cached.size()], last);
                if (last) s->idx = i;
            }
            in_batch.push_back(s);
        }
        if (decode(work) != 0) {
            for (State * s : in_batch) fail(*s);
            return;  // the context is in an unknown state for this step; next step starts over
        }
        for (State * s : in_batch) {
            if (cache_[s->job->seq].size() < s->job->history->size()) continue;
            llama_token t;
            if (pick(s->idx, s->job->p_min, &t)) {
                s->job->out.push_back(t);
                s->active = (int32_t)s->job->out.size() < s->job->n_max;
            }
        }
        pending.erase(std::remove_if(pending.begin(), pending.end(),
                                     [&](State * s) { return cache_[s->job->seq].size() >= s->job->history->size(); }),
                      pending.end());
    }

    // 2. Grow the drafts one token per decode, all slots together.
    while (true) {
        batch_.n_tokens = 0;
        work = 0;
        for (auto & s : states) {
            if (!s.active) continue;
            if (batch_.n_tokens >= n_batch_) {
                s.active = false;
                continue;
            }
            s.idx = add(s, s.job->out.back(), true);
        }
        if (batch_.n_tokens == 0) break;
        if (decode(work) != 0) {
            for (auto & s : states)
                if (s.active) fail(s);
            break;
        }
        for (auto & s : states) {
            if (!s.active) continue;
            llama_token t;
            if (!pick(s.idx, s.job->p_min, &t)) {
                s.active = false;
                continue;
            }
            s.job->out.push_back(t);
            s.active = (int32_t)s.job->out.size() < s.job->n_max;
        }
    }
}

}  // namespace jan
