// Helpers shared by the binding files (one file per bound class).
#pragma once

#include <pybind11/pybind11.h>

#include <string>

namespace py = pybind11;

namespace jan {

// The GIL let go of for a native call, taken back at the end of the scope: pybind11's gil_scoped_release, but with a
// destructor that lets an exception through. A thread that takes the GIL back while the interpreter finalizes (a
// daemon thread still inside an embed(), a tokenize or a wait at the script's end) is ended by CPython 3.11-3.13
// with pthread_exit, whose forced unwind starts in that take: through gil_scoped_release's implicitly noexcept
// destructor it was std::terminate, and the process aborted at exit ("terminate called without an active
// exception"). Through this one the unwind ends the thread as CPython means it to (pybind11's dispatcher rethrows
// abi::__forced_unwind). Use it wherever the GIL is released: py::call_guard<gil_released>(), or a local.
class gil_released {
public:
    gil_released() : state_(PyEval_SaveThread()) {}
    ~gil_released() noexcept(false) { PyEval_RestoreThread(state_); }
    gil_released(const gil_released &) = delete;
    gil_released & operator=(const gil_released &) = delete;

private:
    PyThreadState * state_;
};

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
