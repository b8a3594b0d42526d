// C++ exceptions the engine throws; bindings translate each one into the
// matching class from jan.errors so Python sees one hierarchy.
#pragma once

#include <stdexcept>
#include <string>

namespace jan {

struct ModelLoadError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct ContextOverflowError : std::runtime_error {
    ContextOverflowError(const std::string & what, long n_tokens, long n_ctx)
        : std::runtime_error(what), n_tokens(n_tokens), n_ctx(n_ctx) {}
    long n_tokens;
    long n_ctx;
};

// One media item of a prompt that libmtmd cannot use (a clip its decoder cannot read, a kind the projector has no
// encoder for): jan.MediaError in Python, with ``reason`` its code and ``index`` the item's place among the prompt's
// media, so that a caller names the part that sent it (the server's param) rather than an index of ours.
struct MediaInputError : std::invalid_argument {
    MediaInputError(const std::string & what, size_t index, std::string reason)
        : std::invalid_argument(what), index(index), reason(std::move(reason)) {}
    size_t index;
    std::string reason;
};

struct QueueFullError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// A grammar prefix (the reply text a request continues, SamplingParams::grammar_prefix) that the request's grammar
// cannot start: jan.errors.GrammarPrefixError in Python (a ValueError, HTTP 400). `offset`: the byte of the
// prefix at which the grammar stops taking it (what a client is told to look at).
struct GrammarPrefixError : std::invalid_argument {
    GrammarPrefixError(const std::string & what, size_t offset) : std::invalid_argument(what), offset(offset) {}
    size_t offset;
};

struct EngineError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// A slot file (Scheduler::slot_action, llama-server's POST /slots/{id}?action=restore) that is missing, unreadable,
// not a slot save, or one this slot cannot hold: jan.errors.SlotFileError in Python (a BadRequestError, HTTP 400).
struct SlotFileError : std::invalid_argument {
    using std::invalid_argument::invalid_argument;
};

// A request for a model that is being unloaded (an admin's stop, shutdown): jan.ModelClosedError in Python, the
// server's 503 model_unloaded, like a request its unload cancelled (never a generic engine failure, a 500).
struct ModelClosedError : EngineError {
    using EngineError::EngineError;
};

// A running embedding ended by Embedder::cancel() (its model was unloaded): jan.ModelClosedError in Python.
struct EmbedCancelledError : EngineError {
    using EngineError::EngineError;
};

}  // namespace jan
