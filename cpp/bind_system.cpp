#include <pybind11/stl.h>

#include "bind_common.h"
#include "ggml-backend.h"
#include "gguf_layers.h"
#include "json_scan.h"
#include "llama.h"
#include "model.h"
#include "step_threads.h"
#include "thread_governor.h"

#ifndef JAN_LLAMA_BUILD_COMMIT
#define JAN_LLAMA_BUILD_COMMIT "unknown"
#endif
#ifndef JAN_LLAMA_VERSION
#define JAN_LLAMA_VERSION "unknown"
#endif

namespace jan {

void register_system(py::module_ & m) {
    m.def("json_values", [](const py::buffer & text) {
        py::buffer_info info = text.request();  // (bytes, bytearray, memoryview: read in place, not copied)
        const auto * data = static_cast<const char *>(info.ptr);
        const auto n = static_cast<std::size_t>(info.size * info.itemsize);
        gil_released release;  // a 16 MiB body takes ~10 ms: other threads (the event loop) run meanwhile
        return json_values_outside_strings(data, n);
    }, py::arg("text"),
          "The commas and opening brackets outside strings of the JSON text `text` (bytes): about its number of "
          "values, counted without parsing it (json_scan.h).");
    m.def("threads_for", &ThreadGovernor::threads_for, py::arg("configured"), py::arg("free_cores"),
          "The thread governor's rule (thread_governor.h): threads for a step when `free_cores` cores are left free "
          "by other work, between 1 and `configured`.");
    m.def("threads_for_work", &threads_for_work, py::arg("work"), py::arg("n_max"),
          "Threads a decode step of `work` multiply-adds is worth, between 1 and `n_max` (step_threads.h).");
    m.def("token_work", &token_work, py::arg("n_params"), py::arg("n_layer"), py::arg("n_embd"), py::arg("n_cells"),
          "Multiply-adds of one token of a model of `n_params` parameters attending to `n_cells` KV cells "
          "(step_threads.h).");
    m.def("gguf_layer_bytes", [](const std::string & path) {
        LayerBytes b;
        {
            gil_released release;  // a header read: file I/O
            b = gguf_layer_bytes(path);
        }
        py::dict d;
        d["layers"] = b.layers;
        d["output"] = b.output;
        d["token_embd"] = b.token_embd;
        d["other"] = b.other;
        d["output_tied"] = b.output_tied;
        return d;
    }, py::arg("path"),
          "Bytes of a GGUF file's weights by llama.cpp's layer (gguf_layers.h): {layers: [bytes of blk.<i>], output, "
          "token_embd, other, output_tied}. RuntimeError when its header cannot be read.");
    m.def("extra_buffers_by_default", &extra_buffers_by_default,
          "Whether a model loaded with extra_buffers=None uses llama.cpp's extra CPU weight buffers (repacked "
          "quants): not on a CPU with AMX ones, whose matmul crashes off the main thread (cpp/model.cpp).");
    m.def("numa_init", [](int strategy) {
        // llama.cpp's: 1 distribute, 2 isolate, 3 numactl (ggml_numa_strategy); ggml keeps the first a process asks
        if (strategy < 1 || strategy > 3) throw std::invalid_argument("numa: must be 1 (distribute), 2 (isolate) or 3 (numactl)");
        ensure_backend_initialized();
        llama_numa_init((ggml_numa_strategy)strategy);
    }, py::arg("strategy"),
          "Initialize llama.cpp's NUMA placement once, before any model loads (llama-bench's --numa). ValueError "
          "for a strategy outside 1-3.");
    m.def("system_info", [] {
        ensure_backend_initialized();
        py::dict info;
        info["llama_cpp_python_version"] = JAN_LLAMA_CPP_PYTHON_VERSION;
        info["llama_cpp_version"] = JAN_LLAMA_VERSION;
        info["llama_cpp_commit"] = JAN_LLAMA_BUILD_COMMIT;
        info["cpu_features"] = std::string(llama_print_system_info());
        info["supports_gpu_offload"] = llama_supports_gpu_offload();
        info["supports_mmap"] = llama_supports_mmap();
        info["supports_mlock"] = llama_supports_mlock();
        info["max_devices"] = llama_max_devices();
        py::list backends;
        for (size_t i = 0; i < ggml_backend_reg_count(); ++i)
            backends.append(std::string(ggml_backend_reg_name(ggml_backend_reg_get(i))));
        info["backends"] = backends;
        py::list devices;
        for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
            ggml_backend_dev_t dev = ggml_backend_dev_get(i);
            size_t free = 0, total = 0;
            ggml_backend_dev_memory(dev, &free, &total);
            const auto type = ggml_backend_dev_type(dev);
            py::dict d;
            d["name"] = std::string(ggml_backend_dev_name(dev));
            d["description"] = std::string(ggml_backend_dev_description(dev));
            d["type"] = type == GGML_BACKEND_DEVICE_TYPE_CPU ? "cpu"
                        : type == GGML_BACKEND_DEVICE_TYPE_GPU ? "gpu"
                        : type == GGML_BACKEND_DEVICE_TYPE_ACCEL ? "accel" : "other";
            d["memory_free"] = free;
            d["memory_total"] = total;
            devices.append(d);
        }
        info["devices"] = devices;
        return info;
    }, "llama.cpp version and build, compiled backends and devices, CPU features.");
}

}  // namespace jan
