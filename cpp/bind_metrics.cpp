// jan._engine.SchedulerMetrics: one model's counters since load, read-only.
#include "bind_common.h"
#include "scheduler.h"

namespace jan {

void register_metrics(py::module_ & m) {
    py::class_<SchedulerMetrics>(m, "SchedulerMetrics", "A scheduler's counters since the model loaded (read-only).")
        .def_readonly("requests_total", &SchedulerMetrics::requests_total)
        .def_readonly("requests_finished", &SchedulerMetrics::requests_finished)
        .def_readonly("requests_cancelled", &SchedulerMetrics::requests_cancelled)
        .def_readonly("requests_failed", &SchedulerMetrics::requests_failed)
        .def_readonly("prompt_tokens_total", &SchedulerMetrics::prompt_tokens_total, "Prompt tokens evaluated.")
        .def_readonly("cached_tokens_total", &SchedulerMetrics::cached_tokens_total, "Prompt tokens reused from cache.")
        .def_readonly("generated_tokens_total", &SchedulerMetrics::generated_tokens_total)
        .def_readonly("draft_tokens_total", &SchedulerMetrics::draft_tokens_total, "Speculative decoding: tokens drafted.")
        .def_readonly("draft_accepted_total", &SchedulerMetrics::draft_accepted_total, "Drafted tokens accepted.")
        .def_readonly("decode_calls", &SchedulerMetrics::decode_calls)
        .def_readonly("decode_seconds", &SchedulerMetrics::decode_seconds)
        .def_readonly("busy_seconds", &SchedulerMetrics::busy_seconds, "Wall time with at least one busy slot.")
        .def_readonly("slots_busy", &SchedulerMetrics::slots_busy)
        .def_readonly("slots_total", &SchedulerMetrics::slots_total)
        .def_readonly("queue_depth", &SchedulerMetrics::queue_depth)
        .def_readonly("n_threads", &SchedulerMetrics::n_threads, "Threads a generation step uses now.")
        .def_readonly("n_threads_batch", &SchedulerMetrics::n_threads_batch, "Threads a prompt-processing step uses now.")
        .def_readonly("cpu_busy_elsewhere", &SchedulerMetrics::cpu_busy_elsewhere,
                      "Cores busy with anything but this model's compute threads (other processes, jan's other "
                      "threads) over the last sample (thread_governor.h).")
        .def_readonly("thread_changes_total", &SchedulerMetrics::thread_changes_total,
                      "Times the thread counts changed for the load beside this model.")
        .def_readonly("threads_apart", &SchedulerMetrics::threads_apart,
                      "Compute threads held to their own CPUs now: while steps run more threads than the free "
                      "cores (thread_governor.h).")
        .def_readonly("step_threads", &SchedulerMetrics::step_threads,
                      "Threads the last decode step ran on: the counts above, or fewer when the step holds too little "
                      "work to split (step_threads.h).")
        .def_readonly("prompt_cache_bytes", &SchedulerMetrics::prompt_cache_bytes,
                      "Host memory held by conversations' KV caches saved from slots (cache_ram_mib).")
        .def_readonly("prompt_cache_prompts", &SchedulerMetrics::prompt_cache_prompts, "How many are saved.")
        .def("to_dict", [](const SchedulerMetrics & mt) {
            py::dict d;
            d["requests_total"] = mt.requests_total;
            d["requests_finished"] = mt.requests_finished;
            d["requests_cancelled"] = mt.requests_cancelled;
            d["requests_failed"] = mt.requests_failed;
            d["prompt_tokens_total"] = mt.prompt_tokens_total;
            d["cached_tokens_total"] = mt.cached_tokens_total;
            d["generated_tokens_total"] = mt.generated_tokens_total;
            d["draft_tokens_total"] = mt.draft_tokens_total;
            d["draft_accepted_total"] = mt.draft_accepted_total;
            d["decode_calls"] = mt.decode_calls;
            d["decode_seconds"] = mt.decode_seconds;
            d["busy_seconds"] = mt.busy_seconds;
            d["slots_busy"] = mt.slots_busy;
            d["slots_total"] = mt.slots_total;
            d["queue_depth"] = mt.queue_depth;
            d["n_threads"] = mt.n_threads;
            d["n_threads_batch"] = mt.n_threads_batch;
            d["cpu_busy_elsewhere"] = mt.cpu_busy_elsewhere;
            d["thread_changes_total"] = mt.thread_changes_total;
            d["threads_apart"] = mt.threads_apart;
            d["step_threads"] = mt.step_threads;
            d["prompt_cache_bytes"] = mt.prompt_cache_bytes;
            d["prompt_cache_prompts"] = mt.prompt_cache_prompts;
            return d;
        }, "The counters as a dict (for JSON and /metrics).");
}

}  // namespace jan
