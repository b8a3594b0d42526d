#include <pybind11/stl.h>

#include "bind_common.h"
#include "kv_cache.h"
#include "log_sink.h"
#include "model.h"

namespace jan {

void register_model(py::module_ & m) {
    using release = py::call_guard<gil_released>;
    py::class_<Model, std::shared_ptr<Model>>(m, "Model")
        .def(py::init<const std::string &, const ModelParams &>(), py::arg("path"), py::arg("params"), release())
        .def_property_readonly("path", &Model::path)
        .def("tokenize", &Model::tokenize, py::arg("text"), py::arg("add_special"), py::arg("parse_special"), release())
        .def("tokenize_packed",
             [](const Model & self, const std::string & text, bool add_special, bool parse_special) {
                 // The ids as native int32 bytes, one copy: a list's ints are made under the GIL, all of them in
                 // one call here (a 16 MiB text's 8.4 M ids held every other thread ~0.6 s); jan.engine.token_ids
                 // makes them in pieces, between which the interpreter lets a waiting thread run.
                 std::vector<llama_token> ids;
                 {
                     gil_released nogil;
                     ids = self.tokenize(text, add_special, parse_special);
                 }
                 return py::bytes(reinterpret_cast<const char *>(ids.data()), ids.size() * sizeof(llama_token));
             },
             py::arg("text"), py::arg("add_special"), py::arg("parse_special"))
        .def("detokenize",
             [](const Model & self, const std::vector<llama_token> & tokens, bool remove_special, bool unparse_special) {
                 std::string s;
                 {
                     gil_released nogil;
                     s = self.detokenize(tokens, remove_special, unparse_special);
                 }
                 return to_py_str(s);
             },
             py::arg("tokens"), py::arg("remove_special"), py::arg("unparse_special"))
        .def("token_to_piece",
             [](const Model & self, llama_token token, bool special) {
                 return py::bytes(self.token_to_piece(token, special));
             },
             py::arg("token"), py::arg("special"))
        .def("control_texts",
             [](const Model & self) {
                 // The whole vocabulary in one call (Qwen's is 152k tokens: 0.9 s one pybind call at a time).
                 std::vector<std::string> texts;
                 {
                     gil_released nogil;
                     const int32_t n = (int32_t)self.n_vocab();
                     for (llama_token t = 0; t < n; ++t) {
                         std::string shown = self.token_to_piece(t, true);
                         if (!shown.empty() && shown != self.token_to_piece(t, false)) texts.push_back(std::move(shown));
                     }
                 }
                 py::list out;
                 for (const auto & s : texts) out.append(py::bytes(s));
                 return out;
             },
             "The text of each control token (what shows only when special tokens are rendered), as bytes.")
        .def("metadata", &Model::metadata)
        .def("meta", &Model::meta, py::arg("key"))
        .def("chat_template", &Model::chat_template)
        .def("description", &Model::description)
        .def("architecture", &Model::architecture)
        .def_property_readonly("n_vocab", &Model::n_vocab)
        .def_property_readonly("n_ctx_train", &Model::n_ctx_train)
        .def_property_readonly("n_embd", &Model::n_embd)
        .def_property_readonly("n_layer", &Model::n_layer)
        .def_property_readonly("n_params", &Model::n_params)
        .def_property_readonly("size_bytes", &Model::size_bytes)
        .def_property_readonly("vocab_type", &Model::vocab_type)
        .def_property_readonly("ftype", &Model::ftype)
        .def_property_readonly("ftype_name", &Model::ftype_name)
        .def_property_readonly("has_encoder", &Model::has_encoder)
        .def_property_readonly("has_decoder", &Model::has_decoder)
        .def_property_readonly("pooling_type", &Model::pooling_type)
        .def_property_readonly("add_bos", &Model::add_bos)
        .def_property_readonly("add_eos", &Model::add_eos)
        .def_property_readonly("add_sep", &Model::add_sep)
        .def_property_readonly("n_cls_out", &Model::n_cls_out)
        .def("is_eog", &Model::is_eog, py::arg("token"))
        .def("kv_cache_bytes",
             [](const Model & self, uint32_t n_cells, const std::string & type_k, const std::string & type_v) {
                 return kv_cache_size(self, n_cells, kv_cache_type(type_k, "cache_type_k"),
                                      kv_cache_type(type_v, "cache_type_v"));
             },
             py::arg("n_cells"), py::arg("cache_type_k") = "f16", py::arg("cache_type_v") = "f16",
             "Bytes of a KV cache of n_cells cells (all layers, K and V) with these element types.")
        .def("special_tokens", [](const Model & self) {
            const llama_vocab * v = self.vocab();
            py::dict d;
            d["bos"] = llama_vocab_bos(v);
            d["eos"] = llama_vocab_eos(v);
            d["eot"] = llama_vocab_eot(v);
            d["sep"] = llama_vocab_sep(v);
            d["nl"] = llama_vocab_nl(v);
            d["pad"] = llama_vocab_pad(v);
            d["mask"] = llama_vocab_mask(v);
            d["fim_pre"] = llama_vocab_fim_pre(v);
            d["fim_suf"] = llama_vocab_fim_suf(v);
            d["fim_mid"] = llama_vocab_fim_mid(v);
            return d;
        });

    m.def("drain_logs", [] {
        py::list out;
        for (auto & r : drain_logs()) out.append(py::make_tuple(r.level, to_py_str(r.text)));
        return out;
    }, "Log lines llama.cpp produced since the last call, as (ggml_log_level, text).");
}

}  // namespace jan
