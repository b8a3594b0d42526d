#include "sampling.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <regex>
#include <stdexcept>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "grammar_prefix.h"
#include "grammar_trigger.h"
#include "model.h"
#include "reasoning_budget.h"
#include "utf8_sampler.h"

namespace jan {

llama_sampler * make_grammar_sampler(const Model & model, const SamplingParams & p) {
    if (p.grammar_triggers.empty())
        return llama_sampler_init_grammar(model.vocab(), p.grammar.c_str(), p.grammar_root.c_str());
    if (p.lazy_grammar_reference) {
        std::vector<const char *> patterns;
        for (const auto & t : p.grammar_triggers) patterns.push_back(t.c_str());
        try {
            return llama_sampler_init_grammar_lazy_patterns(model.vocab(), p.grammar.c_str(), p.grammar_root.c_str(),
                                                            patterns.data(), patterns.size(), nullptr, 0);
        } catch (const std::regex_error &) {
            TriggerPatterns named(p.grammar_triggers);  // (throws, naming the pattern at fault)
            throw std::invalid_argument("grammar_triggers: llama.cpp could not compile the trigger patterns");
        }
    }
    // jan's own lazy grammar (grammar_trigger.h): a plain grammar, idle until a trigger matches. The grammar is
    // parsed first, as llama.cpp does: a grammar that does not parse is the error named, whatever the triggers.
    llama_sampler_ptr grammar(llama_sampler_init_grammar(model.vocab(), p.grammar.c_str(), p.grammar_root.c_str()));
    if (!grammar) return nullptr;
    auto patterns = std::make_shared<const TriggerPatterns>(p.grammar_triggers);
    return make_lazy_grammar_sampler(model, grammar.release(), std::move(patterns));
}

// ignore_eos: every end-of-generation token (not just EOS: chat models end turns with EOT) is banned while
// another token is left to sample. A logit bias of -inf (llama-server's way) bans them even where a finished
// grammar allows nothing else, and the sampler then picks a token the grammar rejects ("empty grammar stack");
// here the end of generation is what is left, and the request stops as a grammar-constrained one would.
struct IgnoreEosTokens {
    std::vector<uint8_t> mask;     // mask[token] != 0: an end-of-generation token
    std::vector<llama_token> ids;  // the same tokens, listed (a handful: EOS, EOT, EOM, ...)
    bool is_eog(llama_token t) const { return t >= 0 && (size_t)t < mask.size() && mask[t]; }
};

llama_sampler_ptr prepare_grammar(const Model & model, const SamplingParams & p) {
    if (p.grammar.empty()) return nullptr;
    llama_sampler_ptr g(make_grammar_sampler(model, p));
    if (!g) throw std::invalid_argument("grammar: llama.cpp could not parse the GBNF grammar (or its root rule '" +
                                        p.grammar_root + "')");
    if (!p.grammar_prefix.empty())
        advance_grammar(model, g.get(), p.grammar_prefix, [&] { return make_grammar_sampler(model, p); });
    model.utf8_classes();  // built here, on the caller's thread, not on the engine's when the slot starts
    if (!p.grammar_triggers.empty()) model.pieces();  // (likewise: a trigger that fires inside a token reads by it)
    return g;
}

void SamplingParams::validate(const Model & model) const {
    auto bad = [](const std::string & name, const std::string & why) {
        throw std::invalid_argument(name + ": " + why);
    };
    if (max_tokens < -1) bad("max_tokens", "must be >= 0, or -1 for no limit");
    if (!std::isfinite(temperature)) bad("temperature", "must be a finite number");
    if (top_p < 0.0f || top_p > 1.0f || !std::isfinite(top_p)) bad("top_p", "must be between 0 and 1");
    if (min_p < 0.0f || min_p > 1.0f || !std::isfinite(min_p)) bad("min_p", "must be between 0 and 1");
    if (typical_p <= 0.0f || typical_p > 1.0f) bad("typical_p", "must be in (0, 1]");
    if (repeat_penalty <= 0.0f || !std::isfinite(repeat_penalty)) bad("repeat_penalty", "must be > 0");
    if (!std::isfinite(presence_penalty)) bad("presence_penalty", "must be a finite number");
    if (!std::isfinite(frequency_penalty)) bad("frequency_penalty", "must be a finite number");
    if (repeat_last_n < -1) bad("repeat_last_n", "must be >= -1");
    if (reasoning_budget < -1) bad("reasoning_budget", "must be >= 0, or -1 for no limit");
    if (reasoning_budget >= 0 && reasoning_end.empty())
        bad("reasoning_budget", "needs the end-of-thinking marker (reasoning_end)");
    if (!grammar_triggers.empty() && grammar.empty()) bad("grammar_triggers", "given without a grammar");
    if (!grammar_prefix.empty() && grammar.empty()) bad("grammar_prefix", "given without a grammar");
    if (n_probs < 0 || n_probs > 100) bad("n_probs", "must be between 0 and 100");
    if (mirostat < 0 || mirostat > 2) bad("mirostat", "must be 0 (off), 1 or 2");
    if (!(mirostat_tau >= 0.0f) || !std::isfinite(mirostat_tau)) bad("mirostat_tau", "must be a finite number >= 0");
    if (!(mirostat_eta > 0.0f) || !std::isfinite(mirostat_eta)) bad("mirostat_eta", "must be a finite number > 0");
    if (draft_max < 0 || draft_max > 256) bad("draft_max", "must be between 0 and 256");
    if (draft_min < 0) bad("draft_min", "must be >= 0");
    if (ngram < 1 || ngram > 64) bad("ngram", "must be between 1 and 64");
    if (!(draft_p_min >= 0.0f && draft_p_min <= 1.0f)) bad("draft_p_min", "must be between 0 and 1");
    for (const auto & s : stop)
        if (s.empty()) bad("stop", "stop strings must not be empty");
    for (int32_t tok : preserved_tokens)
        if (tok < 0 || tok >= model.n_vocab())
            bad("preserved_tokens", "token id " + std::to_string(tok) + " is outside the vocabulary");
    for (const auto & [tok, bias] : logit_bias) {
        if (tok < 0 || tok >= model.n_vocab())
            bad("logit_bias", "token id " + std::to_string(tok) + " is outside the vocabulary");
        if (std::isnan(bias)) bad("logit_bias", "bias must be a number");
    }
    // (the grammar itself is parsed by prepare_grammar, which submit calls next: a bad one is the caller's
    // ValueError there, not a failed request later)
}

namespace {

struct IgnoreEosState {
    std::shared_ptr<const IgnoreEosTokens> eog;  // (shared by clones)
};

const char * ignore_eos_name(const llama_sampler *) { return "jan-ignore-eos"; }

void ignore_eos_apply(llama_sampler * smpl, llama_token_data_array * cur_p) {
    const auto & eog = *static_cast<IgnoreEosState *>(smpl->ctx)->eog;
    auto is_eog = [&](llama_token t) { return eog.is_eog(t); };
    bool other = false;  // (found within the first few candidates unless a grammar rules out most of them)
    for (size_t i = 0; i < cur_p->size && !other; ++i)
        other = !is_eog(cur_p->data[i].id) && cur_p->data[i].logit != -INFINITY;
    if (!other) return;
    // The candidates are still the vocabulary in token order (what the chain's first samplers leave): banned by
    // index, as llama.cpp's logit bias does, not by a pass over a vocabulary of up to 262k tokens per token.
    bool in_order = cur_p->size == eog.mask.size();
    for (llama_token t : eog.ids) in_order = in_order && cur_p->data[t].id == t;
    if (in_order) {
        for (llama_token t : eog.ids) cur_p->data[t].logit = -INFINITY;
        return;
    }
    for (size_t i = 0; i < cur_p->size; ++i)
        if (is_eog(cur_p->data[i].id)) cur_p->data[i].logit = -INFINITY;
}

llama_sampler * ignore_eos_clone(const llama_sampler * smpl);

void ignore_eos_free(llama_sampler * smpl) { delete static_cast<IgnoreEosState *>(smpl->ctx); }

llama_sampler_i * ignore_eos_iface() {
    static llama_sampler_i iface = [] {
        llama_sampler_i i{};  // value-initialised: the backend hooks stay null (CPU-only sampler)
        i.name = ignore_eos_name;
        i.apply = ignore_eos_apply;
        i.clone = ignore_eos_clone;
        i.free = ignore_eos_free;
        return i;
    }();
    return &iface;
}

llama_sampler * ignore_eos_clone(const llama_sampler * smpl) {
    return llama_sampler_init(ignore_eos_iface(), new IgnoreEosState(*static_cast<const IgnoreEosState *>(smpl->ctx)));
}

}  // namespace

namespace {

std::shared_ptr<const IgnoreEosTokens> ignore_eos_tokens(const Model & model) {
    const int32_t n_vocab = model.n_vocab();
    auto eog = std::make_shared<IgnoreEosTokens>();
    eog->mask.assign(n_vocab, 0);
    for (llama_token t = 0; t < n_vocab; ++t)
        if (model.is_eog(t)) {
            eog->mask[t] = 1;
            eog->ids.push_back(t);
        }
    return eog;
}

llama_sampler * make_ignore_eos_sampler(std::shared_ptr<const IgnoreEosTokens> eog) {
    return llama_sampler_init(ignore_eos_iface(), new IgnoreEosState{std::move(eog)});
}

}  // namespace

llama_sampler * make_ignore_eos_sampler(const Model & model) { return make_ignore_eos_sampler(ignore_eos_tokens(model)); }

namespace {

llama_sampler_ptr new_chain() {
    auto sparams = llama_sampler_chain_default_params();
    sparams.no_perf = true;
    return llama_sampler_ptr(llama_sampler_chain_init(sparams));
}

llama_token_data_array fill_candidates(std::vector<llama_token_data> & buf, const float * logits, int32_t n_vocab) {
    buf.resize((size_t)n_vocab);
    for (int32_t t = 0; t < n_vocab; ++t) buf[(size_t)t] = llama_token_data{t, logits[t], 0.0f};
    return llama_token_data_array{buf.data(), buf.size(), -1, false};
}

llama_token selected_token(const llama_token_data_array & cur) {
    if (cur.selected < 0 || (size_t)cur.selected >= cur.size)
        throw std::runtime_error("the sampler chain selected no token");
    return cur.data[cur.selected].id;
}

// The index llama.cpp's greedy sampler selects from x[0..n) in token order: a strict > from index 0, so the first of
// equal greatest values (-0 and +0 equal), NaNs never picked but at index 0, where nothing beats one. The greatest
// value is found first, then its first index; on x86 four floats at a time (maxps is exactly `x > m ? x : m`, a NaN
// x leaving m), about 1.5 instructions a token against the ~15 of filling llama_token_data candidates and passing
// them through the chain.
int32_t first_greatest(const float * x, int32_t n) {
    if (n <= 0 || std::isnan(x[0])) return 0;
    float best = x[0];  // (never NaN: a NaN is never greater than anything)
    int32_t t = 0;
#if defined(__SSE2__)
    __m128 m0 = _mm_set1_ps(best), m1 = m0;
    for (; t + 8 <= n; t += 8) {
        m0 = _mm_max_ps(_mm_loadu_ps(x + t), m0);
        m1 = _mm_max_ps(_mm_loadu_ps(x + t + 4), m1);
    }
    alignas(16) float lanes[8];
    _mm_store_ps(lanes, m0);
    _mm_store_ps(lanes + 4, m1);
    for (float v : lanes) best = v > best ? v : best;
#endif
    for (; t < n; ++t) best = x[t] > best ? x[t] : best;
    t = 0;
#if defined(__SSE2__)
    const __m128 b = _mm_set1_ps(best);
    for (; t + 4 <= n; t += 4) {
        const int eq = _mm_movemask_ps(_mm_cmpeq_ps(_mm_loadu_ps(x + t), b));
        if (eq) return t + __builtin_ctz((unsigned)eq);
    }
#endif
    for (; t < n; ++t)
        if (x[t] == best) return t;
    return 0;
}

// What a chain of (ignore_eos, then) greedy alone picks from `logits` (SlotSampler::plain_greedy), without the
// candidates it would fill and pass through both samplers: ignore_eos_apply's bans where a token that is no end of
// generation and not -inf is left (the banned logits set to -inf for the pick and put back after, bit for bit: the
// logprobs read the raw ones), then greedy's pick.
llama_token greedy_pick(SlotSampler & s, float * logits, int32_t n_vocab) {
    const IgnoreEosTokens * eog = s.ignore_eos.get();
    bool ban = false;
    if (eog)
        for (int32_t t = 0; t < n_vocab && !ban; ++t) ban = !eog->is_eog(t) && logits[t] != -INFINITY;
    if (!ban) return first_greatest(logits, n_vocab);
    auto & saved = s.saved_logits;
    saved.clear();
    for (llama_token t : eog->ids) {
        saved.push_back(logits[t]);
        logits[t] = -INFINITY;
    }
    const llama_token token = first_greatest(logits, n_vocab);
    for (size_t i = 0; i < eog->ids.size(); ++i) logits[eog->ids[i]] = saved[i];
    return token;
}

// Whether the grammar and the UTF-8 guard let `token` be written now.
bool constraint_allows(const SlotSampler & s, llama_token token) {
    llama_token_data one{token, 1.0f, 0.0f};
    llama_token_data_array check{&one, 1, -1, false};
    llama_sampler_apply(s.grammar, &check);
    return one.logit != -INFINITY && utf8_sampler_allows(s.utf8, token);
}

// How many of a refused greedy pick's runners-up are checked one by one before the grammar filters the whole
// vocabulary: a check is one token against the grammar's stacks (microseconds), the filter every token (~50 ms on
// a 262k vocabulary; benchmarks/bench_grammar.py, its lipogram); 64 covers what a grammar refuses of a
// model's favourites in practice, and bounds the checks when it allows almost nothing (a finished document).
constexpr size_t kRankedChecks = 64;

// The greedy pick among what the grammar allows, after the chain's pick `refused` was refused, from `cur` as the
// chain left it (every candidate's final logit). The same token as filtering first and picking greedily: the
// samplers before greedy change each token's logit alone (logit bias, penalties) or ban what filtering would
// also leave banned (ignore_eos bans the end of generation while another token is allowed: a token found here is
// one; the reasoning budget leaves only its closing token, which was the refused pick). Returns LLAMA_TOKEN_NULL
// when none of the best kRankedChecks is allowed, or a logit is NaN (no order to follow): the caller filters.
llama_token best_allowed(SlotSampler & s, const llama_token_data_array & cur, llama_token refused) {
    auto & order = s.ranked;
    order.clear();
    for (size_t i = 0; i < cur.size; ++i) {
        const float logit = cur.data[i].logit;
        if (std::isnan(logit)) return LLAMA_TOKEN_NULL;
        if (logit != -INFINITY && cur.data[i].id != refused) order.push_back((int32_t)i);
    }
    const auto better = [&](int32_t a, int32_t b) {
        return cur.data[a].logit > cur.data[b].logit || (cur.data[a].logit == cur.data[b].logit && a < b);
    };
    const size_t k = std::min(order.size(), kRankedChecks);
    std::partial_sort(order.begin(), order.begin() + (std::ptrdiff_t)k, order.end(), better);
    for (size_t j = 0; j < k; ++j) {
        const llama_token t = cur.data[order[j]].id;
        if (constraint_allows(s, t)) return t;
    }
    return LLAMA_TOKEN_NULL;
}

}  // namespace

llama_token sample_token(SlotSampler & s, llama_context * ctx, int32_t idx) {
    float * logits = llama_get_logits_ith(ctx, idx);  // (greedy_pick bans in place, then restores)
    if (!logits) throw std::runtime_error("llama.cpp returned no logits for the sampled row");
    const int32_t n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(llama_get_model(ctx)));
    if (s.plain_greedy && n_vocab > 0 && (!s.ignore_eos || s.ignore_eos->mask.size() == (size_t)n_vocab)) {
        // (greedy and ignore_eos keep no state: the chain's accept has nothing to tell them; post_sampling_top
        // reads no candidates for a greedy pick)
        s.last = llama_token_data_array{s.candidates.data(), 0, -1, false};
        return greedy_pick(s, logits, n_vocab);
    }
    llama_token_data_array cur = fill_candidates(s.candidates, logits, n_vocab);
    if (s.bias) llama_sampler_apply(s.bias.get(), &cur);
    llama_token token = LLAMA_TOKEN_NULL;
    if (s.constraint && s.sample_first) {
        llama_sampler_apply(s.chain.get(), &cur);
        token = selected_token(cur);
        const llama_token ranked = constraint_allows(s, token) ? token
                                   : s.greedy ? best_allowed(s, cur, token) : LLAMA_TOKEN_NULL;
        if (ranked != LLAMA_TOKEN_NULL) {
            token = ranked;
        } else {  // refused: filtered first, as when the grammar is applied first
            cur = fill_candidates(s.candidates, logits, n_vocab);
            if (s.bias) llama_sampler_apply(s.bias.get(), &cur);
            llama_sampler_apply(s.constraint.get(), &cur);
            llama_sampler_apply(s.chain.get(), &cur);
            token = selected_token(cur);
        }
    } else {
        if (s.constraint) llama_sampler_apply(s.constraint.get(), &cur);
        llama_sampler_apply(s.chain.get(), &cur);
        token = selected_token(cur);
    }
    if (s.bias) llama_sampler_accept(s.bias.get(), token);
    if (s.constraint) llama_sampler_accept(s.constraint.get(), token);
    llama_sampler_accept(s.chain.get(), token);
    s.last = cur;
    return token;
}

