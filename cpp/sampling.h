// Per-request generation parameters and the llama.cpp sampler chain built from them.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "llama-cpp.h"

namespace jan {

class Model;

struct SamplingParams {
    int32_t max_tokens = -1;          // -1: until end of generation or the context is full
    float temperature = 0.8f;         // <= 0: greedy
    int32_t top_k = 40;               // <= 0: off
    float top_p = 0.95f;              // 1: off
    float min_p = 0.05f;              // 0: off
    float typical_p = 1.0f;           // 1: off
    float repeat_penalty = 1.0f;      // 1: off
    float presence_penalty = 0.0f;
    float frequency_penalty = 0.0f;
    int32_t repeat_last_n = 64;       // -1: whole context
    uint32_t seed = 0xFFFFFFFFu;      // LLAMA_DEFAULT_SEED: a random seed per request
    std::vector<std::pair<int32_t, float>> logit_bias;
    std::string grammar;              // GBNF; empty: none
    std::string grammar_root = "root";
    // Lazy grammar: free text until one of these regexes matches the output
    // (searched anywhere; anchored with ^...$ to match the whole output), then
    // the grammar constrains the rest, fed from the first capture group (grammar_trigger.h).
    std::vector<std::string> grammar_triggers;
    // The triggers searched by llama.cpp's own lazy grammar (the whole output at every token: quadratic in its
    // length) instead of jan's: the reference tests and benchmarks compare jan's with. Not a request option.
    bool lazy_grammar_reference = false;
    // Text the reply already holds before the output (a prefill the prompt ends in, a resumed reply): the grammar
    // reads it first, as though the model had written it, so the grammar holds the reply as a whole and the output
    // continues that text (grammar_prefix.h). A prefix the grammar cannot start with: GrammarPrefixError at submit.
    std::string grammar_prefix;
    // Thinking budget: at most this many tokens between reasoning_start (or
    // the first token, when reasoning_open) and reasoning_end; then the
    // engine forces reasoning_close (default: reasoning_end). -1: no cap.
    int32_t reasoning_budget = -1;
    std::string reasoning_start;
    std::string reasoning_end;
    std::string reasoning_close;
    // Other texts that end the thinking where they stand (Apertus's call opener, which its template writes inside the
    // thinking; a Solar Open message header): seen, the block is over and nothing is forced into what follows.
    std::vector<std::string> reasoning_interrupt;
    bool reasoning_open = false;
    // The budget covers every thinking block of the reply (gpt-oss may open a second analysis message, Qwen3 or
    // DeepSeek a second <think> after a call): a block opened after one ended counts on from what the earlier ones
    // spent, and once the budget is spent a new block is closed at once (where the forced close ends part-way into
    // the start marker, text going on into it is ruled out instead). Off: only the first block is capped.
    bool reasoning_every = false;
    // Output the text of control tokens (<|channel|>, <|START_ACTION|>...)
    // instead of dropping it, for formats whose markers are such tokens.
    bool render_special = false;
    // ...and of these tokens alone (llama-server's preserved_tokens: a request's chosen control tokens, say a
    // tool-call marker, shown in its output while the others stay dropped). Ids in the vocabulary.
    std::vector<int32_t> preserved_tokens;
    // Whether `token`'s text is shown though it is a control token (render_special, or one of preserved_tokens).
    bool shows_special(int32_t token) const {
        if (render_special) return true;
        for (int32_t t : preserved_tokens)
            if (t == token) return true;
        return false;
    }
    // Greedy, or a seed the caller chose: with ContextParams::exact_threads the engine keeps this
    // request's output independent of other processes' load (Scheduler::thread_count_matters).
    bool reproducible = true;
    bool ignore_eos = false;
    // Under a grammar: filter the whole vocabulary with it before the chain, every token (the chain's truncation
    // and draw then see only what the grammar allows). Off: the chain draws first and the grammar checks the one
    // token drawn, filtering only where it refuses it (llama.cpp's common sampler; see sample_token).
    bool grammar_first = false;
    std::vector<std::string> stop;
    bool logprobs = false;            // report each generated token's log-probability
    int32_t n_probs = 0;              // and this many top alternatives (implies logprobs)
    // llama-server's post_sampling_probs: the token's and its alternatives' log-probabilities are those of the
    // distribution the chain drew from (after penalties, truncation and temperature: post_sampling_top), not the
    // model's raw ones; the alternatives are the candidates the chain left, n_probs of them at most.
    bool post_sampling_probs = false;
    // Mirostat (https://arxiv.org/abs/2007.14966): 1 or 2 replaces top-k/top-p/min-p/typical-p and the
    // final draw with llama.cpp's Mirostat sampler, which keeps the text's surprise near `mirostat_tau`
    // (learning rate `mirostat_eta`); 0: off. Ollama's and llama-server's option names.
    int32_t mirostat = 0;
    // llama.cpp's infill sampler after the temperature (llama-server's "infill" in `samplers`, which its
    // code-completion clients send): an end of generation wins when its probability, times the candidates
    // left, outweighs theirs, and candidates that spell the start of another one are merged into it. Sampled
    // requests only (greedy already picks one token; Mirostat replaces the chain).
    bool infill = false;
    float mirostat_tau = 5.0f;
    float mirostat_eta = 0.1f;
    // Also each prompt token's log-probability given the tokens before it (OpenAI's `echo` with
    // `logprobs`): every prompt token is evaluated (no prefix reuse), and its logits are read.
    bool prompt_logprobs = false;
    // Speculative decoding with n-gram (prompt lookup) drafts; see speculative.h.
    int32_t draft_max = 0;            // tokens drafted per step; 0: off
    int32_t draft_min = 0;            // fewer found: no draft this step
    int32_t ngram = 3;                // tokens matched to find an earlier occurrence
    // Draft with the scheduler's draft model (draft_model.h) instead of n-grams.
    bool use_draft_model = false;
    float draft_p_min = 0.75f;        // draft model: stop drafting below this top-token probability
    // LoRA adapters (lora.h) this request runs under, by index into the model's adapters, each with its scale;
    // adapters not listed run at 0 (llama-server's per-request "lora"). lora_set false: the scheduler's current
    // defaults (Scheduler::set_lora_defaults). Resolved once, at submit.
    bool lora_set = false;
    // llama-server's id_slot: run in this slot (0 .. n_parallel - 1), waiting while it is busy; -1: any slot.
    // A client that saves "its" conversation's slot (POST /slots/{id}) needs it to land in a known one.
    int32_t id_slot = -1;
    std::vector<std::pair<int32_t, float>> lora;

