// Lazy grammars (SamplingParams::grammar_triggers): the output is free text until one of the trigger patterns
// matches it; from where the match begins (its first non-empty capture group, else the match itself) the grammar
// reads the output and constrains the rest.
//
// llama.cpp's own lazy grammar appends each token's text to a buffer and runs std::regex over the whole buffer at
// every token until a pattern matches: the cost of a token grows with the output, so a long free answer costs time
// quadratic in its length (an unanchored `[\s\S]*?(X)` tries every start and expands to the end from each: minutes
// for 2,000 tokens). jan watches the output itself and searches only where a match that was not there one token
// ago can be (grammar_trigger.cpp explains the bound); where a pattern's shape allows no bound it searches the
// whole text as llama.cpp does. Which pattern fires, where the constrained text begins and what the grammar is
// fed are llama.cpp's:
// - the patterns are tried in order at every token; the first that matches the text so far fires;
// - a pattern written ^...$ is matched against the whole text first, and searched anywhere when that fails;
// - the grammar then reads the tokens from the start found on (the first one from that byte on when the start
//   falls inside it) and constrains every token after.
#pragma once

#include <cstddef>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "llama-cpp.h"

namespace jan {

class Model;

// The trigger patterns of a request, compiled once (shared by a sampler's clones).
class TriggerPatterns {
public:
    // Throws std::invalid_argument naming the first pattern std::regex (ECMAScript) refuses.
    explicit TriggerPatterns(const std::vector<std::string> & patterns);

    // Where the constrained text begins in `text`, or npos while no pattern matches. `checked`: how much of `text`
    // the previous call saw (and found no match in); the text only grows between calls. `everywhere`: search all of
    // `text` with every pattern, as llama.cpp does (the reference the bounded search is tested against).
    size_t find(const std::string & text, size_t checked, bool everywhere = false) const;

    // How one pattern is searched (for tests): `tail`, the pattern every new match ends with a match of (a part of
    // the pattern, or its alternatives' parts as alternatives), and `tail_max`, its longest match in bytes. An empty
    // tail: the pattern is searched whole every token.
    struct Shape {
        std::string tail;
        size_t tail_max = 0;
    };
    static Shape shape_of(const std::string & pattern);

private:
    struct Pattern {
        std::string source;
        std::regex regex;
        bool whole = false;          // ^...$: matched against the whole text first
        bool bounded = false;        // else searched whole every token
        std::regex tail;             // (bounded) the part every new match ends with
        size_t tail_max = 0;         // (bounded) its longest match
    };
    std::vector<Pattern> patterns_;
};

// The lazy grammar sampler: `grammar`, a plain grammar sampler (taken over), idle until `patterns` match the
// output, then fed the text from the match on and constraining from then on.
llama_sampler * make_lazy_grammar_sampler(const Model & model, llama_sampler * grammar,
                                          std::shared_ptr<const TriggerPatterns> patterns);

}  // namespace jan
