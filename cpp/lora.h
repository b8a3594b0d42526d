// LoRA adapters (llama-server's --lora): low-rank deltas to some of a model's weight matrices, loaded from a GGUF
// of general.type "adapter" against one model, applied at decode time with a scale each (0: off). The scheduler
// holds the model's adapters; a request picks the scales it runs under (scheduler.h, "LoRA").
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "errors.h"
#include "llama-cpp.h"
#include "model.h"

namespace jan {

// A file that cannot be an adapter of this model (missing, not GGUF, not an adapter, another architecture, tensors
// of other shapes, an activated LoRA): jan.errors.LoraAdapterError in Python (a ModelFileError: the file's fault).
struct LoraAdapterError : ModelLoadError {
    using ModelLoadError::ModelLoadError;
};

class LoraAdapter {
public:
    // Throws LoraAdapterError with llama.cpp's reason. The adapter keeps `model` alive: llama.cpp frees an
    // adapter with its model, so the model must outlive it (this owner frees it first).
    LoraAdapter(std::shared_ptr<Model> model, const std::string & path);
    ~LoraAdapter();
    LoraAdapter(const LoraAdapter &) = delete;
    LoraAdapter & operator=(const LoraAdapter &) = delete;

    llama_adapter_lora * get() const { return adapter_; }
    const std::string & path() const { return path_; }
    const Model & model() const { return *model_; }
    std::map<std::string, std::string> metadata() const;
    std::string meta(const std::string & key) const;  // "" when absent
    float alpha() const;  // adapter.lora.alpha (0: none given, llama.cpp then scales by 1)

private:
    std::shared_ptr<Model> model_;
    std::string path_;
    llama_adapter_lora * adapter_ = nullptr;
};

// `scales` checked against `n_adapters`: std::invalid_argument naming `what` when the count differs or a scale is
// not a finite number.
void check_lora_scales(const std::vector<float> & scales, size_t n_adapters, const std::string & what);

}  // namespace jan
