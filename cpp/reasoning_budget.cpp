#include "reasoning_budget.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "model.h"

namespace jan {
namespace {

enum class Phase { Waiting, Thinking, Closing, Done };

struct BudgetState {
    const Model * model;
    std::string start;                 // text that opens the thinking block (may be empty)
    std::string end;                   // text that closes it naturally
    std::vector<std::string> interrupt;  // other texts that end it where they stand (nothing forced after them)
    std::vector<llama_token> closing;  // tokens forced when the budget is spent
    std::string closing_text;          // their text, for the error when something rules them out
    int32_t budget;
    bool open_at_start;
    bool every;                        // every block of the reply counts against the one budget, not the first alone
    Phase phase;
    int32_t spent = 0;                 // tokens generated inside the block
    size_t forced = 0;                 // closing tokens already emitted
    std::string tail;                  // the last few bytes of output, to find markers across tokens
    std::shared_ptr<std::atomic<bool>> end_now;  // the budget spent now, by the request's owner (may be null)
    // Whether the forced closing text ends part-way into the start marker (gpt-oss's close where a call may follow
    // stops at <|channel|>, where "analysis" opens a block): only then is text going on into the marker ruled out
    // once the budget is spent. Elsewhere a marker of plain text ("Here are my reasoning steps:", "<think>") may
    // begin in the answer ("Here", "<th"), which must stay free; a block opened anyway is closed at once.
    bool guard_start = false;
    // The start marker where it is one token of its own (<think>, [THINK], <seed:think>), else -1. Once the budget is
    // spent (a budget of 0: from the first token) that token is ruled out: a block the model opens again would only be closed at once, and a model that
    // insists opened one after another (<think></think><think></think>...) until max_tokens, with no answer.
    llama_token start_token = -1;
    // Tokens generated in the block after its end was due (budget spent, or ended by the owner) while the text stood
    // inside a character: the close waits for the character's last bytes, at most kLateTokens tokens.
    int32_t late = 0;

    // Whether the tail holds the end marker or an interrupting one: the block is over.
    bool ended() const {
        if (!end.empty() && tail.find(end) != std::string::npos) return true;
        for (const auto & marker : interrupt)
            if (!marker.empty() && tail.find(marker) != std::string::npos) return true;
        return false;
    }

