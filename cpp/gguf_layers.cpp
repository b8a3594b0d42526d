#include "gguf_layers.h"

#include <gguf.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>

namespace jan {

namespace {

struct GgufFree {
    void operator()(gguf_context * ctx) const { gguf_free(ctx); }
};

bool starts_with(const char * s, const char * prefix) { return std::strncmp(s, prefix, std::strlen(prefix)) == 0; }

}  // namespace

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
