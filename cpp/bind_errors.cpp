#include "bind_common.h"
#include "errors.h"
#include "lora.h"

namespace jan {
namespace {

void raise_from(const char * name, const std::string & message) {
    py::object cls = py::module_::import("jan.errors").attr(name);
    PyErr_SetObject(cls.ptr(), py::str(message).ptr());
}

}  // namespace

void register_errors(py::module_ & m) {
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const ContextOverflowError & e) {
            py::object cls = py::module_::import("jan.errors").attr("ContextOverflowError");
            py::object err = cls(e.what(), e.n_tokens, e.n_ctx);
            PyErr_SetObject(cls.ptr(), err.ptr());
        } catch (const GrammarPrefixError & e) {
            py::object cls = py::module_::import("jan.errors").attr("GrammarPrefixError");
            py::object err = cls(e.what(), py::arg("offset") = e.offset);
            PyErr_SetObject(cls.ptr(), err.ptr());
        } catch (const MediaInputError & e) {
            py::object cls = py::module_::import("jan.errors").attr("MediaError");
            py::object err = cls(e.what(), e.reason);
            err.attr("item_index") = e.index;
            PyErr_SetObject(cls.ptr(), err.ptr());
        } catch (const LoraAdapterError & e) {
            raise_from("LoraAdapterError", e.what());  // (before ModelLoadError, its base)
        } catch (const ModelLoadError & e) {
            raise_from("ModelLoadError", e.what());
        } catch (const SlotFileError & e) {
            raise_from("SlotFileError", e.what());
        } catch (const QueueFullError & e) {
            raise_from("QueueFullError", e.what());
        } catch (const EmbedCancelledError & e) {
            raise_from("ModelClosedError", e.what());  // (before EngineError, its base)
        } catch (const ModelClosedError & e) {
            raise_from("ModelClosedError", e.what());  // (before EngineError, its base)
        } catch (const EngineError & e) {
            raise_from("EngineError", e.what());
        } catch (const std::out_of_range & e) {
            PyErr_SetString(PyExc_ValueError, e.what());  // bad token ids are bad arguments
        }
    });
}

}  // namespace jan
