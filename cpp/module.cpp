// jan._engine: the native engine. Python reaches llama.cpp only through here.
#include "bind_common.h"

PYBIND11_MODULE(_engine, m) {
    m.doc() = "jan's native inference engine over llama.cpp (private; use the jan package)";
    jan::register_errors(m);
    jan::register_params(m);
    jan::register_model(m);
    jan::register_usage(m);
    jan::register_event(m);
    jan::register_metrics(m);
    jan::register_request(m);
    jan::register_lora(m);
    jan::register_scheduler(m);
    jan::register_embedder(m);
    jan::register_system(m);
    jan::register_media(m);
}
