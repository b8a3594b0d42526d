#include "kv_cache.h"

#include <algorithm>

#include <stdexcept>

namespace jan {

namespace {

// The types llama.cpp's CPU backend can store and attend over (as llama-server accepts them).
const ggml_type kAllowed[] = {GGML_TYPE_F32,  GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0,
                              GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_IQ4_NL};

int64_t meta_int(const Model & model, const std::string & key, int64_t fallback) {
    const std::string v = model.meta(key);
    if (v.empty()) return fallback;
    try {
        return std::stoll(v);
    } catch (const std::exception &) {
        return fallback;
    }
}

struct HeadDims {
    int64_t k = 0, v = 0, n_head_kv = 0;
};

HeadDims head_dims(const Model & model) {
    const llama_model * m = model.get();
    // a vocab-only model has no hyperparameters: llama.cpp aborts the process on a layer's head count there
    if (model.n_layer() <= 0) return {};
    const int64_t n_head = llama_model_n_head(m);
    HeadDims d;
    d.n_head_kv = llama_model_n_head_kv(m);
    if (n_head <= 0 || d.n_head_kv <= 0) return {};  // no attention layers (recurrent models)
    const int64_t head_dim = model.n_embd() / n_head;
    const std::string arch = model.architecture();
    d.k = meta_int(model, arch + ".attention.key_length", head_dim);
    d.v = meta_int(model, arch + ".attention.value_length", head_dim);
    return d;
}

}  // namespace

void check_kv_cache_types(const Model & model, ggml_type type_k, ggml_type type_v) {
    const HeadDims d = head_dims(model);
    auto check = [](ggml_type t, int64_t head, const char * what) {
        const int64_t block = ggml_blck_size(t);
        if (head > 0 && head % block != 0)
            throw std::invalid_argument(std::string(what) + ": " + ggml_type_name(t) + " stores blocks of " +
                                        std::to_string(block) + " values, which do not divide this model's head size " +
                                        std::to_string(head) + "; use f16, bf16 or f32");
    };
    check(type_k, d.k, "cache_type_k");
    check(type_v, d.v, "cache_type_v");
}

ggml_type kv_cache_type(const std::string & name, const char * what) {
    std::string names;
    for (ggml_type t : kAllowed) {
        if (name == ggml_type_name(t)) return t;
        names += (names.empty() ? "" : ", ") + std::string(ggml_type_name(t));
    }
    throw std::invalid_argument(std::string(what) + ": unknown KV cache type '" + name + "' (expected one of " +
                                names + ")");
}

uint64_t kv_cache_size(const Model & model, uint32_t n_cells, ggml_type type_k, ggml_type type_v) {
    const HeadDims d = head_dims(model);
    if (d.n_head_kv == 0) return 0;
    const uint64_t row = ggml_row_size(type_k, d.k * d.n_head_kv) + ggml_row_size(type_v, d.v * d.n_head_kv);
    return (uint64_t)model.n_layer() * (uint64_t)n_cells * row;
}

bool prefix_reusable(llama_memory_t memory, llama_seq_id seq, llama_pos keep_pos, int32_t n_swa) {
    if (n_swa <= 0 || keep_pos <= 0) return true;
    const llama_pos pos_min = llama_memory_seq_pos_min(memory, seq);  // the window layers' oldest cell
    return pos_min >= 0 && pos_min <= std::max<llama_pos>(0, keep_pos - n_swa);
}

}  // namespace jan
