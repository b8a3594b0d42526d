#include "request.h"

#include <cerrno>
#include <chrono>
#include <stdexcept>

#include <fcntl.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/eventfd.h>
#endif

namespace jan {

RequestState::RequestState() {
#if defined(__linux__)
    read_fd_ = write_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (read_fd_ < 0) throw std::runtime_error("eventfd failed");
#else
    int fds[2];
    if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
    for (int fd : fds) {
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    read_fd_ = fds[0];
    write_fd_ = fds[1];
#endif
}

RequestState::~RequestState() {
    if (read_fd_ >= 0) close(read_fd_);
    if (write_fd_ >= 0 && write_fd_ != read_fd_) close(write_fd_);
}

void RequestState::signal_locked() {
    if (!fd_enabled_ || fd_signalled_) return;
#if defined(__linux__)
    uint64_t one = 1;
    ssize_t r = write(write_fd_, &one, sizeof(one));
#else
    char one = 1;
    ssize_t r = write(write_fd_, &one, 1);
#endif
    (void)r;  // a full pipe already means "readable"
    fd_signalled_ = true;
}

void RequestState::clear_signal_locked() {
    if (!fd_signalled_) return;
    char buf[64];
    while (read(read_fd_, buf, sizeof(buf)) > 0) {
    }
    fd_signalled_ = false;
}

int RequestState::fileno() {
    std::lock_guard<std::mutex> lock(mutex_);
    fd_enabled_ = true;
    if (!events_.empty()) signal_locked();  // events that arrived before anyone watched
    return read_fd_;
}

void RequestState::push(Event && event) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (event.id_slot < 0) event.id_slot = id_slot_.load();
    if (event.final) finished_.store(true);
    if (!events_.empty() && !events_.back().final) {
        // The consumer has not drained yet: fold into the pending event, no wake-up needed.
        Event & last = events_.back();
        last.text += event.text;
        for (auto & t : event.tokens) last.tokens.push_back(std::move(t));
        for (auto & t : event.prompt_tokens) last.prompt_tokens.push_back(std::move(t));
        if (last.cached_tokens < 0) last.cached_tokens = event.cached_tokens;
        last.id_slot = event.id_slot;
        if (event.progress) {  // (the later event's counts and timings: the folded one tells where it got to)
            last.progress = true;
            last.usage = event.usage;
        }
        if (event.final) {
            last.final = true;
            last.finish_reason = std::move(event.finish_reason);
            last.error = std::move(event.error);
            last.stop_string = std::move(event.stop_string);
            last.usage = event.usage;
            if (final_waiters_ > 0) cv_.notify_all();
        }
        return;
    }
    // Wake only on empty -> non-empty: signals are under the same lock as the
    // consumer's take-and-clear, so a wake-up is never lost or left stale.
    const bool was_empty = events_.empty();
    const bool final = event.final;
    events_.push_back(std::move(event));
    if (was_empty) signal_locked();
    if ((was_empty && waiters_ > 0) || (final && final_waiters_ > 0)) cv_.notify_all();
}

std::vector<Event> RequestState::take_locked() {
    std::vector<Event> out(std::make_move_iterator(events_.begin()), std::make_move_iterator(events_.end()));
    events_.clear();
    clear_signal_locked();
    return out;
}

std::vector<Event> RequestState::drain() {
    std::lock_guard<std::mutex> lock(mutex_);
    return take_locked();
}

std::vector<Event> RequestState::wait(double timeout_s) {
    std::unique_lock<std::mutex> lock(mutex_);
    auto ready = [&] { return !events_.empty(); };
    ++waiters_;
    if (timeout_s < 0) {
        cv_.wait(lock, ready);
    } else {
        cv_.wait_for(lock, std::chrono::duration<double>(timeout_s), ready);
    }
    --waiters_;
    return take_locked();
}

std::vector<Event> RequestState::wait_final(double timeout_s) {
    // A caller that wants the whole result needs no per-token wake-ups: the
    // engine thread never pays for a context switch until the end.
    std::unique_lock<std::mutex> lock(mutex_);
    auto ready = [&] { return finished_.load(); };
    ++final_waiters_;
    if (timeout_s < 0) {
        cv_.wait(lock, ready);
    } else {
        cv_.wait_for(lock, std::chrono::duration<double>(timeout_s), ready);
    }
    --final_waiters_;
    return take_locked();
}

}  // namespace jan
