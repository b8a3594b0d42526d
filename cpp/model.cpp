#include "model.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <cmath>
#include <mutex>
#include <regex>
#include <stdexcept>

#include "deep_stack.h"
#include "errors.h"
#include "gguf_layers.h"
#include "ggml-backend.h"
#include "log_sink.h"
#include "utf8_sampler.h"

namespace jan {

void ensure_backend_initialized() {
    static std::once_flag once;
    std::call_once(once, [] {
        install_log_sink();
        // Builds with dynamically loaded backends (GGML_BACKEND_DL) register nothing until asked.
        if (ggml_backend_reg_count() == 0) ggml_backend_load_all();
        llama_backend_init();
    });
    // llama_cpp (the Python package) installs its own logger when imported; reclaim it.
    install_log_sink();
}

namespace {

// Distinguishes "not a GGUF file" from other failures: llama.cpp reports both as nullptr.
std::string describe_unreadable(const std::string & path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) return "cannot open model file '" + path + "'";
    char magic[4] = {0, 0, 0, 0};
    f.read(magic, 4);
    if (f.gcount() < 4 || std::memcmp(magic, "GGUF", 4) != 0)
        return "'" + path + "' is not a GGUF file (bad magic)";
    return "llama.cpp could not load '" + path + "' (truncated or unsupported file; see the jan.llama log for details)";
}

// Whether the CPU backend offers llama.cpp's AMX weight buffers (Intel Xeon with AMX: Sapphire Rapids
// and later). The buffer types are looked up by name, so no link against ggml-cpu is needed.
bool cpu_offers_amx_buffers() {
    ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    if (!cpu) return false;
    auto get_extra = (ggml_backend_dev_get_extra_bufts_t)ggml_backend_reg_get_proc_address(
        ggml_backend_dev_backend_reg(cpu), "ggml_backend_dev_get_extra_bufts");
    if (!get_extra) return false;
    for (ggml_backend_buffer_type_t * b = get_extra(cpu); b && *b; ++b)
        if (std::strcmp(ggml_backend_buft_name(*b), "AMX") == 0) return true;
    return false;
}

}  // namespace

bool extra_buffers_by_default() {
    ensure_backend_initialized();
    return !cpu_offers_amx_buffers();
}

