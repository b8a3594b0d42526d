#include <pybind11/stl.h>

#include "bind_common.h"
#include "lora.h"

namespace jan {

void register_lora(py::module_ & m) {
    using release = py::call_guard<gil_released>;
    py::class_<LoraAdapter, std::shared_ptr<LoraAdapter>>(m, "LoraAdapter")
        .def(py::init<std::shared_ptr<Model>, const std::string &>(), py::arg("model"), py::arg("path"), release())
        .def_property_readonly("path", &LoraAdapter::path)
        .def_property_readonly("alpha", &LoraAdapter::alpha)
        .def("meta", [](const LoraAdapter & self, const std::string & key) { return to_py_str(self.meta(key)); },
             py::arg("key"))
        .def("metadata", [](const LoraAdapter & self) {
            py::dict out;
            for (const auto & [k, v] : self.metadata()) out[to_py_str(k)] = to_py_str(v);
            return out;
        });
}

}  // namespace jan
