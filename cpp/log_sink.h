// llama.cpp/ggml log lines are collected here instead of going to stderr.
// The callback never touches Python (it can fire on the engine thread, where
// taking the GIL could deadlock against a Python thread joining it); Python
// drains the buffer and forwards each line to the `logging` module.
#pragma once

#include <string>
#include <vector>

#include "ggml.h"

namespace jan {

struct LogRecord {
    int level;  // ggml_log_level
    std::string text;
};

void install_log_sink();
// The sink itself, for libraries with their own logger (libmtmd).
ggml_log_callback log_sink_callback();
std::vector<LogRecord> drain_logs();

}  // namespace jan
