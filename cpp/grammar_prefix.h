// A grammar advanced through text the reply already holds: a prefill (or a resumed reply) that the output
// continues. The grammar then constrains the whole reply, prefill and output together, not the output alone
// (where a prefill `{"name": "` would leave the output to write a whole JSON document of its own).
#pragma once

#include <functional>
#include <string>

#include "llama-cpp.h"

namespace jan {

class Model;

// Feeds `text` to the grammar sampler `grammar` as though the model had written it, in tokens whose pieces spell it
// byte for byte (Model::pieces). llama.cpp's grammar reads the pieces' code points, so its state after the text does
// not depend on where the tokens split it. Throws GrammarPrefixError naming the first byte the grammar does not take
// (`remake`, a fresh sampler of the same grammar, is used only then, to find that byte inside the refused token), or
// the first byte no token spells.
void advance_grammar(const Model & model, llama_sampler * grammar, const std::string & text,
                     const std::function<llama_sampler *()> & remake);

}  // namespace jan
