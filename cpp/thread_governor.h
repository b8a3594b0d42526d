// How many threads each llama_decode may use while other processes keep cores busy.
//
// Why: llama.cpp's CPU backend runs a graph on OpenMP threads that meet at a
// barrier after every op and spin there. When another process holds one of
// the cores, the thread that lost its core holds up the rest, which spin
// through their time slices: on a 2-core machine with one CPU-bound process
// beside it, 2-thread decoding of stories260K fell from ~2,300 to 25 t/s
// (issue 16), while 1 thread kept 0.8-0.9x its quiet speed. Passive OpenMP
// waiting (OMP_WAIT_POLICY, GOMP_SPINCOUNT=0) avoids the collapse but costs up
// to 90% on a quiet machine, so the thread count adapts instead; a shorter spin
// (jan/engine/openmp.py: 30,000, not libgomp's 300,000) keeps the quiet speed
// and softens what is left (steps that must keep every thread, every core busy).
//
// How: at most every `kInterval` (checked before a decode, and for a while
// after the model goes idle; see below), the governor reads the busy time of
// the CPUs this process may run on (/proc/stat, user+nice+system+irq+softirq+
// steal) and subtracts
// what its own compute threads used: the threads named `compute_thread_name`
// (a scheduler names its engine thread, and the OpenMP workers that thread
// starts inherit the name), from /proc/self/task/*/stat. What is left is what
// everything else used, in cores: other processes, in a VM the host ("steal"),
// and jan's own other threads — another model's engine, an embedding, the
// event loop. The embedder computes on its caller's thread, so it names that
// thread for the call (ScopedThreadName). Without a name the whole process's
// CPU time is subtracted instead. Threads = the free cores rounded to nearest,
// between 1 and the configured count: a core counts as taken once the rest
// use more than half of it, so light background work changes nothing.
// A window's share alone cannot tell work that comes in bursts from a process
// that computes all along: the event loop and a client reading 8 streams of
// stories260K at ~3,000 t/s kept 0.4-0.6 cores busy, which took the model to
// 1 thread (0.8x llama-server, where 2 threads gave 1.0x); and a CPU-bound
// process sharing a core with one of two threads held apart (below) got ~0.5
// of it, which reads as a free core. So a change the window asks for is made
// only as far as the tasks runnable at that instant agree (others_running_now:
// the least of up to three readings 0.5 ms apart, this team left out, the
// host's steal over the window added): bursts mostly read as nothing there, a
// CPU-bound process as one core.
// A model keeps sampling for kIdleSamples intervals after it goes idle (the
// scheduler wakes for it), so a request that follows within ~2 s starts
// from a reading of the last 200 ms rather than from an average over the
// idle time. A window still lags: a busy spell that ended just before the
// request (in the benchmark, llama-server's turn) would hold it to fewer
// threads for up to 200 ms (a 1,450-token prompt: 316 vs 166 ms). So a
// model that resumes with fewer threads than configured looks at the
// tasks runnable at that instant (/proc/loadavg, less jan's own running
// threads, which handed the work over and are about to block): when they
// leave cores free it starts with more threads, never with fewer than the
// window said, and a short first window (kResumeWindow) checks it.
// Subtracting the compute threads' own time (spinning included) keeps the
// decision free of feedback: using fewer threads does not change what the
// rest uses.
//
// Outputs: the CPU matmuls, norms and row-wise attention give the same result
// for any thread count; flash attention's split-KV path (one-token batches
// over >= 512 KV cells, ggml-cpu ops.cpp) sums per-thread chunks, so there
// fewer threads would change what is generated. For requests whose output is
// meant to come out the same again (greedy, or a seed the caller chose) the
// scheduler keeps the configured count on exactly those steps
// (Scheduler::thread_count_matters): their output is the same under any load
// (tests/test_thread_governor.py). A sampled request with a seed nobody chose
// adapts on every step. ContextParams::exact_threads = false ("always" in
// Python) adapts every request's steps: fastest under load, but a long lone
// greedy generation may then differ. A draft model's context (speculative
// decoding) keeps its count in "exact" mode: other drafts make other target
// batches (Scheduler::adapt_threads).
//
// Keeping a team apart: a step that runs more threads than the free cores (the
// configured count kept on the steps above, or a draft model's in "exact") has
// two of them share a core whenever the kernel puts them together, the other
// core running the other process; every barrier then waits for a time slice.
// Greedy stories260K past 256 cached tokens with one CPU-bound process beside
// it on 2 cores: 49-53 t/s against ~600 quiet. With each thread of the team
// held to its own CPUs (sched_setaffinity, place_threads) the thread sharing a
// CPU with the other process runs in whole slices while the rest wait at most
// one: 290-530 t/s, same thread count, same output. Only while the rest leave
// a core free: with every core busy each thread shares a CPU either way. The
// team is let go kInterval after its last such step, so on a quiet machine the
// kernel places every thread as before.
//
// Linux only (reads /proc); elsewhere the configured count is kept.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace jan {

class ThreadGovernor {
public:
    using Clock = std::chrono::steady_clock;
    static constexpr std::chrono::milliseconds kInterval{200};
    // Samples a model takes at kInterval after going idle (see above), and the oldest sample a
    // resumed model still builds on; past that, the first window back is kResumeWindow.
    static constexpr int kIdleSamples = 10;
    static constexpr std::chrono::milliseconds kRecent{2 * kInterval};
    static constexpr std::chrono::milliseconds kResumeWindow{50};

