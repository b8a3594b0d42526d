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

// While one lives, the lines this thread logs at ERROR are kept at INFO: for decoding a caller's data (libmtmd's
// audio decoder says "Unable to read WAV audio file from buffer"), whose failure is the caller's error, raised
// with its reason, not the server's (an ERROR line in its log each time a client sends a damaged clip).
class CallersDataLogScope {
  public:
    CallersDataLogScope();
    ~CallersDataLogScope();
    CallersDataLogScope(const CallersDataLogScope &) = delete;
    CallersDataLogScope & operator=(const CallersDataLogScope &) = delete;
};

// While one lives, the ERROR lines this thread logs are also kept in it (and go to the log at INFO): for a load of
// the caller's file whose failure llama.cpp only logs (a LoRA adapter's init returns nullptr, its reason is a log
// line), so that the exception carries the reason itself, whatever other threads log meanwhile.
class ThreadErrorCapture {
  public:
    ThreadErrorCapture();
    ~ThreadErrorCapture();
    ThreadErrorCapture(const ThreadErrorCapture &) = delete;
    ThreadErrorCapture & operator=(const ThreadErrorCapture &) = delete;
    const std::vector<std::string> & lines() const { return lines_; }

  private:
    friend struct ThreadErrorCaptureAccess;
    std::vector<std::string> lines_;
    ThreadErrorCapture * outer_ = nullptr;
};

}  // namespace jan
