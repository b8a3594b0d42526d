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
    Phase phase;
    int32_t spent = 0;                 // tokens generated inside the block
    size_t forced = 0;                 // closing tokens already emitted
    std::string tail;                  // the last few bytes of output, to find markers across tokens
    std::shared_ptr<std::atomic<bool>> end_now;  // the budget spent now, by the request's owner (may be null)

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
        tail.clear();
    }
};

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
                st->tail.erase(0, at + st->start.size());  // what follows the marker is thinking already
                if (st->ended()) st->phase = Phase::Done;
            }
            break;
        }
        case Phase::Thinking:
            st->spent++;
            // (likewise: the end marker may close inside a token that goes on with the answer)
            if (st->ended()) st->phase = Phase::Done;
            break;
        case Phase::Closing:
            if (++st->forced >= st->closing.size()) st->phase = Phase::Done;
            break;
        case Phase::Done:
            break;
    }
}

void budget_apply(llama_sampler * smpl, llama_token_data_array * cur_p) {
    auto * st = static_cast<BudgetState *>(smpl->ctx);
    if (st->phase == Phase::Thinking && (st->spent >= st->budget || (st->end_now && st->end_now->load()))) {
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
                                Phase::Done};
    if (st->closing.empty()) {
        delete st;
        return nullptr;
    }
    st->end_now = std::move(end_now);
    st->restart();
    return llama_sampler_init(budget_iface(), st);
}

}  // namespace jan
