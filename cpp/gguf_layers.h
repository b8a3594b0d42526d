// The bytes of a GGUF file's weights by the layer llama.cpp places them with, read from its tensor table alone
// (no data, no vocabulary): what deciding how many layers a GPU holds needs before the weights are loaded.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace jan {

struct LayerBytes {
    std::vector<uint64_t> layers;  // blk.<i>.*: one entry per repeating layer index found (0 for a gap)
    uint64_t output = 0;           // output.weight and output_norm.* (llama.cpp's output layer)
    uint64_t token_embd = 0;       // token_embd.weight (the input layer, which llama.cpp keeps on the CPU)
    uint64_t other = 0;            // everything else (rope factors, encoders' extra tensors, ...)
    bool output_tied = false;      // no output.weight: the output layer reads token_embd (a copy on its device)
};

// Throws std::runtime_error naming the file when ggml's GGUF reader cannot read its header.
LayerBytes gguf_layer_bytes(const std::string & path);

// The weights' type (a llama_ftype, LLAMA_FTYPE_GUESSED set) llama.cpp's loader works out for a file whose header
// names none (no general.file_type), from the tensor tables of ``paths`` (a model's files, its splits in order):
// the tensor type most tensors have, the first to reach that count where types tie, counted in the loader's order
// (by blk.<i> layer, tensors of no layer first, then by name). A header read (vocab-only) gets it, so a model's
// type reads the same before and after a load. Throws std::runtime_error as gguf_layer_bytes does.
int32_t gguf_guessed_ftype(const std::vector<std::string> & paths);

}  // namespace jan
