#include "grammar_prefix.h"

#include <algorithm>
#include <exception>

#include "errors.h"
#include "model.h"

namespace jan {

namespace {

struct Fed {
    size_t stop;              // where feeding stopped: the end asked for when all of it was taken
    bool unspelled = false;   // stopped because no token spells the text there (else: the grammar refused it)
};

// Feeds text[from, to) to `grammar`, each token the longest piece of at most `max_len` bytes that spells the text
// where it stands: long pieces mean few accepts, and a lazy grammar searches its trigger patterns at every accept
// (grammar_trigger.h; llama.cpp's own, the reference, searches all it has buffered).
Fed feed(const PieceIndex & index, llama_sampler * grammar, const std::string & text, size_t from, size_t to,
         size_t max_len) {
    size_t at = from;
    while (at < to) {
        llama_token token = LLAMA_TOKEN_NULL;
        size_t len = std::min(max_len, to - at);
        for (; len > 0; --len) {
            auto it = index.tokens.find(text.substr(at, len));
            if (it != index.tokens.end()) {
                token = it->second;
                break;
            }
        }
        if (token == LLAMA_TOKEN_NULL) return {at, true};
        try {
            llama_sampler_accept(grammar, token);
        } catch (const std::exception &) {
            // llama.cpp's "Unexpected empty grammar stack after accepting piece": this token's text is refused
            return {at};
        }
        at += len;
    }
    return {to};
}

// The bytes of the UTF-8 character that starts with byte `lead` (1 for a stray continuation byte).
size_t utf8_len(unsigned char lead) {
    if (lead >= 0xF0) return 4;
    if (lead >= 0xE0) return 3;
    if (lead >= 0xC0) return 2;
    return 1;
}

}  // namespace

void advance_grammar(const Model & model, llama_sampler * grammar, const std::string & text,
                     const std::function<llama_sampler *()> & remake) {
    const PieceIndex & index = model.pieces();
    const Fed fed = feed(index, grammar, text, 0, text.size(), index.max_len);
    if (fed.stop == text.size()) return;
    if (fed.unspelled)
        throw GrammarPrefixError("grammar_prefix: no token of the model's vocabulary spells the text at byte " +
                                     std::to_string(fed.stop),
                                 fed.stop);
    // The refused token may be many characters long: a fresh grammar through the text before it, then that
    // token's text one character at a time, tells the client the very character the grammar does not allow.
    size_t at = fed.stop;
    llama_sampler_ptr fresh(remake());
    if (fresh && feed(index, fresh.get(), text, 0, at, index.max_len).stop == at) {
        const size_t end = std::min(text.size(), at + index.max_len);
        while (at < end) {
            const size_t next = std::min(end, at + utf8_len((unsigned char)text[at]));
            const Fed one = feed(index, fresh.get(), text, at, next, next - at);
            if (one.stop != next) break;
            at = next;
        }
        if (at == end) at = fed.stop;  // (the token's bytes one by one went through: name where the token began)
    }
    throw GrammarPrefixError("grammar_prefix: the grammar does not allow the text at byte " + std::to_string(at), at);
}

}  // namespace jan
