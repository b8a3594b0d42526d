#include "log_sink.h"

#include <deque>
#include <mutex>

#include "ggml.h"
#include "llama.h"

namespace jan {

struct ThreadErrorCaptureAccess {
    static void add(ThreadErrorCapture & c, std::string line) { c.lines_.push_back(std::move(line)); }
};

namespace {

constexpr size_t kMaxBufferedRecords = 4096;  // a forgotten drain must not grow without bound

std::mutex g_mutex;
std::deque<LogRecord> g_records;
std::string g_partial;        // llama.cpp emits lines in fragments
int g_partial_level = GGML_LOG_LEVEL_INFO;
thread_local int t_callers_data = 0;  // CallersDataLogScope objects alive on this thread
thread_local ThreadErrorCapture * t_capture = nullptr;  // the innermost one alive on this thread

void push_line(int level, std::string line) {
    if (line.empty()) return;
    if (g_records.size() >= kMaxBufferedRecords) g_records.pop_front();
    g_records.push_back({level, std::move(line)});
}

void on_log(enum ggml_log_level level, const char * text, void * /*user_data*/) {
    if (text == nullptr) return;
    std::lock_guard<std::mutex> lock(g_mutex);
    bool captured = false;
    if (level == GGML_LOG_LEVEL_ERROR && t_capture != nullptr) {
        // (a line of its own: llama.cpp's error lines come whole, newline included)
        std::string line(text);
        while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
        if (!line.empty()) ThreadErrorCaptureAccess::add(*t_capture, line);
        captured = true;
    }
    if (level == GGML_LOG_LEVEL_ERROR && (t_callers_data > 0 || captured)) level = GGML_LOG_LEVEL_INFO;
    if (level != GGML_LOG_LEVEL_CONT) g_partial_level = level;
    g_partial += text;
    size_t start = 0;
    for (size_t nl = g_partial.find('\n'); nl != std::string::npos; nl = g_partial.find('\n', start)) {
        push_line(g_partial_level, g_partial.substr(start, nl - start));
        start = nl + 1;
    }
    g_partial.erase(0, start);
}

}  // namespace

void install_log_sink() {
    llama_log_set(on_log, nullptr);
}

ggml_log_callback log_sink_callback() { return on_log; }

CallersDataLogScope::CallersDataLogScope() { ++t_callers_data; }
CallersDataLogScope::~CallersDataLogScope() { --t_callers_data; }

ThreadErrorCapture::ThreadErrorCapture() : outer_(t_capture) { t_capture = this; }
ThreadErrorCapture::~ThreadErrorCapture() { t_capture = outer_; }

std::vector<LogRecord> drain_logs() {
    std::lock_guard<std::mutex> lock(g_mutex);
    std::vector<LogRecord> out(std::make_move_iterator(g_records.begin()),
                               std::make_move_iterator(g_records.end()));
    g_records.clear();
    return out;
}

}  // namespace jan
