#include <pybind11/stl.h>

#include "bind_common.h"
#include "scheduler.h"

namespace jan {

py::object make_request_handle(std::shared_ptr<RequestState> state);

void register_scheduler(py::module_ & m) {
    using release = py::call_guard<gil_released>;
    using Info = Scheduler::SlotInfo;
    py::class_<Info>(m, "SlotInfo", "A slot as llama-server's GET /slots tells it (Scheduler.slots_info).")
        .def_readonly("id", &Info::id)
        .def_readonly("is_processing", &Info::is_processing)
        .def_readonly("has_task", &Info::has_task)
        .def_readonly("id_task", &Info::id_task)
        .def_readonly("n_cache_tokens", &Info::n_cache_tokens)
        .def_readonly("n_prompt_tokens", &Info::n_prompt_tokens)
        .def_readonly("n_prompt_processed", &Info::n_prompt_processed)
        .def_readonly("n_prompt_cached", &Info::n_prompt_cached)
        .def_readonly("n_decoded", &Info::n_decoded)
        .def_readonly("n_remain", &Info::n_remain)
        .def_readonly("has_next_token", &Info::has_next_token)
        .def_readonly("has_new_line", &Info::has_new_line)
        .def_readonly("params", &Info::params)
        .def_readonly("lora", &Info::lora);
    py::class_<Scheduler, std::shared_ptr<Scheduler>>(m, "Scheduler")
        // The holder's deleter leaks a scheduler dropped in a child process forked after it was made (a child that
        // exits, closes the model or lets it be collected): its engine thread is the parent's, so the destructor
        // would join a thread that is not here (std::system_error, std::terminate: the child aborted at exit) and
        // destroy a condition variable that thread may be waiting on (glibc waits for its waiters: a hang). The
        // memory is the child's copy of the parent's; it goes with the child.
        .def(py::init([](std::shared_ptr<Model> model, const ContextParams & params, std::shared_ptr<Model> draft,
                         std::vector<std::shared_ptr<LoraAdapter>> loras, std::vector<float> lora_scales) {
                 return std::shared_ptr<Scheduler>(new Scheduler(std::move(model), params, std::move(draft),
                                                                 std::move(loras), std::move(lora_scales)),
                                                   [](Scheduler * s) {
                                                       if (!s->forked()) delete s;
                                                   });
             }),
             py::arg("model"), py::arg("params"), py::arg("draft") = nullptr,
             py::arg("loras") = std::vector<std::shared_ptr<LoraAdapter>>{},
             py::arg("lora_scales") = std::vector<float>{},
             release())
        .def_property_readonly("loras", &Scheduler::loras, "The LoRA adapters (LoraAdapter), in id order.")
        .def_property("lora_defaults", &Scheduler::lora_defaults, &Scheduler::set_lora_defaults,
                      "The scales of requests that name none (one per adapter); set: those submitted afterwards.")
        .def("submit",
             [](Scheduler & self, std::vector<llama_token> prompt, const SamplingParams & params) {
                 std::shared_ptr<RequestState> state;
                 {
                     gil_released nogil;
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
        .def("slot_action",
             [](Scheduler & self, const std::string & action, int32_t id_slot, const std::string & path, bool media) {
                 Scheduler::SlotAction kind;
                 if (action == "save") kind = Scheduler::SlotAction::Save;
                 else if (action == "restore") kind = Scheduler::SlotAction::Restore;
                 else if (action == "erase") kind = Scheduler::SlotAction::Erase;
                 else throw std::invalid_argument("Invalid action: " + action + " (save, restore or erase)");
                 Scheduler::SlotActionResult r;
                 {
                     gil_released nogil;
                     r = self.slot_action(kind, id_slot, path, media);
                 }
                 py::dict out;
                 out["id_slot"] = r.id_slot;
                 out["n_tokens"] = r.n_tokens;
                 out["n_bytes"] = r.n_bytes;
                 out["ms"] = r.ms;
                 return out;
             },
             py::arg("action"), py::arg("id_slot"), py::arg("path") = std::string(), py::arg("media") = false,
             "llama-server's slot action (save, restore, erase) on slot id_slot, with the file path of a save or "
             "restore; blocks until the engine thread ran it. media: the model takes images or audio (a restored file "
             "holding them is refused without). A dict: id_slot, n_tokens, n_bytes, ms.")
        .def("slots_info", &Scheduler::slots_info, release(),
             "Each slot's state and its current (else last) request (SlotInfo), taken between two engine steps.")
        .def("shutdown", &Scheduler::shutdown, release());
    // what a save appends to a slot file's path for the LoRA scales it writes beside it (no slot file may end so)
    m.attr("Scheduler").attr("SLOT_LORA_SUFFIX") = Scheduler::kLoraSuffix;
}

}  // namespace jan
