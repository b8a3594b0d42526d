// What a running request produces, and the thread-safe queue that carries it
// from the engine thread to Python. The engine never touches Python objects:
// it appends to the queue and, when the queue goes from empty to non-empty,
// pokes a file descriptor that an asyncio loop can watch.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "sampling.h"

namespace jan {

struct GeneratedToken {
    int32_t id = 0;
    std::string piece;          // raw bytes of the token (may be part of a character)
    float logprob = 0.0f;       // only meaningful when log-probabilities were asked for
    std::vector<TokenLogprob> top;
};

struct Usage {
    int32_t prompt_tokens = 0;
    int32_t completion_tokens = 0;
    int32_t cached_tokens = 0;     // prompt tokens reused from the KV cache
    double queue_ms = 0.0;         // submit -> slot assigned
    double prompt_ms = 0.0;        // slot assigned -> first token sampled
    double generation_ms = 0.0;    // first token -> finish
    int32_t draft_tokens = 0;      // speculative decoding: tokens drafted
    int32_t draft_accepted = 0;    // and accepted (emitted without a decode step of their own)
};

struct Event {
    std::string text;                    // complete UTF-8 released since the last event
    std::vector<GeneratedToken> tokens;  // tokens sampled since the last event
    // SamplingParams::prompt_logprobs: prompt tokens evaluated since the last event, in order, each with
    // its log-probability given the ones before it (the first prompt token has none: NaN).
    std::vector<GeneratedToken> prompt_tokens;
    // On the event with a request's first generated token: prompt tokens the slot's KV cache already held
    // (reused, not evaluated), known before the final usage; -1 elsewhere.
    int32_t cached_tokens = -1;
    bool final = false;
    std::string finish_reason;           // stop | length | cancelled | error (final only)
    std::string error;                   // message when finish_reason == error
    std::string stop_string;             // the stop string that matched, if any
    Usage usage;                         // final; on a token event too where `progress` (below)
    // On an event with generated tokens: `usage` holds the request's counts and timings so far (llama-server's
    // timings_per_token reads them; one clock, the engine's, as the final usage's).
    bool progress = false;
    // The slot the request runs in (RequestState::set_slot stamps every event from then on); -1 before it
    // has one (a request cancelled while queued never gets one).
    int32_t id_slot = -1;
};

class RequestState {
public:
    RequestState();
    ~RequestState();
    RequestState(const RequestState &) = delete;
    RequestState & operator=(const RequestState &) = delete;

    // Engine side. Events queued but not yet drained are merged, so a slow
    // consumer gets fewer, larger events instead of an ever-longer queue.
    void push(Event && event);

    // Python side.
    std::vector<Event> drain();                     // never blocks
    std::vector<Event> wait(double timeout_s);      // blocks up to timeout (< 0: forever)
    std::vector<Event> wait_final(double timeout_s);  // same, but only wakes for the end
    int fileno();                                   // readable while events are queued (enables the fd)
    void cancel() { cancelled_.store(true); }
    bool cancelled() const { return cancelled_.load(); }
    // Asks the thinking budget's sampler (reasoning_budget.h), where the request has one, to close the thinking at
    // its next token, as a spent budget does (llama-server's "reasoning_end" control): the model answers now.
    void end_reasoning() { end_reasoning_->store(true); }
    // (shared with the sampler, which may outlive this state in a slot's chain)
    std::shared_ptr<std::atomic<bool>> end_reasoning_flag() const { return end_reasoning_; }
    bool finished() const { return finished_.load(); }
    // Engine side: the slot the request was given (every event pushed afterwards carries it as Event::id_slot).
    void set_slot(int32_t id) { id_slot_.store(id); }
    int32_t id_slot() const { return id_slot_.load(); }

private:
    void signal_locked();
    void clear_signal_locked();
    std::vector<Event> take_locked();

    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<Event> events_;
    std::atomic<bool> cancelled_{false};
    std::atomic<bool> finished_{false};
    std::atomic<int32_t> id_slot_{-1};
    std::shared_ptr<std::atomic<bool>> end_reasoning_ = std::make_shared<std::atomic<bool>>(false);
    // The descriptor costs a syscall or two per wake: only poke it once an
    // event loop asked for it, and only read it when it was poked.
    bool fd_enabled_ = false;
    bool fd_signalled_ = false;
    int waiters_ = 0;        // threads blocked in wait(): notify only when someone listens
    int final_waiters_ = 0;  // threads blocked in wait_final(): woken by the last event only
    int read_fd_ = -1;
    int write_fd_ = -1;
};

}  // namespace jan
