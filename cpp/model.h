// A loaded GGUF model: the weights and vocabulary, shared read-only by the
// generation scheduler and the embedder built on top of it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "llama-cpp.h"

namespace jan {

struct Utf8Classes;  // utf8_sampler.h

struct ModelParams {
    int32_t n_gpu_layers = 0;   // -1 = all
    int32_t main_gpu = 0;
    bool use_mmap = true;
    bool use_mlock = false;
    bool vocab_only = false;
    bool check_tensors = false;
    // llama.cpp's extra weight buffer types (CPU_REPACK, AMX, KleidiAI): -1 = on unless the CPU has AMX
    // (see model.cpp), 0 = off, 1 = on.
    int32_t extra_buffers = -1;
    // llama_split_mode: how the weights spread over several GPUs (0 none: all on main_gpu, 1 layer, 2 row, 3 tensor)
    int32_t split_mode = 1;
    // Each GPU's share of the weights (at most llama_max_devices() values, each >= 0); empty: by free memory.
    std::vector<float> tensor_split;
    // (name regex, buffer type name as ggml calls it: "CPU", "CUDA0", ...): tensors whose names match are kept in
    // that buffer type, the first matching pair winning (llama.cpp's tensor_buft_overrides).
    std::vector<std::pair<std::string, std::string>> tensor_buft_overrides;
    // llama_load_mode (-1 auto, 0 none, 1 mmap, 2 mlock, 3 mmap+mlock, 4 direct I/O); -2: from use_mmap/use_mlock
    int32_t load_mode = -2;
    // llama_lazy_mode (0 off, 1 auto, 2 on: rows of the tensors an architecture marks read on demand); -1: llama.cpp's
    int32_t lazy_mode = -1;
    bool no_host = false;  // llama.cpp's no_host: no host (pinned) buffer, so extra CPU buffer types may be used
    // The GPU devices (ggml's names: "CUDA0", "Vulkan1", ...) the weights may go to; none: every one (llama.cpp's
    // default); an empty list: none of them (the CPU only).
    std::optional<std::vector<std::string>> devices;
};

// Every token by its text as llama.cpp's grammar reads it (the piece with control tokens spelled out): what
// spells a given text in tokens without the tokenizer, whose pre-tokenizing adds a leading space (SentencePiece)
// or splits at its own places, so that a grammar can be advanced through it (grammar_prefix.cpp). End-of-generation
// tokens are left out: llama.cpp's grammar aborts the process on one it does not expect.
struct PieceIndex {
    std::unordered_map<std::string, llama_token> tokens;  // (the lowest id where pieces repeat)
    size_t max_len = 0;                                    // the longest piece, in bytes
};

class Model {
public:
    Model(const std::string & path, const ModelParams & params);

    const std::string & path() const { return path_; }
    llama_model * get() const { return model_.get(); }
    const llama_vocab * vocab() const { return vocab_; }

    std::vector<llama_token> tokenize(const std::string & text, bool add_special, bool parse_special) const;
    std::string detokenize(const std::vector<llama_token> & tokens, bool remove_special, bool unparse_special) const;
    std::string token_to_piece(llama_token token, bool special) const;
    void check_token(llama_token token) const;  // ValueError-style std::out_of_range when not in vocab

    std::map<std::string, std::string> metadata() const;
    std::string meta(const std::string & key) const;  // "" when absent
    std::string chat_template() const;
    std::string description() const;
    std::string architecture() const { return meta("general.architecture"); }

    int32_t n_vocab() const;
    int32_t n_ctx_train() const;
    int32_t n_embd() const;
    int32_t n_layer() const;
    uint64_t n_params() const;
    uint64_t size_bytes() const;
    int32_t vocab_type() const;  // enum llama_vocab_type (llama-server's meta.vocab_type)
    // The weights' type, an enum llama_ftype (LLAMA_FTYPE_GUESSED set where the file names none); -1 unknown. A
    // vocab-only load leaves it unset (llama.cpp stops before it), so there: the header's general.file_type, else
    // the type a load guesses from the tensor tables (gguf_guessed_ftype): the same before a load as after.
    int32_t ftype() const;
    // llama.cpp's name of ftype() ("Q4_K - Medium", "(guessed) all F32"); "" unknown.
    std::string ftype_name() const;
    bool has_encoder() const;
    bool has_decoder() const;
    int32_t pooling_type() const;  // enum llama_pooling_type from metadata, or LLAMA_POOLING_TYPE_UNSPECIFIED
    bool is_eog(llama_token token) const;
    bool add_bos() const;
    bool add_eos() const;  // (a reranker's prompt is [BOS] query [EOS] [SEP] document [EOS], each where the vocab adds it)
    bool add_sep() const;
    uint32_t n_cls_out() const;  // a classifier head's outputs (a reranker's scores: one, most often)
    // Built on first use, once per model: a 262k-token vocabulary takes tens of milliseconds, which only
    // requests that continue a reply under a grammar need to pay.
    const PieceIndex & pieces() const;
    // Likewise, for requests under a grammar: which UTF-8 states each token may follow (utf8_sampler.h).
    std::shared_ptr<const Utf8Classes> utf8_classes() const;

private:
    int32_t guessed_ftype() const;

    std::string path_;
    llama_model_ptr model_;
    const llama_vocab * vocab_ = nullptr;
    bool vocab_only_ = false;
    mutable std::once_flag pieces_once_;
    mutable std::unique_ptr<PieceIndex> pieces_;
    mutable std::once_flag utf8_once_;
    mutable std::shared_ptr<const Utf8Classes> utf8_;  // (shared_ptr: its type stays incomplete here)
};

// Called once per process before the first model is loaded.
void ensure_backend_initialized();
// Whether a load with extra_buffers = -1 uses llama.cpp's extra weight buffer types: not on a CPU with AMX ones.
bool extra_buffers_by_default();

}  // namespace jan
