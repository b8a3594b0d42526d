// jan._engine.Event and jan._engine.FinishReason: what a request streams to Python, read-only.
#include <cmath>

#include <pybind11/stl.h>

#include "bind_common.h"
#include "bind_event.h"

namespace jan {

enum class FinishReason { stop, length, cancelled, error };

namespace {

py::object finish_reason_of(const Event & ev) {
    if (!ev.final) return py::none();
    const std::string & r = ev.finish_reason;
    if (r == "stop") return py::cast(FinishReason::stop);
    if (r == "length") return py::cast(FinishReason::length);
    if (r == "cancelled") return py::cast(FinishReason::cancelled);
    return py::cast(FinishReason::error);
}

}  // namespace

void register_event(py::module_ & m) {
    py::enum_<FinishReason>(m, "FinishReason", "Why a request ended.")
        .value("stop", FinishReason::stop, "an end-of-generation token or a stop string")
        .value("length", FinishReason::length, "max_tokens or the end of the context")
        .value("cancelled", FinishReason::cancelled, "the request was cancelled (or the model closed)")
        .value("error", FinishReason::error, "decoding failed; see Event.error");

    py::class_<PyEvent>(m, "Event", "A piece of a streamed request (read-only); the last one has final=True.")
        .def_property_readonly("text", [](const PyEvent & e) { return to_py_str(e.event.text); },
                               "Whole UTF-8 characters released since the previous event.")
        .def_property_readonly("token_ids", [](const PyEvent & e) {
            std::vector<int32_t> ids;
            ids.reserve(e.event.tokens.size());
            for (const auto & t : e.event.tokens) ids.push_back(t.id);
            return ids;
        })
        .def_property_readonly("logprobs", [](const PyEvent & e) -> py::object {
            if (!e.with_logprobs) return py::none();
            py::list out;
            for (const auto & t : e.event.tokens) {
                py::list top;
                for (const auto & alt : t.top) top.append(py::make_tuple(alt.token, alt.logprob));
                out.append(py::make_tuple(t.logprob, top));
            }
            return std::move(out);
        }, "None, or one (logprob, [(token_id, logprob), ...]) per token when asked for.")
        .def_property_readonly("prompt_logprobs", [](const PyEvent & e) -> py::object {
            if (e.event.prompt_tokens.empty()) return py::none();
            py::list out;
            for (const auto & t : e.event.prompt_tokens) {
                py::list top;
                for (const auto & alt : t.top) top.append(py::make_tuple(alt.token, alt.logprob));
                py::object lp = std::isnan(t.logprob) ? py::none() : py::object(py::float_(t.logprob));
                out.append(py::make_tuple(t.id, lp, top));
            }
            return std::move(out);
        }, "None, or one (token_id, logprob or None, [(token_id, logprob), ...]) per prompt token evaluated "
           "since the previous event (SamplingParams.prompt_logprobs; the first prompt token has no logprob).")
        .def_property_readonly("cached_tokens", [](const PyEvent & e) -> py::object {
            if (e.event.cached_tokens < 0) return py::none();
            return py::int_(e.event.cached_tokens);
        }, "On the event with the first generated token: prompt tokens reused from the KV cache; else None.")
        .def_property_readonly("id_slot", [](const PyEvent & e) { return e.event.id_slot; },
                               "The slot the request runs in; -1 before it has one.")
        .def_property_readonly("final", [](const PyEvent & e) { return e.event.final; })
        .def_property_readonly("finish_reason", [](const PyEvent & e) { return finish_reason_of(e.event); },
                               "A FinishReason on the final event, else None.")
        .def_property_readonly("error", [](const PyEvent & e) -> py::object {
            if (e.event.error.empty()) return py::none();
            return to_py_str(e.event.error);
        })
        .def_property_readonly("stop", [](const PyEvent & e) -> py::object {
            if (e.event.stop_string.empty()) return py::none();
            return to_py_str(e.event.stop_string);
        }, "The stop string that matched, if any.")
        .def_property_readonly("usage", [](const PyEvent & e) -> py::object {
            if (!e.event.final) return py::none();
            return py::cast(e.event.usage);
        }, "A Usage on the final event, else None.")
        .def_property_readonly("progress", [](const PyEvent & e) -> py::object {
            if (e.event.final || !e.event.progress) return py::none();
            return py::cast(e.event.usage);
        }, "On an event with generated tokens (not the final one): the request's Usage so far, its timings the "
           "engine's; else None.");
}

}  // namespace jan
