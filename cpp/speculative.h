// Draft-free speculative decoding (n-gram / prompt lookup).
//
// A generating slot's last `ngram` tokens are looked up earlier in its own
// prompt + output; the tokens that followed that occurrence are proposed as a
// draft and evaluated in the same batch as the slot's pending token, each with
// logits. The slot's sampler then samples position by position and a draft
// token is accepted only while it equals the sampled one, so every emitted
// token is drawn from exactly the distribution plain decoding would use
// (greedy output is unchanged; sampled output keeps its distribution). The
// Scheduler members that plan and verify drafts live in speculative.cpp.
#pragma once

#include <cstdint>
#include <vector>

#include "llama-cpp.h"

namespace jan {

// The tokens that followed the most recent earlier occurrence of the last
// `ngram` tokens of `history`, at most `n_max` of them; empty when there is none.
std::vector<llama_token> ngram_draft(const std::vector<llama_token> & history, int32_t ngram, int32_t n_max);

}  // namespace jan
