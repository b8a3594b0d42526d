// A sampler that keeps a grammar-constrained output valid UTF-8.
//
// llama.cpp's grammar reads a token's bytes loosely: it takes F5..FF and C0/C1 as lead bytes, never checks the
// continuation bytes that follow a lead inside one token, and accepts overlong forms, surrogates and code points
// past U+10FFFF, so under a grammar whose strings allow "any character" a byte-fallback model could write bytes
// that are no text at all ("?>dam\xff\xfe..." inside a JSON string), which the client's JSON parser or schema
// validator then refuses. This sampler, right after the grammar in the chain, follows the UTF-8 state of the
// output so far (the bytes a started character still needs) and bans each candidate whose bytes would make the
// output invalid UTF-8, and any end of generation while a character is unfinished.
//
// It never leaves no candidate: where every candidate the grammar allows is banned, it bans nothing and the
// grammar's choice stands (the output may then hold invalid bytes, as it would without this sampler). A token a
// later sampler forces (the reasoning budget's end of thinking) is read as written: the state resynchronises at
// the first byte that can start a character.
//
// Only for requests with a grammar (lazy ones included: the free text before the trigger is then held to valid
// UTF-8 too). Plain generation keeps llama.cpp's sampling: its text is streamed UTF-8-safely (text_stream.h turns
// stray bytes into U+FFFD), and a request's sampled tokens there stay exactly llama.cpp's.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "llama-cpp.h"

namespace jan {

class Model;

// Per model, built once (Model::utf8_classes): which UTF-8 states each token may follow.
struct Utf8Classes {
    // allowed[token] bit s: the token's bytes (its piece as llama.cpp's grammar reads it) keep the output valid
    // when it is written in state s (utf8_sampler.cpp's State). End-of-generation tokens: state 0 only.
    std::vector<uint8_t> allowed;
    // The tokens not allowed in state 0 (stray continuation bytes, F5..FF, C0/C1, pieces broken inside): what
    // is banned by index in the common case, with no pass over the whole vocabulary.
    std::vector<llama_token> bad_at_rest;
};

std::shared_ptr<const Utf8Classes> build_utf8_classes(const Model & model);

// The sampler, for the chain right after the grammar.
// Whether `token` keeps the output of `utf8` (a sampler make_utf8_sampler made) valid UTF-8 now, whatever else is
// left to sample: the check of one drawn token (sampling.h, sample_token), where "nothing else is left" is not known.
bool utf8_sampler_allows(const llama_sampler * utf8, llama_token token);

llama_sampler * make_utf8_sampler(const Model & model);

}  // namespace jan