    void validate(const Model & model) const;  // throws std::invalid_argument naming the parameter
};

// The grammar sampler for params.grammar: lazy when grammar_triggers are given. nullptr when it does not parse.
llama_sampler * make_grammar_sampler(const Model & model, const SamplingParams & params);

// The request's grammar sampler, advanced through params.grammar_prefix; nullptr without a grammar. Made when the
// request is submitted, on the caller's thread (parsing a grammar and reading a long prefix through it would
// otherwise hold up every slot's next token on the engine thread). Throws std::invalid_argument for a grammar that
// does not parse, GrammarPrefixError for a prefix it cannot start with.
llama_sampler_ptr prepare_grammar(const Model & model, const SamplingParams & params);

// ignore_eos's sampler (after the grammar in the chain): bans every end-of-generation token while any other
// candidate is left, so a grammar that has finished still ends the generation.
llama_sampler * make_ignore_eos_sampler(const Model & model);

// The chain: logit bias, grammar (`grammar`: prepare_grammar's, taken over) and its UTF-8 guard (utf8_sampler.h),
// ignore_eos, penalties, then either greedy or the truncation samplers, temperature and a seeded draw. The
// penalties sampler has already seen the prompt (repeats of prompt text are penalized, as in llama.cpp's server);
// the grammar has seen only its prefix (it constrains the output, after the reply text the prompt ends in).
// A request's samplers, in the order they apply: `bias` (its logit bias; null without one), `constraint` (the
// grammar and its UTF-8 guard; null without a grammar), `chain` (ignore_eos, penalties, the thinking budget, then
// greedy or the truncation samplers and the draw). See sample_token.
struct IgnoreEosTokens;  // (sampling.cpp: the end-of-generation tokens ignore_eos bans)

struct SlotSampler {
    llama_sampler_ptr bias;
    llama_sampler_ptr constraint;
    llama_sampler_ptr chain;
    llama_sampler * grammar = nullptr;  // (in `constraint`)
    llama_sampler * utf8 = nullptr;     // (in `constraint`)
    bool sample_first = false;          // draw, then check the one token (sample_token)
    bool greedy = false;                // the chain picks the best logit (temperature <= 0)
    // The chain is greedy alone, or ignore_eos then greedy, with no bias nor constraint: sample_token picks the same
    // token from the logits directly, never filling `candidates` (what temperature 0 asks of most requests).
    bool plain_greedy = false;
    std::shared_ptr<const IgnoreEosTokens> ignore_eos;  // the chain's ignore_eos tokens (null without ignore_eos)
    std::vector<float> saved_logits;    // (their logits while a plain_greedy pick bans them)
    std::vector<llama_token_data> candidates;  // (the vocabulary's, reused from token to token)
    std::vector<int32_t> ranked;        // (candidate indices in the order a refused greedy pick checks them)
    // The candidates as the chain left them at the last sample_token (in `candidates`; size 0 before one), for
    // post_sampling_top.
    llama_token_data_array last{nullptr, 0, -1, false};
};

// `end_reasoning`: the request's flag that closes its thinking now (reasoning_budget.h; may be null).
SlotSampler build_sampler(const Model & model, const SamplingParams & params, int32_t n_ctx_slot,
                          const std::vector<int32_t> & prompt, llama_sampler_ptr grammar,
                          std::shared_ptr<std::atomic<bool>> end_reasoning = nullptr);

// The next token from the logits of batch row `idx`, accepted by every sampler.
//
// Under a grammar the chain draws first and the grammar (and the UTF-8 guard, strictly) check the one token drawn;
// only a token they refuse has them filter the whole vocabulary and the chain draw again from what is left, as
// llama.cpp's common sampler does by default. A grammar's pass over a vocabulary of 150k-260k tokens is most of a
// step's sampling time, on the thread that samples for every slot (measured: benchmarks/bench_grammar.py).
// - Greedy: the same token as filtering first (the best one the grammar allows: the other samplers change each
//   token's logit alone). A refused pick is followed by the next best candidates, checked one by one in the
//   chain's order (best logit first, ties to the lower index, as llama.cpp's greedy sampler breaks them), up to
//   64 of them, before the whole vocabulary is filtered: a grammar that refuses what the model wants most (an enum,
//   a pattern, a fixed key order) costs a sort and a few checks, not a pass over every token per refusal.
// - Sampled: without truncation (top_k 0, top_p 1, min_p 0) the same distribution as filtering first (a refused
//   draw is drawn again from the rest, in proportion); with it, llama.cpp's: the truncation sees the whole
//   vocabulary. A refused draw spends one more of the seeded generator's draws: a seed still replays its output.
// Filtered first: `grammar_first` (the chain's truncation over the allowed tokens only), and Mirostat, whose draw
// also moves its learning state (a second draw would move it twice).
llama_token sample_token(SlotSampler & sampler, llama_context * ctx, int32_t idx);

struct TokenLogprob {
    int32_t token;
    float logprob;
};

// llama-server's post-sampling probabilities of the last sample_token: the drawn token's log-probability in the
// distribution the chain drew it from (the softmax of the candidates it left, after temperature), and the best
// `n` of those candidates (fewer where the chain left fewer). A greedy pick had one candidate: probability 1.
// `token_out` gets the token's (-inf where the chain left it no probability).
std::vector<TokenLogprob> post_sampling_top(const SlotSampler & sampler, llama_token token, int32_t n,
                                            float * token_out);

// log-softmax over the raw logits (before any sampler), like OpenAI's logprobs:
// the chosen token's log-probability and the n best alternatives.
float logprob_of(const float * logits, int32_t n_vocab, int32_t token, float * log_z_out = nullptr);
std::vector<TokenLogprob> top_logprobs(const float * logits, int32_t n_vocab, int32_t n, float log_z);

}  // namespace jan
