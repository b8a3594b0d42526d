// jan._engine.Usage: a finished request's token counts and timings, read-only.
#include "bind_common.h"
#include "request.h"

#include <cstdio>

namespace jan {

void register_usage(py::module_ & m) {
    py::class_<Usage>(m, "Usage", "Token counts and timings of one finished request (read-only).")
        .def(py::init([](int32_t prompt_tokens, int32_t completion_tokens, int32_t cached_tokens, double queue_ms,
                         double prompt_ms, double generation_ms, int32_t draft_tokens, int32_t draft_accepted) {
                 Usage u;
                 u.prompt_tokens = prompt_tokens;
                 u.completion_tokens = completion_tokens;
                 u.cached_tokens = cached_tokens;
                 u.queue_ms = queue_ms;
                 u.prompt_ms = prompt_ms;
                 u.generation_ms = generation_ms;
                 u.draft_tokens = draft_tokens;
                 u.draft_accepted = draft_accepted;
                 return u;
             }),
             py::kw_only(), py::arg("prompt_tokens") = 0, py::arg("completion_tokens") = 0,
             py::arg("cached_tokens") = 0, py::arg("queue_ms") = 0.0, py::arg("prompt_ms") = 0.0,
             py::arg("generation_ms") = 0.0, py::arg("draft_tokens") = 0, py::arg("draft_accepted") = 0)
        .def_readonly("prompt_tokens", &Usage::prompt_tokens)
        .def_readonly("completion_tokens", &Usage::completion_tokens)
        .def_readonly("cached_tokens", &Usage::cached_tokens, "Prompt tokens reused from the KV cache.")
        .def_readonly("queue_ms", &Usage::queue_ms, "Submit to slot assigned.")
        .def_readonly("prompt_ms", &Usage::prompt_ms, "Slot assigned to the first token sampled.")
        .def_readonly("generation_ms", &Usage::generation_ms, "First token to the finish.")
        .def_readonly("draft_tokens", &Usage::draft_tokens, "Speculative decoding: tokens drafted.")
        .def_readonly("draft_accepted", &Usage::draft_accepted, "Drafted tokens accepted.")
        .def_property_readonly("total_tokens", [](const Usage & u) { return u.prompt_tokens + u.completion_tokens; })
        .def_property_readonly(
            "tokens_per_second",
            [](const Usage & u) {
                // generation speed after the first token (the first one's cost is prompt processing)
                if (u.completion_tokens <= 1 || u.generation_ms <= 0) return 0.0;
                return (u.completion_tokens - 1) / (u.generation_ms / 1000.0);
            },
            "Generated tokens per second after the first.")
        // an operator: compared with anything else (None, a number) it answers NotImplemented, so Python says False
        // (`usage == None`, a chunk without usage compared with one with it), where a plain method raised TypeError
        // "incompatible function arguments"
        .def("__eq__",
             [](const Usage & a, const Usage & b) {
                 return a.prompt_tokens == b.prompt_tokens && a.completion_tokens == b.completion_tokens &&
                        a.cached_tokens == b.cached_tokens && a.queue_ms == b.queue_ms && a.prompt_ms == b.prompt_ms &&
                        a.generation_ms == b.generation_ms && a.draft_tokens == b.draft_tokens &&
                        a.draft_accepted == b.draft_accepted;
             },
             py::is_operator())
        .def(
            "to_dict",
            [](const Usage & u) {
                // the stored fields, as Usage(**d) takes them back: what json.dumps of a result needs
                py::dict d;
                d["prompt_tokens"] = u.prompt_tokens;
                d["completion_tokens"] = u.completion_tokens;
                d["cached_tokens"] = u.cached_tokens;
                d["queue_ms"] = u.queue_ms;
                d["prompt_ms"] = u.prompt_ms;
                d["generation_ms"] = u.generation_ms;
                d["draft_tokens"] = u.draft_tokens;
                d["draft_accepted"] = u.draft_accepted;
                return d;
            },
            "The counts and timings as a plain dict (JSON-ready): the constructor's keywords, Usage(**d) == self.")
        .def("__repr__", [](const Usage & u) {
            char buf[256];
            std::snprintf(buf, sizeof buf,
                          "Usage(prompt_tokens=%d, completion_tokens=%d, cached_tokens=%d, queue_ms=%.3f, "
                          "prompt_ms=%.3f, generation_ms=%.3f)",
                          u.prompt_tokens, u.completion_tokens, u.cached_tokens, u.queue_ms, u.prompt_ms,
                          u.generation_ms);
            return std::string(buf);
        });
}

}  // namespace jan