Model::Model(const std::string & path, const ModelParams & params) : path_(path) {
    ensure_backend_initialized();
    {
        std::ifstream probe(path, std::ios::binary);
        if (!probe) throw ModelLoadError("model file not found or unreadable: '" + path + "'");
    }
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = params.n_gpu_layers < 0 ? 999 : params.n_gpu_layers;
    mp.main_gpu = params.main_gpu;
    mp.load_mode = params.use_mmap ? (params.use_mlock ? LLAMA_LOAD_MODE_MMAP_MLOCK : LLAMA_LOAD_MODE_MMAP)
                                   : (params.use_mlock ? LLAMA_LOAD_MODE_MLOCK : LLAMA_LOAD_MODE_NONE);
    if (params.load_mode != -2) {
        if (params.load_mode < LLAMA_LOAD_MODE_AUTO || params.load_mode > LLAMA_LOAD_MODE_DIRECT_IO)
            throw std::invalid_argument("load_mode: must be -1 (auto) to 4 (direct I/O), or -2 (from use_mmap)");
        mp.load_mode = (llama_load_mode)params.load_mode;
    }
    if (params.lazy_mode != -1) {
        if (params.lazy_mode < LLAMA_LAZY_MODE_OFF || params.lazy_mode > LLAMA_LAZY_MODE_ON)
            throw std::invalid_argument("lazy_mode: must be 0 (off), 1 (auto) or 2 (on), or -1 (llama.cpp's)");
        mp.lazy_mode = (llama_lazy_mode)params.lazy_mode;
    }
    mp.no_host = params.no_host;
    // (null-terminated, as llama.cpp reads it; a lone null is "no GPU")
    std::vector<ggml_backend_dev_t> devices;
    if (params.devices) {
        for (const auto & name : *params.devices) {
            ggml_backend_dev_t dev = ggml_backend_dev_by_name(name.c_str());
            if (!dev || ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_CPU) {
                std::string known;
                for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
                    ggml_backend_dev_t d = ggml_backend_dev_get(i);
                    if (ggml_backend_dev_type(d) != GGML_BACKEND_DEVICE_TYPE_CPU)
                        known += (known.empty() ? "" : ", ") + std::string(ggml_backend_dev_name(d));
                }
                throw std::invalid_argument("devices: '" + name + "' is no GPU device of this build (it has: " +
                                            (known.empty() ? std::string("none") : known) + ")");
            }
            devices.push_back(dev);
        }
        devices.push_back(nullptr);
        mp.devices = devices.data();
    }
    if (params.split_mode < LLAMA_SPLIT_MODE_NONE || params.split_mode > LLAMA_SPLIT_MODE_TENSOR)
        throw std::invalid_argument("split_mode: must be 0 (none), 1 (layer), 2 (row) or 3 (tensor)");
    mp.split_mode = (llama_split_mode)params.split_mode;
    // (llama.cpp reads llama_max_devices() shares: the ones not given are 0)
    std::vector<float> split;
    if (!params.tensor_split.empty()) {
        if (params.tensor_split.size() > llama_max_devices())
            throw std::invalid_argument("tensor_split: at most " + std::to_string(llama_max_devices()) +
                                        " shares (one a device), got " + std::to_string(params.tensor_split.size()));
        for (float share : params.tensor_split)
            if (!std::isfinite(share) || share < 0)
                throw std::invalid_argument("tensor_split: each share must be a finite number >= 0");
        split.assign(llama_max_devices(), 0.0f);
        std::copy(params.tensor_split.begin(), params.tensor_split.end(), split.begin());
        mp.tensor_split = split.data();
    }
    // The buffer types by name as llama-bench's -ot finds them: each device's own; llama.cpp keeps the pointers
    // only while loading, so `overrides` (and the patterns of `params`) outlive the load below.
    std::vector<llama_model_tensor_buft_override> overrides;
    if (!params.tensor_buft_overrides.empty()) {
        std::vector<std::pair<std::string, ggml_backend_buffer_type_t>> types;
        for (size_t i = 0; i < ggml_backend_dev_count(); ++i)
            if (auto * buft = ggml_backend_dev_buffer_type(ggml_backend_dev_get(i)))
                types.emplace_back(ggml_backend_buft_name(buft), buft);
        for (const auto & [pattern, name] : params.tensor_buft_overrides) {
            if (pattern.empty()) throw std::invalid_argument("tensor_buft_overrides: a tensor name pattern is empty");
            try {
                std::regex check(pattern);  // (llama.cpp's own use: an invalid one failed the load, told as a bad file)
            } catch (const std::regex_error &) {
                throw std::invalid_argument("tensor_buft_overrides: '" + pattern + "' is not a regular expression");
            }
            auto found = std::find_if(types.begin(), types.end(), [&](const auto & t) { return t.first == name; });
            if (found == types.end()) {
                std::string known;
                for (const auto & t : types) known += (known.empty() ? "" : ", ") + t.first;
                throw std::invalid_argument("tensor_buft_overrides: unknown buffer type '" + name +
                                            "' (this build has: " + known + ")");
            }
            overrides.push_back({pattern.c_str(), found->second});
        }
        overrides.push_back({nullptr, nullptr});
        mp.tensor_buft_overrides = overrides.data();
    }
    mp.vocab_only = params.vocab_only;
    vocab_only_ = params.vocab_only;
    mp.check_tensors = params.check_tensors;
    // llama.cpp's AMX matmul (this pinned version) dies with SIGSEGV at its first tile-config load when
    // the graph runs on any thread but the process's main one (llama-cpp-python's Llama does the same
    // from a threading.Thread; upstream ggml-org/llama.cpp#20824). jan always decodes on a scheduler
    // thread, so on an AMX CPU the weights stay in plain CPU buffers: slower prompt processing for
    // K-quants, never a crash. extra_buffers = 1 forces them back on (for a fixed llama.cpp).
    mp.use_extra_bufts = params.extra_buffers > 0 || (params.extra_buffers < 0 && extra_buffers_by_default());
    model_.reset(llama_model_load_from_file(path.c_str(), mp));
    if (!model_) throw ModelLoadError(describe_unreadable(path));
    vocab_ = llama_model_get_vocab(model_.get());
    if (!vocab_) throw ModelLoadError("model '" + path + "' has no vocabulary");
}