std::vector<TokenLogprob> post_sampling_top(const SlotSampler & s, llama_token token, int32_t n, float * token_out) {
    std::vector<TokenLogprob> out;
    *token_out = -INFINITY;
    if (s.greedy) {  // (greedy keeps every logit: its distribution is the one token it picks)
        *token_out = 0.0f;
        if (n > 0) out.push_back({token, 0.0f});
        return out;
    }
    // The softmax of what the chain left: its truncation removed candidates (size) or banned them (-inf); the
    // temperature scaled the logits in place. (The draw's own probabilities are not read: which samplers fill
    // them differs between llama.cpp's samplers.)
    std::vector<int32_t> live;
    float max_logit = -INFINITY;
    for (size_t i = 0; i < s.last.size; ++i) {
        const float logit = s.last.data[i].logit;
        if (logit == -INFINITY || std::isnan(logit)) continue;
        live.push_back((int32_t)i);
        max_logit = std::max(max_logit, logit);
    }
    if (live.empty()) return out;
    double sum = 0.0;
    for (int32_t i : live) sum += std::exp((double)(s.last.data[i].logit - max_logit));
    const float log_z = max_logit + (float)std::log(sum);
    for (int32_t i : live)
        if (s.last.data[i].id == token) *token_out = s.last.data[i].logit - log_z;
    const size_t k = std::min(live.size(), (size_t)std::max(n, 0));
    std::partial_sort(live.begin(), live.begin() + (std::ptrdiff_t)k, live.end(), [&](int32_t a, int32_t b) {
        return s.last.data[a].logit > s.last.data[b].logit;
    });
    for (size_t j = 0; j < k; ++j) out.push_back({s.last.data[live[j]].id, s.last.data[live[j]].logit - log_z});
    return out;
}

