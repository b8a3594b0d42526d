#include "lora.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "log_sink.h"

namespace jan {

namespace {

// llama.cpp's reason, without the function name it is logged under
// ("llama_adapter_lora_init_from_file_ptr: failed to apply lora adapter: model arch and LoRA arch mismatch").
std::string reason_of(const std::vector<std::string> & lines) {
    if (lines.empty()) return "llama.cpp refused it (see the jan.llama log)";
    std::string line = lines.back();
    for (const char * cut : {"failed to apply lora adapter: ", "error loading model: "}) {
        const size_t at = line.find(cut);
        if (at != std::string::npos) {
            line = line.substr(at + std::strlen(cut));
            break;
        }
    }
    while (!line.empty() && (line.back() == '\n' || line.back() == ' ')) line.pop_back();
    if (!line.empty() && line.back() == ':') line += " nothing";  // ("expect general.type to be 'adapter', but got:")
    return line;
}

}  // namespace

LoraAdapter::LoraAdapter(std::shared_ptr<Model> model, const std::string & path)
    : model_(std::move(model)), path_(path) {
    ensure_backend_initialized();
    const std::string what = "LoRA adapter '" + path + "'";
    {
        std::ifstream f(path, std::ios::binary);
        if (!f) throw LoraAdapterError(what + ": file not found or unreadable");
        char magic[4] = {0, 0, 0, 0};
        f.read(magic, 4);
        if (f.gcount() < 4 || std::memcmp(magic, "GGUF", 4) != 0)
            throw LoraAdapterError(what + " is not a GGUF file");
    }
    {
        ThreadErrorCapture capture;
        adapter_ = llama_adapter_lora_init(model_->get(), path.c_str());
        if (!adapter_) throw LoraAdapterError(what + " cannot be used with this model: " + reason_of(capture.lines()));
    }
    // An activated LoRA (aLoRA) applies only from its invocation tokens on, which needs the scheduler to cut each
    // prompt at them; applied from the start it would silently change what the adapter means.
    if (llama_adapter_get_alora_n_invocation_tokens(adapter_) > 0) {
        llama_adapter_lora_free(adapter_);
        adapter_ = nullptr;
        throw LoraAdapterError(what + " is an activated LoRA (aLoRA, adapter.alora.invocation_tokens), which jan "
                                      "does not support");
    }
}

LoraAdapter::~LoraAdapter() {
    if (adapter_) llama_adapter_lora_free(adapter_);
}

std::string LoraAdapter::meta(const std::string & key) const {
    std::vector<char> val(1024);
    int32_t n = llama_adapter_meta_val_str(adapter_, key.c_str(), val.data(), val.size());
    if (n < 0) return "";
    if ((size_t)n >= val.size()) {
        val.resize(n + 1);
        n = llama_adapter_meta_val_str(adapter_, key.c_str(), val.data(), val.size());
    }
    return std::string(val.data(), n < 0 ? 0 : n);
}

std::map<std::string, std::string> LoraAdapter::metadata() const {
    std::map<std::string, std::string> out;
    const int32_t count = llama_adapter_meta_count(adapter_);
    std::vector<char> key(512), val(4096);
    for (int32_t i = 0; i < count; ++i) {
        int32_t nk = llama_adapter_meta_key_by_index(adapter_, i, key.data(), key.size());
        if (nk < 0) continue;
        if ((size_t)nk >= key.size()) {
            key.resize(nk + 1);
            llama_adapter_meta_key_by_index(adapter_, i, key.data(), key.size());
        }
        int32_t nv = llama_adapter_meta_val_str_by_index(adapter_, i, val.data(), val.size());
        if (nv < 0) continue;
        if ((size_t)nv >= val.size()) {
            val.resize(nv + 1);
            nv = llama_adapter_meta_val_str_by_index(adapter_, i, val.data(), val.size());
        }
        out.emplace(std::string(key.data()), std::string(val.data(), nv));
    }
    return out;
}

float LoraAdapter::alpha() const {
    const std::string v = meta("adapter.lora.alpha");
    if (v.empty()) return 0.0f;
    try {
        return std::stof(v);
    } catch (const std::exception &) {
        return 0.0f;
    }
}

void check_lora_scales(const std::vector<float> & scales, size_t n_adapters, const std::string & what) {
    if (scales.size() != n_adapters)
        throw std::invalid_argument(what + ": expected " + std::to_string(n_adapters) +
                                    " scales (one per adapter), got " + std::to_string(scales.size()));
    for (size_t i = 0; i < scales.size(); ++i)
        if (!std::isfinite(scales[i]))
            throw std::invalid_argument(what + ": the scale of adapter " + std::to_string(i) +
                                        " is not a finite number");
}

}  // namespace jan