std::vector<llama_token> Model::tokenize(const std::string & text, bool add_special, bool parse_special) const {
    // First guess is generous; llama_tokenize returns -needed when it is not.
    std::vector<llama_token> tokens(text.size() + 2 * (add_special ? 1 : 0) + 8);
    int32_t n = 0;
    // (a long text on a stack sized for it: some vocabularies' pre-tokenizer recurses per character, deep_stack.h)
    run_for_text(text.size(), [&] {
        n = llama_tokenize(vocab_, text.data(), (int32_t)text.size(), tokens.data(), (int32_t)tokens.size(),
                           add_special, parse_special);
        if (n < 0) {
            tokens.resize(-n);
            n = llama_tokenize(vocab_, text.data(), (int32_t)text.size(), tokens.data(), (int32_t)tokens.size(),
                               add_special, parse_special);
        }
    });
    if (n < 0) throw std::runtime_error("tokenization failed");
    tokens.resize(n);
    return tokens;
}

void Model::check_token(llama_token token) const {
    if (token < 0 || token >= n_vocab())
        throw std::out_of_range("token id " + std::to_string(token) + " is outside the vocabulary (0.." +
                                std::to_string(n_vocab() - 1) + ")");
}

std::string Model::detokenize(const std::vector<llama_token> & tokens, bool remove_special, bool unparse_special) const {
    for (auto t : tokens) check_token(t);
    std::string out(tokens.size() * 8 + 16, '\0');
    int32_t n = llama_detokenize(vocab_, tokens.data(), (int32_t)tokens.size(), out.data(), (int32_t)out.size(),
                                 remove_special, unparse_special);
    if (n < 0) {
        out.resize(-n);
        n = llama_detokenize(vocab_, tokens.data(), (int32_t)tokens.size(), out.data(), (int32_t)out.size(),
                             remove_special, unparse_special);
    }
    if (n < 0) throw std::runtime_error("detokenization failed");
    out.resize(n);
    return out;
}

std::string Model::token_to_piece(llama_token token, bool special) const {
    check_token(token);
    char buf[256];
    int32_t n = llama_token_to_piece(vocab_, token, buf, sizeof(buf), 0, special);
    if (n >= 0) return std::string(buf, n);
    std::string big(-n, '\0');
    n = llama_token_to_piece(vocab_, token, big.data(), (int32_t)big.size(), 0, special);
    big.resize(n < 0 ? 0 : n);
    return big;
}

const PieceIndex & Model::pieces() const {
    std::call_once(pieces_once_, [this] {
        auto index = std::make_unique<PieceIndex>();
        const int32_t n = n_vocab();
        index->tokens.reserve((size_t)n);
        for (llama_token t = 0; t < n; ++t) {
            if (is_eog(t)) continue;
            std::string piece = token_to_piece(t, /*special=*/true);  // (as llama.cpp's grammar caches them)
            if (piece.empty()) continue;
            index->max_len = std::max(index->max_len, piece.size());
            index->tokens.emplace(std::move(piece), t);
        }
        pieces_ = std::move(index);
    });
    return *pieces_;
}

std::shared_ptr<const Utf8Classes> Model::utf8_classes() const {
    std::call_once(utf8_once_, [this] { utf8_ = build_utf8_classes(*this); });
    return utf8_;
}

std::map<std::string, std::string> Model::metadata() const {
    std::map<std::string, std::string> out;
    const int32_t count = llama_model_meta_count(model_.get());
    std::vector<char> key(512), val(4096);
    for (int32_t i = 0; i < count; ++i) {
        int32_t nk = llama_model_meta_key_by_index(model_.get(), i, key.data(), key.size());
        if (nk < 0) continue;
        if ((size_t)nk >= key.size()) {
            key.resize(nk + 1);
            llama_model_meta_key_by_index(model_.get(), i, key.data(), key.size());
        }
        int32_t nv = llama_model_meta_val_str_by_index(model_.get(), i, val.data(), val.size());
        if (nv < 0) continue;
        if ((size_t)nv >= val.size()) {
            val.resize(nv + 1);
            nv = llama_model_meta_val_str_by_index(model_.get(), i, val.data(), val.size());
        }
        out.emplace(std::string(key.data()), std::string(val.data(), nv));
    }
    return out;
}

