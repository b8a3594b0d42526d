// A sampler that caps the number of tokens a model spends thinking.
//
// It watches the generated text for the format's start-of-thinking marker
// (or starts inside the thinking block when the prompt already opened it),
// counts the tokens generated inside the block, and once the budget is spent
// forces the end-of-thinking text token by token, so the model goes on to the
// answer. A block the model closes itself is left alone.
#pragma once

#include <atomic>
#include <memory>

#include "llama-cpp.h"
#include "sampling.h"

namespace jan {

// nullptr when the parameters ask for no budget (reasoning_budget < 0 or no end marker).
// `end_now`: set from another thread (RequestState::end_reasoning), it spends the budget at once: the thinking is
// closed at the next token as when the budget runs out (nullptr: never).
llama_sampler * make_reasoning_budget_sampler(const Model & model, const SamplingParams & params,
                                              std::shared_ptr<std::atomic<bool>> end_now = nullptr);

}  // namespace jan
