// Helpers shared by the binding files (one file per bound class).
#pragma once

#include <pybind11/pybind11.h>

#include <string>

namespace py = pybind11;

namespace jan {

// Model text may hold bytes that are not UTF-8 (a piece of a character, or
// garbage from a random model): never let that raise at the boundary.
inline py::str to_py_str(const std::string & s) {
    PyObject * o = PyUnicode_DecodeUTF8(s.data(), (Py_ssize_t)s.size(), "replace");
    if (!o) throw py::error_already_set();
    return py::reinterpret_steal<py::str>(o);
}

void register_errors(py::module_ & m);
void register_params(py::module_ & m);
void register_model(py::module_ & m);
void register_usage(py::module_ & m);
void register_event(py::module_ & m);
void register_metrics(py::module_ & m);
void register_request(py::module_ & m);
void register_scheduler(py::module_ & m);
void register_lora(py::module_ & m);
void register_embedder(py::module_ & m);
void register_system(py::module_ & m);
void register_media(py::module_ & m);  // after register_scheduler: it adds Scheduler.submit_media

}  // namespace jan