std::string Model::meta(const std::string & key) const {
    std::vector<char> val(1024);
    int32_t n = llama_model_meta_val_str(model_.get(), key.c_str(), val.data(), val.size());
    if (n < 0) return "";
    if ((size_t)n >= val.size()) {
        val.resize(n + 1);
        n = llama_model_meta_val_str(model_.get(), key.c_str(), val.data(), val.size());
    }
    return std::string(val.data(), n);
}

std::string Model::chat_template() const {
    const char * tmpl = llama_model_chat_template(model_.get(), nullptr);
    return tmpl ? std::string(tmpl) : std::string();
}

std::string Model::description() const {
    char buf[256];
    int32_t n = llama_model_desc(model_.get(), buf, sizeof(buf));
    return n > 0 ? std::string(buf, std::min<int32_t>(n, sizeof(buf) - 1)) : std::string();
}

int32_t Model::n_vocab() const { return llama_vocab_n_tokens(vocab_); }
int32_t Model::n_ctx_train() const { return llama_model_n_ctx_train(model_.get()); }
int32_t Model::n_embd() const { return llama_model_n_embd(model_.get()); }
int32_t Model::n_layer() const { return llama_model_n_layer(model_.get()); }
uint64_t Model::n_params() const { return llama_model_n_params(model_.get()); }
uint64_t Model::size_bytes() const { return llama_model_size(model_.get()); }
int32_t Model::vocab_type() const { return llama_vocab_type(vocab_); }

int32_t Model::ftype() const {
    if (!vocab_only_) return llama_model_ftype(model_.get());
    const std::string value = meta("general.file_type");
    if (value.empty()) return guessed_ftype();
    try {
        return std::stoi(value);
    } catch (const std::exception &) {  // (a header's nonsense value: unknown, as an unreadable file)
        return -1;
    }
}

std::string Model::ftype_name() const {
    const int32_t ftype = this->ftype();
    return ftype < 0 ? "" : llama_ftype_name(static_cast<llama_ftype>(ftype));
}

int32_t Model::guessed_ftype() const {
    // a load guesses the type from the tensors of all of a split model's files, named as llama.cpp names splits
    std::vector<std::string> paths{path_};
    try {
        const std::string count = meta("split.count");
        const int n_split = count.empty() ? 0 : std::stoi(count);
        if (n_split > 1) {
            const std::string no = meta("split.no");
            const int idx = no.empty() ? 0 : std::stoi(no);
            std::vector<char> buf(path_.size() + 64, 0);
            const int32_t n = llama_split_prefix(buf.data(), buf.size(), path_.c_str(), idx, n_split);
            if (n <= 0) return -1;  // (a load refuses a split file so named)
            const std::string prefix(buf.data(), n);
            paths.clear();
            for (int i = 0; i < n_split; ++i) {
                const int32_t m = llama_split_path(buf.data(), buf.size(), prefix.c_str(), i, n_split);
                paths.emplace_back(buf.data(), m);
            }
        }
        return gguf_guessed_ftype(paths);
    } catch (const std::exception &) {  // (a file gone or unreadable since: unknown)
        return -1;
    }
}

bool Model::has_encoder() const { return llama_model_has_encoder(model_.get()); }
bool Model::has_decoder() const { return llama_model_has_decoder(model_.get()); }
bool Model::is_eog(llama_token token) const { return llama_vocab_is_eog(vocab_, token); }
bool Model::add_bos() const { return llama_vocab_get_add_bos(vocab_); }
bool Model::add_eos() const { return llama_vocab_get_add_eos(vocab_); }
bool Model::add_sep() const { return llama_vocab_get_add_sep(vocab_); }
uint32_t Model::n_cls_out() const { return llama_model_n_cls_out(model_.get()); }

int32_t Model::pooling_type() const {
    const std::string v = meta(architecture() + ".pooling_type");
    if (v.empty()) return LLAMA_POOLING_TYPE_UNSPECIFIED;
    try {
        return std::stoi(v);
    } catch (const std::exception &) {
        return LLAMA_POOLING_TYPE_UNSPECIFIED;
    }
}

}  // namespace jan
