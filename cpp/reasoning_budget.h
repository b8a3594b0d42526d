// A sampler that caps the number of tokens a model spends thinking.
//
// It watches the generated text for the format's start-of-thinking marker
// (or starts inside the thinking block when the prompt already opened it),
// counts the tokens generated inside the block, and once the budget is spent
// forces the end-of-thinking text token by token, so the model goes on to the
// answer. A block the model closes itself is left alone.
#pragma once

#include "llama-cpp.h"
#include "sampling.h"

namespace jan {

// nullptr when the parameters ask for no budget (reasoning_budget < 0 or no end marker).
llama_sampler * make_reasoning_budget_sampler(const Model & model, const SamplingParams & params);

}  // namespace jan
