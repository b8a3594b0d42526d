// KV cache element types by name, and the cache's size in bytes.
#pragma once

#include <cstdint>
#include <string>

#include "ggml.h"
#include "llama.h"
#include "model.h"

namespace jan {

// The ggml type for a KV cache type name ("f16", "q8_0", ...); std::invalid_argument
// naming `what` (cache_type_k / cache_type_v) and the accepted names otherwise.
ggml_type kv_cache_type(const std::string & name, const char * what);

// std::invalid_argument when a quantized type's block does not divide the
// model's K/V head size (llama.cpp stores each head's row in whole blocks).
void check_kv_cache_types(const Model & model, ggml_type type_k, ggml_type type_v);

// Bytes of K and V for n_cells cells over every layer, from the model's
// hyperparameters: n_layer * n_cells * (row(type_k, n_embd_k_gqa) + row(type_v, n_embd_v_gqa)).
// llama.cpp exposes no per-context memory breakdown in this version, so this
// is computed the way llama.cpp sizes its cache (models with sliding-window or
// recurrent layers hold less than this).
uint64_t kv_cache_size(const Model & model, uint32_t n_cells, ggml_type type_k, ggml_type type_v);

// Whether sequence `seq` can go on from position `keep_pos` with the cells it holds below it. jan's
// contexts keep a window-size cache for sliding-window layers (swa_full off, as llama-server), which
// forgets positions more than n_swa behind its newest; a token at keep_pos attends to the n_swa
// positions before it, so those must still be there (llama-server's test before reusing a slot's cache).
// `n_swa` is llama_model_n_swa (0: no sliding window, always reusable).
bool prefix_reusable(llama_memory_t memory, llama_seq_id seq, llama_pos keep_pos, int32_t n_swa);

}  // namespace jan