    void restart() {
        phase = open_at_start ? Phase::Thinking : (start.empty() ? Phase::Done : Phase::Waiting);
        spent = 0;
        forced = 0;
        late = 0;
        tail.clear();
    }
};

// A UTF-8 character has at most three bytes after its first: as many tokens finish any character a byte-level
// vocabulary starts (one byte each), however it was split.
constexpr int32_t kLateTokens = 3;

// Whether `text` ends inside a UTF-8 character: a lead byte among its last three bytes that wants more bytes than
// follow it. The forced end-of-thinking text there would break the character, and under a grammar the UTF-8 sampler
// (utf8_sampler.h) bans it, which left the budget nothing to force (a 400 on a request that did nothing wrong).
bool inside_character(const std::string & text) {
    const size_t n = text.size();
    for (size_t back = 1; back <= 3 && back <= n; ++back) {
        const auto byte = static_cast<unsigned char>(text[n - back]);
        if ((byte & 0xC0) == 0x80) continue;  // a continuation byte: the lead is further back
        const size_t want = byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : byte >= 0xC0 ? 2 : 1;
        return want > back;
    }
    return false;  // ASCII at the end, or stray continuation bytes: nothing to finish
}

const char * budget_name(const llama_sampler *) { return "jan-reasoning-budget"; }

void budget_accept(llama_sampler * smpl, llama_token token) {
    auto * st = static_cast<BudgetState *>(smpl->ctx);
    // special=true: markers are often special tokens (<think>, <|channel|>)
    st->tail += st->model->token_to_piece(token, true);
    size_t longest = std::max(st->start.size(), st->end.size());
    for (const auto & marker : st->interrupt) longest = std::max(longest, marker.size());
    const size_t keep = longest + 8;
    if (st->tail.size() > 2 * keep) st->tail.erase(0, st->tail.size() - keep);
    switch (st->phase) {
        case Phase::Waiting: {
            // Anywhere in the tail, not only at its end: a BPE token may run past the marker ("<th" "ink" ">Total"),
            // and an earlier complete marker would already have been seen, so any found now is new.
            const size_t at = st->start.empty() ? std::string::npos : st->tail.find(st->start);
            if (at != std::string::npos) {
                st->phase = Phase::Thinking;
                st->spent = 0;
                st->late = 0;
                st->tail.erase(0, at + st->start.size());  // what follows the marker is thinking already
                if (st->ended()) st->phase = Phase::Done;
            }
            break;
        }
        case Phase::Thinking:
            if (st->spent >= st->budget || (st->end_now && st->end_now->load())) ++st->late;  // past its due end
            st->spent++;
            // (likewise: the end marker may close inside a token that goes on with the answer)
            if (st->ended()) st->phase = Phase::Done;
            break;
        case Phase::Closing:
            if (++st->forced >= st->closing.size()) {
                st->phase = Phase::Done;
                // the forced text is no block the model opens (a closing that ends in the start marker would
                // reopen the block it closed, at once and again)
                const size_t own = st->start.empty() ? std::string::npos : st->tail.rfind(st->start);
                if (own != std::string::npos) st->tail.erase(0, own + st->start.size());
            }
            break;
        case Phase::Done:
            // A later block (gpt-oss opens a second analysis message after a final or a call's header): the budget
            // covers all the thinking of one reply, so it counts on from what the earlier blocks spent.
            if (st->every && !st->start.empty()) {
                const size_t again = st->tail.find(st->start);
                if (again != std::string::npos) {
                    st->phase = Phase::Thinking;
                    st->forced = 0;
                    st->late = 0;
                    st->tail.erase(0, again + st->start.size());
                    if (st->ended()) st->phase = Phase::Done;
                }
            }
            break;
    }
}

// The length of the longest proper prefix of `marker` that `text` ends in (0: none).
size_t open_prefix(const std::string & text, const std::string & marker) {
    for (size_t k = std::min(text.size(), marker.size() - 1); k > 0; --k)
        if (text.compare(text.size() - k, k, marker, 0, k) == 0) return k;
    return 0;
}

void budget_apply(llama_sampler * smpl, llama_token_data_array * cur_p) {
    auto * st = static_cast<BudgetState *>(smpl->ctx);
    if (st->phase == Phase::Done && st->every && st->guard_start &&
        (st->spent >= st->budget || (st->end_now && st->end_now->load()))) {
        // The budget is spent (or the thinking ended by the request's owner), and the forced close ends part-way into
        // the start marker (guard_start): a block the model goes on to open there would be closed at once, and
        // reopened (the forced close of a gpt-oss reply that may call a tool stops at <|channel|>, where "analysis"
        // opens one).
        // So where the output stands part-way into the start marker, the text that would go on into it is ruled
        // out (unless nothing else is allowed there: then a block it opens is closed at once).
        if (const size_t k = open_prefix(st->tail, st->start)) {
            const std::string rest = st->start.substr(k);
            std::vector<size_t> into;  // the allowed candidates whose text goes on into the marker
            size_t allowed = 0;
            for (size_t i = 0; i < cur_p->size; ++i) {
                if (cur_p->data[i].logit == -INFINITY) continue;
                ++allowed;
                const std::string piece = st->model->token_to_piece(cur_p->data[i].id, true);
                if (!piece.empty() && (piece.size() <= rest.size() ? rest.compare(0, piece.size(), piece) == 0
                                                                   : piece.compare(0, rest.size(), rest) == 0))
                    into.push_back(i);
            }
            if (into.size() < allowed)  // (none other allowed: left, and the block it opens is closed at once)
                for (size_t i : into) cur_p->data[i].logit = -INFINITY;
        }
    }
    // Spent before any block opened (a budget of 0, thinking asked off, where the prompt left it to the model to open
    // one: a template without a switch) is no different: the block would be closed at once, an empty <think></think>
    // before the answer. So the one-token marker is ruled out from the first token, as after a spent budget.
    if (((st->phase == Phase::Done && st->every) || st->phase == Phase::Waiting) && st->start_token >= 0 &&
        (st->spent >= st->budget || (st->end_now && st->end_now->load()))) {
        // (a marker of plain text spelled in several tokens stays free: the answer may begin it, "<th", "Here")
        size_t at = cur_p->size;
        bool other = false;  // another candidate is allowed: ruling the marker out leaves the model a way on
        for (size_t i = 0; i < cur_p->size; ++i) {
            if (cur_p->data[i].logit == -INFINITY) continue;
            if (cur_p->data[i].id == st->start_token) at = i;
            else other = true;
            if (at < cur_p->size && other) break;
        }
        if (at < cur_p->size && other) cur_p->data[at].logit = -INFINITY;
    }
    if (st->phase == Phase::Thinking && (st->spent >= st->budget || (st->end_now && st->end_now->load()))) {
        // The end is due, but the block stops at a character's boundary: a token or a few more finish the one the
        // model started (the UTF-8 sampler leaves only those under a grammar), then the close is forced.
        // (counted where a token is accepted: this runs twice for one token when a grammar refused the first pick)
        if (inside_character(st->tail) && st->late < kLateTokens) return;
        st->phase = Phase::Closing;
        st->forced = 0;
    }
    if (st->phase != Phase::Closing) return;
    const llama_token want = st->closing[st->forced];
    bool allowed = false;
    for (size_t i = 0; i < cur_p->size; ++i) {
        if (cur_p->data[i].id != want) cur_p->data[i].logit = -INFINITY;
        else allowed = cur_p->data[i].logit != -INFINITY;
    }
    // The samplers before this one (a grammar) ruled the closing token out: forcing it anyway would
    // end the request in the grammar's own "empty grammar stack", which reads as a grammar no model can satisfy.
    // Name the real clash, so the caller knows to let the grammar allow the marker or to drop the budget.
    if (!allowed)
        throw std::invalid_argument("reasoning_budget: the thinking budget (" + std::to_string(st->budget) +
                                    " tokens) is spent, but the grammar does not allow the "
                                    "end-of-thinking text '" + st->closing_text + "' here; a grammar that covers the "
                                    "thinking must allow that text wherever the thinking may stop, or leave "
                                    "reasoning_budget out");
}

void budget_reset(llama_sampler * smpl) { static_cast<BudgetState *>(smpl->ctx)->restart(); }

llama_sampler * budget_clone(const llama_sampler * smpl);

void budget_free(llama_sampler * smpl) { delete static_cast<BudgetState *>(smpl->ctx); }

llama_sampler_i * budget_iface() {
    static llama_sampler_i iface = [] {
        llama_sampler_i i{};  // value-initialised: the backend hooks stay null (CPU-only sampler)
        i.name = budget_name;
        i.accept = budget_accept;
        i.apply = budget_apply;
        i.reset = budget_reset;
        i.clone = budget_clone;
        i.free = budget_free;
        return i;
    }();
    return &iface;
}

llama_sampler * budget_clone(const llama_sampler * smpl) {
    return llama_sampler_init(budget_iface(), new BudgetState(*static_cast<const BudgetState *>(smpl->ctx)));
}

}  // namespace

llama_sampler * make_reasoning_budget_sampler(const Model & model, const SamplingParams & p,
                                              std::shared_ptr<std::atomic<bool>> end_now) {
    if (p.reasoning_budget < 0 || p.reasoning_end.empty()) return nullptr;
    const std::string & close = p.reasoning_close.empty() ? p.reasoning_end : p.reasoning_close;
    auto * st = new BudgetState{&model, p.reasoning_start, p.reasoning_end, p.reasoning_interrupt,
                                model.tokenize(close, false, true), close, p.reasoning_budget, p.reasoning_open,
                                p.reasoning_every, Phase::Done};
    if (st->closing.empty()) {
        delete st;
        return nullptr;
    }
    st->end_now = std::move(end_now);
    st->guard_start = st->every && !st->start.empty() && open_prefix(close, st->start) > 0;
    if (!st->start.empty()) {  // (every block's guard once spent, and the first one's where the budget is 0)
        const std::vector<llama_token> start = model.tokenize(st->start, false, true);
        if (start.size() == 1) st->start_token = start[0];
    }
    st->restart();
    return llama_sampler_init(budget_iface(), st);
}

}  // namespace jan