SlotSampler build_sampler(const Model & model, const SamplingParams & p, int32_t n_ctx_slot,
                          const std::vector<int32_t> & prompt, llama_sampler_ptr grammar,
                          std::shared_ptr<std::atomic<bool>> end_reasoning) {
    SlotSampler out;
    out.chain = new_chain();
    llama_sampler * chain_ptr = out.chain.get();
    const int32_t n_vocab = model.n_vocab();
    out.sample_first = !p.grammar_first && (p.temperature <= 0.0f || p.mirostat == 0);
    out.greedy = p.temperature <= 0.0f;

    std::vector<llama_logit_bias> bias;
    for (const auto & [tok, b] : p.logit_bias) bias.push_back({tok, b});
    if (!bias.empty())
        out.bias.reset(llama_sampler_init_logit_bias(n_vocab, (int32_t)bias.size(), bias.data()));

    if (!p.grammar.empty() && !grammar) grammar = prepare_grammar(model, p);
    if (grammar) {
        out.constraint = new_chain();
        out.grammar = grammar.get();
        llama_sampler_chain_add(out.constraint.get(), grammar.release());  // (the chain owns it from here)
        // Right after it: llama.cpp's grammar lets through bytes that are no UTF-8 (utf8_sampler.h). Only under a
        // grammar, whose output a client parses; plain generation is left as llama.cpp samples it.
        out.utf8 = make_utf8_sampler(model);
        llama_sampler_chain_add(out.constraint.get(), out.utf8);
    }
    // After the grammar: it bans the end of generation only while the grammar leaves something else to write.
    if (p.ignore_eos) {
        out.ignore_eos = ignore_eos_tokens(model);
        llama_sampler_chain_add(chain_ptr, make_ignore_eos_sampler(out.ignore_eos));
    }

    const bool penalties = p.repeat_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
    if (penalties && p.repeat_last_n != 0) {
        const int32_t last_n = p.repeat_last_n < 0 ? n_ctx_slot : p.repeat_last_n;
        llama_sampler * pen = llama_sampler_init_penalties(n_vocab, last_n, p.repeat_penalty, p.frequency_penalty,
                                                           p.presence_penalty);
        const size_t from = prompt.size() > (size_t)last_n ? prompt.size() - last_n : 0;
        for (size_t i = from; i < prompt.size(); ++i)
            if (prompt[i] != LLAMA_TOKEN_NULL) llama_sampler_accept(pen, prompt[i]);  // NULL: image/audio
        llama_sampler_chain_add(chain_ptr, pen);
    }

    // After the grammar and penalties, so a forced end-of-thinking token wins over them.
    if (llama_sampler * budget = make_reasoning_budget_sampler(model, p, std::move(end_reasoning)))
        llama_sampler_chain_add(chain_ptr, budget);

    if (p.temperature <= 0.0f) {
        llama_sampler_chain_add(chain_ptr, llama_sampler_init_greedy());
        // nothing but ignore_eos before greedy (no bias, grammar, penalties, thinking budget): sample_token picks
        // the token from the logits itself (greedy_pick), the same one
        out.plain_greedy = !out.bias && !out.constraint &&
                           llama_sampler_chain_n(chain_ptr) == (out.ignore_eos ? 2 : 1);
        return out;
    }
    if (p.mirostat != 0) {
        // Mirostat picks the token itself from the temperature-scaled distribution (it sets its own top-k).
        llama_sampler_chain_add(chain_ptr, llama_sampler_init_temp(p.temperature));
        llama_sampler_chain_add(chain_ptr, p.mirostat == 1
            ? llama_sampler_init_mirostat(n_vocab, p.seed, p.mirostat_tau, p.mirostat_eta, 100)  // m = 100: the paper's
            : llama_sampler_init_mirostat_v2(p.seed, p.mirostat_tau, p.mirostat_eta));
        return out;
    }
    if (p.top_k > 0) llama_sampler_chain_add(chain_ptr, llama_sampler_init_top_k(p.top_k));
    if (p.typical_p < 1.0f) llama_sampler_chain_add(chain_ptr, llama_sampler_init_typical(p.typical_p, 1));
    if (p.top_p < 1.0f) llama_sampler_chain_add(chain_ptr, llama_sampler_init_top_p(p.top_p, 1));
    if (p.min_p > 0.0f) llama_sampler_chain_add(chain_ptr, llama_sampler_init_min_p(p.min_p, 1));
    llama_sampler_chain_add(chain_ptr, llama_sampler_init_temp(p.temperature));
    if (p.infill) llama_sampler_chain_add(chain_ptr, llama_sampler_init_infill(model.vocab()));
    llama_sampler_chain_add(chain_ptr, llama_sampler_init_dist(p.seed));
    return out;
}

float logprob_of(const float * logits, int32_t n_vocab, int32_t token, float * log_z_out) {
    float max_logit = -INFINITY;
    for (int32_t i = 0; i < n_vocab; ++i) max_logit = std::max(max_logit, logits[i]);
    double sum = 0.0;
    for (int32_t i = 0; i < n_vocab; ++i) sum += std::exp((double)(logits[i] - max_logit));
    const float log_z = max_logit + (float)std::log(sum);
    if (log_z_out) *log_z_out = log_z;
    return logits[token] - log_z;
}

std::vector<TokenLogprob> top_logprobs(const float * logits, int32_t n_vocab, int32_t n, float log_z) {
    n = std::min(n, n_vocab);
    std::vector<int32_t> idx(n_vocab);
    for (int32_t i = 0; i < n_vocab; ++i) idx[i] = i;
    std::partial_sort(idx.begin(), idx.begin() + n, idx.end(),
                      [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
    std::vector<TokenLogprob> out;
    out.reserve(n);
    for (int32_t i = 0; i < n; ++i) out.push_back({idx[i], logits[idx[i]] - log_z});
    return out;
}

}  // namespace jan
