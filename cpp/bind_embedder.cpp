#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <algorithm>

#include "bind_common.h"
#include "embedder.h"
#include "media.h"

namespace jan {

void register_embedder(py::module_ & m) {
    py::class_<Embedder, std::shared_ptr<Embedder>>(m, "Embedder")
        .def(py::init<std::shared_ptr<Model>, const EmbedderParams &>(), py::arg("model"), py::arg("params"),
             py::call_guard<gil_released>())
        .def("embed",
             [](Embedder & self, const std::vector<std::vector<llama_token>> & inputs, bool normalize) {
                 std::vector<std::vector<float>> vecs;
                 {
                     gil_released nogil;
                     vecs = self.embed(inputs, normalize);
                 }
                 const size_t dim = vecs.empty() ? (size_t)self.n_embd() : vecs[0].size();
                 py::array_t<float> out({vecs.size(), dim});
                 auto w = out.mutable_unchecked<2>();
                 for (size_t i = 0; i < vecs.size(); ++i)
                     for (size_t j = 0; j < dim; ++j) w(i, j) = vecs[i][j];
                 return out;
             },
             py::arg("inputs"), py::arg("normalize"))
        .def("embed_tokens",
             [](Embedder & self, const std::vector<std::vector<llama_token>> & inputs, bool normalize) {
                 std::vector<std::vector<float>> vecs;
                 {
                     gil_released nogil;
                     vecs = self.embed_tokens(inputs, normalize);
                 }
                 // one (n_tokens_i, n_embd) array per input: inputs differ in length
                 const size_t dim = (size_t)self.n_embd();
                 py::list out;
                 for (auto & v : vecs) {
                     py::array_t<float> a({v.size() / dim, dim});
                     std::copy(v.begin(), v.end(), a.mutable_data());
                     std::vector<float>().swap(v);  // each input's copy freed as it is made
                     out.append(std::move(a));
                 }
                 return out;
             },
             py::arg("inputs"), py::arg("normalize"))
        .def("embed_media",
             [](Embedder & self, const MediaPrompt & prompt, bool normalize) {
                 std::vector<float> v;
                 {
                     gil_released nogil;
                     v = self.embed_media(prompt, normalize);
                 }
                 // as embed_tokens' rows for one input with pooling none, else the one pooled vector
                 const size_t dim = (size_t)self.n_embd();
                 py::array_t<float> out = self.pooling() == LLAMA_POOLING_TYPE_NONE
                                              ? py::array_t<float>({v.size() / dim, dim})
                                              : py::array_t<float>({v.size()});
                 std::copy(v.begin(), v.end(), out.mutable_data());
                 return out;
             },
             py::arg("prompt"), py::arg("normalize"))
        .def("cancel", &Embedder::cancel)  // an atomic store: no GIL to release, safe while embed() runs
        .def_property_readonly("n_ctx", &Embedder::n_ctx)
        .def_property_readonly("pooling", &Embedder::pooling)
        .def_property_readonly("n_embd", &Embedder::n_embd);
}

}  // namespace jan
