#include <pybind11/stl.h>

#include "bind_common.h"
#include "scheduler.h"

namespace jan {

py::object make_request_handle(std::shared_ptr<RequestState> state);

void register_scheduler(py::module_ & m) {
    using release = py::call_guard<py::gil_scoped_release>;
    py::class_<Scheduler, std::shared_ptr<Scheduler>>(m, "Scheduler")
        .def(py::init<std::shared_ptr<Model>, const ContextParams &, std::shared_ptr<Model>>(), py::arg("model"),
             py::arg("params"), py::arg("draft") = nullptr, release())
        .def("submit",
             [](Scheduler & self, std::vector<llama_token> prompt, const SamplingParams & params) {
                 std::shared_ptr<RequestState> state;
                 {
                     py::gil_scoped_release nogil;
                     state = self.submit(std::move(prompt), params);
                 }
                 return make_request_handle(std::move(state));
             },
             py::arg("prompt"), py::arg("params"))
        .def("metrics", &Scheduler::metrics, "The counters since load (a SchedulerMetrics).")
        .def_property_readonly("n_ctx_slot", &Scheduler::n_ctx_slot)
        .def_property_readonly("n_parallel", &Scheduler::n_parallel)
        .def_property_readonly("kv_cache_bytes", &Scheduler::kv_cache_bytes, "Bytes of the KV cache (all slots).")
        .def_property_readonly("draft_kv_cache_bytes", &Scheduler::draft_kv_cache_bytes,
                               "Bytes of the draft model's KV cache (0 without one).")
        .def_property_readonly("has_draft_model", &Scheduler::has_draft_model)
        .def("shutdown", &Scheduler::shutdown, release());
}

}  // namespace jan
