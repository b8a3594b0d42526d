#include <pybind11/stl.h>

#include "bind_common.h"
#include "bind_event.h"

namespace jan {
namespace {

// Python owns this; dropping it (garbage collection, a closed stream) cancels
// the request so its slot is freed at the next engine step.
struct RequestHandle {
    explicit RequestHandle(std::shared_ptr<RequestState> s) : state(std::move(s)) {}
    RequestHandle(RequestHandle &&) noexcept = default;
    RequestHandle(const RequestHandle &) = delete;
    RequestHandle & operator=(const RequestHandle &) = delete;
    std::shared_ptr<RequestState> state;
    ~RequestHandle() {
        if (state) state->cancel();
    }
};

py::list events_to_py(std::vector<Event> && events, bool with_logprobs) {
    py::list out;
    for (auto & ev : events) out.append(py::cast(PyEvent{std::move(ev), with_logprobs}));
    return out;
}

}  // namespace

void register_request(py::module_ & m) {
    py::class_<RequestHandle>(m, "Request")
        .def("fileno", [](RequestHandle & h) { return h.state->fileno(); },
             "A descriptor that is readable while events wait to be drained (for asyncio add_reader).")
        .def("drain", [](const RequestHandle & h, bool with_logprobs) {
                 return events_to_py(h.state->drain(), with_logprobs);
             }, py::arg("with_logprobs") = false, "Events queued so far; never blocks.")
        .def("wait", [](const RequestHandle & h, double timeout, bool with_logprobs) {
                 std::vector<Event> events;
                 {
                     gil_released nogil;
                     events = h.state->wait(timeout);
                 }
                 return events_to_py(std::move(events), with_logprobs);
             }, py::arg("timeout") = -1.0, py::arg("with_logprobs") = false,
             "Blocks (without the GIL) until events arrive or the timeout passes.")
        .def("wait_final", [](const RequestHandle & h, double timeout, bool with_logprobs) {
                 std::vector<Event> events;
                 {
                     gil_released nogil;
                     events = h.state->wait_final(timeout);
                 }
                 return events_to_py(std::move(events), with_logprobs);
             }, py::arg("timeout") = -1.0, py::arg("with_logprobs") = false,
             "Blocks (without the GIL) until the request finished or the timeout passes; returns what is queued.")
        .def("cancel", [](const RequestHandle & h) { h.state->cancel(); })
        .def("end_reasoning", [](const RequestHandle & h) { h.state->end_reasoning(); })
        .def_property_readonly("cancelled", [](const RequestHandle & h) { return h.state->cancelled(); })
        .def_property_readonly("finished", [](const RequestHandle & h) { return h.state->finished(); });
}

// Used by bind_scheduler.cpp.
py::object make_request_handle(std::shared_ptr<RequestState> state) {
    return py::cast(RequestHandle(std::move(state)), py::return_value_policy::move);
}

}  // namespace jan