    // `n_threads`/`n_threads_batch`: the configured counts (>= 1), used on a
    // quiet machine; `adaptive` false keeps them always. `compute_thread_name`:
    // see above ("" : the whole process counts as its own).
    ThreadGovernor(int32_t n_threads, int32_t n_threads_batch, bool adaptive, std::string compute_thread_name = {});

    // A name for a new set of compute threads (at most 15 characters, unique in this process):
    // "<prefix>-<n>", prefix up to 7 characters ("jan-gen", "jan-emb").
    static std::string next_thread_name(const char * prefix);

    // Samples when the current window (kInterval, or kResumeWindow right after a resume) has passed
    // since the last sample; true when the counts changed (the caller then calls llama_set_n_threads).
    bool update(Clock::time_point now);
    // The model has work again after being idle; the next update handles it (see above).
    void resume() { resumed_ = true; }
    // Right after a resume that kept fewer threads than configured, for a step worth waiting for (a long
    // prompt batch): look at the runnable tasks again for up to kRecheckSpan, since what looked busy may be
    // another process's OpenMP threads spinning out after its own burst (libgomp's default spin lasts a
    // few milliseconds) — a 1,450-token prompt right after llama-server's took 1.6x its time on one
    // thread. Raises the counts if cores are free now (never lowers them); true when they changed.
    // Once per resume; false (no wait) otherwise.
    bool recheck_after_resume(Clock::time_point now);
    static constexpr std::chrono::milliseconds kRecheckSpan{4};

    bool adaptive() const { return adaptive_; }
    int32_t n_threads() const { return n_threads_; }
    int32_t configured_threads() const { return configured_; }
    int32_t n_threads_batch() const { return n_threads_batch_; }
    // After a step: `oversubscribed` says whether it ran more threads than the governor's count (see
    // "Keeping a team apart" above). Holds the team (the threads named compute_thread_name) to
    // different CPUs while such steps run, lets it go kInterval after the last one. The thread list is
    // read at most every kInterval; other calls cost a comparison.
    void place_threads(bool oversubscribed, Clock::time_point now);
    // Threads held apart now (0: none).
    int32_t threads_apart() const { return (int32_t)apart_.size(); }

    // Cores other processes kept busy over the last interval (0 before the first, or when not adaptive).
    double cpu_busy_elsewhere() const { return busy_elsewhere_; }
    // Times the counts changed since start.
    uint64_t changes() const { return changes_; }

    // The rule, alone (for tests): threads for `configured` when `free_cores` are free.
    static int32_t threads_for(int32_t configured, double free_cores);

private:
    struct Sample {
        Clock::time_point at;
        double cpus_busy_s = 0;  // busy seconds of the allowed CPUs, summed
        double steal_s = 0;      // of which taken by the host (a VM's "steal")
        double self_s = 0;       // CPU seconds of this governor's compute threads (or of the process)
        bool ok = false;
    };
    Sample sample(Clock::time_point now) const;
    // Other tasks runnable this instant, in cores of this process's CPUs (-1: unknown): other processes',
    // and with `own_team_only` this process's threads other than this governor's team too. The least
    // of `readings` 0.5 ms apart, so work that comes in bursts mostly reads as nothing.
    double others_running_now(int readings = 3, bool own_team_only = false) const;
    bool resume_now(Clock::time_point now);
    bool set_counts(int32_t n, int32_t nb);  // true (and counted in changes_) when they differ

    int32_t configured_ = 1;
    int32_t configured_batch_ = 1;
    int32_t n_threads_ = 1;
    int32_t n_threads_batch_ = 1;
    bool adaptive_ = false;
    std::vector<int> cpus_;  // the CPUs this process may run on (sched_getaffinity)
    double tick_s_ = 0.01;   // one /proc/stat unit (USER_HZ)
    std::string thread_name_;
    Sample last_;
    double busy_elsewhere_ = 0;
    uint64_t changes_ = 0;
    bool resumed_ = false;
    bool recheck_due_ = false;  // resumed with fewer threads than configured (recheck_after_resume)
    bool baseline_due_ = false;  // resumed on a recent window: the next update starts a fresh one
    Clock::time_point resumed_at_{};
    std::chrono::milliseconds next_after_{kInterval};  // the current window's length
    std::vector<int> apart_;  // thread ids held to their own CPUs, sorted (place_threads)
    int first_cpu_ = 0;       // index into cpus_ where this governor's team starts (models spread out)
    Clock::time_point placed_at_{};
    Clock::time_point last_oversubscribed_{};
};

// Names the calling thread for a scope (Linux), then gives it back its name. OpenMP workers take
// their name from the thread that first starts them (a pool per thread), so a caller's workers keep
// the name of the first embedder it ran: they then count as another's load, which is the safe side.
class ScopedThreadName {
public:
    explicit ScopedThreadName(const std::string & name);
    ~ScopedThreadName();
    ScopedThreadName(const ScopedThreadName &) = delete;
    ScopedThreadName & operator=(const ScopedThreadName &) = delete;

private:
    char saved_[16] = {0};
    bool restore_ = false;
};

}  // namespace jan
