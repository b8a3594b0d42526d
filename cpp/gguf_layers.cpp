#include "gguf_layers.h"

#include <gguf.h>
#include <llama.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <utility>
#include <stdexcept>

namespace jan {

namespace {

struct GgufFree {
    void operator()(gguf_context * ctx) const { gguf_free(ctx); }
};

bool starts_with(const char * s, const char * prefix) { return std::strncmp(s, prefix, std::strlen(prefix)) == 0; }

// The llama_ftype a file "mostly" of one tensor type is (the K-quants' medium mixes); a type of no file type
// (Q8_1, Q8_K, integers, F64, MXFP4 alone) is none: llama.cpp calls such a file all F32.
int32_t ftype_of(ggml_type type) {
    static const std::pair<ggml_type, llama_ftype> kMostly[] = {
        {GGML_TYPE_F32, LLAMA_FTYPE_ALL_F32},         {GGML_TYPE_F16, LLAMA_FTYPE_MOSTLY_F16},
        {GGML_TYPE_BF16, LLAMA_FTYPE_MOSTLY_BF16},    {GGML_TYPE_Q4_0, LLAMA_FTYPE_MOSTLY_Q4_0},
        {GGML_TYPE_Q4_1, LLAMA_FTYPE_MOSTLY_Q4_1},    {GGML_TYPE_Q5_0, LLAMA_FTYPE_MOSTLY_Q5_0},
        {GGML_TYPE_Q5_1, LLAMA_FTYPE_MOSTLY_Q5_1},    {GGML_TYPE_Q8_0, LLAMA_FTYPE_MOSTLY_Q8_0},
        {GGML_TYPE_Q2_K, LLAMA_FTYPE_MOSTLY_Q2_K},    {GGML_TYPE_Q3_K, LLAMA_FTYPE_MOSTLY_Q3_K_M},
        {GGML_TYPE_Q4_K, LLAMA_FTYPE_MOSTLY_Q4_K_M},  {GGML_TYPE_Q5_K, LLAMA_FTYPE_MOSTLY_Q5_K_M},
        {GGML_TYPE_Q6_K, LLAMA_FTYPE_MOSTLY_Q6_K},    {GGML_TYPE_TQ1_0, LLAMA_FTYPE_MOSTLY_TQ1_0},
        {GGML_TYPE_TQ2_0, LLAMA_FTYPE_MOSTLY_TQ2_0},  {GGML_TYPE_IQ2_XXS, LLAMA_FTYPE_MOSTLY_IQ2_XXS},
        {GGML_TYPE_IQ2_XS, LLAMA_FTYPE_MOSTLY_IQ2_XS}, {GGML_TYPE_IQ2_S, LLAMA_FTYPE_MOSTLY_IQ2_S},
        {GGML_TYPE_IQ3_XXS, LLAMA_FTYPE_MOSTLY_IQ3_XXS}, {GGML_TYPE_IQ3_S, LLAMA_FTYPE_MOSTLY_IQ3_S},
        {GGML_TYPE_IQ1_S, LLAMA_FTYPE_MOSTLY_IQ1_S},  {GGML_TYPE_IQ1_M, LLAMA_FTYPE_MOSTLY_IQ1_M},
        {GGML_TYPE_IQ4_NL, LLAMA_FTYPE_MOSTLY_IQ4_NL}, {GGML_TYPE_IQ4_XS, LLAMA_FTYPE_MOSTLY_IQ4_XS},
        {GGML_TYPE_NVFP4, LLAMA_FTYPE_MOSTLY_NVFP4},  {GGML_TYPE_Q1_0, LLAMA_FTYPE_MOSTLY_Q1_0},
        {GGML_TYPE_Q2_0, LLAMA_FTYPE_MOSTLY_Q2_0},
    };
    for (const auto & [t, ftype] : kMostly) {
        if (t == type) return ftype;
    }
    return LLAMA_FTYPE_ALL_F32;
}

// The loader's order of tensor names: by the layer a "blk.<i>." name is in (-1 for a name of none), then by name.
struct LoaderOrder {
    static long layer(const std::string & name) {
        if (name.compare(0, 4, "blk.") != 0) return -1;
        char * end = nullptr;
        const long il = std::strtol(name.c_str() + 4, &end, 10);
        return end == name.c_str() + 4 ? -1 : il;
    }
    bool operator()(const std::string & a, const std::string & b) const {
        const long la = layer(a), lb = layer(b);
        return la != lb ? la < lb : a < b;
    }
};

}  // namespace

int32_t gguf_guessed_ftype(const std::vector<std::string> & paths) {
    std::map<std::string, ggml_type, LoaderOrder> types;  // (a name twice: the loader refuses the file anyway)
    for (const std::string & path : paths) {
        gguf_init_params params{/*no_alloc=*/true, /*ctx=*/nullptr};
        std::unique_ptr<gguf_context, GgufFree> ctx(gguf_init_from_file(path.c_str(), params));
        if (!ctx) throw std::runtime_error("could not read the GGUF header of '" + path + "'");
        const int64_t n = gguf_get_n_tensors(ctx.get());
        for (int64_t i = 0; i < n; ++i) {
            types.emplace(gguf_get_tensor_name(ctx.get(), i), gguf_get_tensor_type(ctx.get(), i));
        }
    }
    std::map<ggml_type, uint32_t> counts;
    uint32_t most = 0;
    ggml_type mostly = GGML_TYPE_F32;  // (no tensors at all: all F32, as llama.cpp says)
    for (const auto & [name, type] : types) {
        const uint32_t count = ++counts[type];
        if (count > most) {  // (strictly: of types that tie, the first to get there)
            most = count;
            mostly = type;
        }
    }
    return ftype_of(mostly) | LLAMA_FTYPE_GUESSED;
}

LayerBytes gguf_layer_bytes(const std::string & path) {
    gguf_init_params params{/*no_alloc=*/true, /*ctx=*/nullptr};
    std::unique_ptr<gguf_context, GgufFree> ctx(gguf_init_from_file(path.c_str(), params));
    if (!ctx) throw std::runtime_error("could not read the GGUF header of '" + path + "'");
    LayerBytes out;
    bool has_output = false;
    const int64_t n = gguf_get_n_tensors(ctx.get());
    for (int64_t i = 0; i < n; ++i) {
        const char * name = gguf_get_tensor_name(ctx.get(), i);
        const uint64_t size = gguf_get_tensor_size(ctx.get(), i);
        if (starts_with(name, "blk.")) {
            char * end = nullptr;
            const unsigned long il = std::strtoul(name + 4, &end, 10);
            if (end != name + 4 && *end == '.' && il < (1u << 20)) {
                if (out.layers.size() <= il) out.layers.resize(il + 1, 0);
                out.layers[il] += size;
                continue;
            }
        }
        if (std::strcmp(name, "output.weight") == 0) {
            has_output = true;
            out.output += size;
        } else if (starts_with(name, "output_norm.") || starts_with(name, "output.")) {
            out.output += size;
        } else if (std::strcmp(name, "token_embd.weight") == 0) {
            out.token_embd += size;
        } else {
            out.other += size;
        }
    }
    out.output_tied = !has_output;
    return out;
}

}  // namespace jan
