#include "thread_governor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <ctime>

#include <atomic>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#ifdef __linux__
#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>
#endif

namespace jan {

namespace {

#ifdef __linux__
// Calls fn(tid, comm, rest) for each thread of this process, from /proc/self/task/<tid>/stat ("tid (comm)
// state ppid ...", proc(5)): `comm` is the thread's name, `rest` points at the state field. Threads that
// end meanwhile are skipped.
template <typename Fn> void for_each_own_thread(Fn && fn) {
    DIR * dir = opendir("/proc/self/task");
    if (!dir) return;
    char path[64];
    char buf[512];
    while (const dirent * entry = readdir(dir)) {
        if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
        std::snprintf(path, sizeof path, "/proc/self/task/%s/stat", entry->d_name);
        FILE * f = std::fopen(path, "re");
        if (!f) continue;
        const size_t n = std::fread(buf, 1, sizeof buf - 1, f);
        std::fclose(f);
        buf[n] = '\0';
        const char * open = std::strchr(buf, '(');
        const char * close = std::strrchr(buf, ')');
        if (!open || !close || close < open || close[1] != ' ') continue;
        fn((pid_t)std::atoi(entry->d_name), std::string_view(open + 1, (size_t)(close - open - 1)), close + 2);
    }
    closedir(dir);
}

// CPU seconds of this process's threads whose name is `name` (utime and stime, in USER_HZ ticks, are
// the 12th and 13th fields from the state on).
double threads_cpu_seconds(const std::string & name, double tick_s) {
    unsigned long long ticks = 0;
    for_each_own_thread([&](pid_t, std::string_view comm, const char * rest) {
        if (comm != name) return;
        // state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime
        unsigned long long utime = 0, stime = 0;
        if (std::sscanf(rest, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) == 2)
            ticks += utime + stime;
    });
    return (double)ticks * tick_s;
}

// Threads of this process runnable right now (state 'R'), the caller included; with a `team` name, only
// that team's.
int own_running_threads(const std::string * team) {
    int running = 0;
    for_each_own_thread([&](pid_t, std::string_view comm, const char * rest) {
        running += rest[0] == 'R' && (!team || comm == *team);
    });
    return std::max(running, 1);
}

// Tasks runnable on the whole machine right now: /proc/loadavg's fourth field, "running/total" (proc(5)).
int machine_running_tasks() {
    FILE * f = std::fopen("/proc/loadavg", "re");
    if (!f) return -1;
    int running = -1;
    if (std::fscanf(f, "%*f %*f %*f %d/", &running) != 1) running = -1;
    std::fclose(f);
    return running;
}
#endif

#ifdef __linux__
bool set_thread_cpus(pid_t tid, const std::vector<int> & cpus) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int c : cpus) CPU_SET(c, &set);
    return sched_setaffinity(tid, sizeof(set), &set) == 0;
}
#endif

}  // namespace

std::string ThreadGovernor::next_thread_name(const char * prefix) {
    static std::atomic<unsigned> counter{0};
    return std::string(prefix).substr(0, 7) + "-" + std::to_string(counter.fetch_add(1) % 10000000u);
}

ScopedThreadName::ScopedThreadName(const std::string & name) {
#ifdef __linux__
    restore_ = pthread_getname_np(pthread_self(), saved_, sizeof saved_) == 0 &&
               pthread_setname_np(pthread_self(), name.c_str()) == 0;
#else
    (void)name;
#endif
}

ScopedThreadName::~ScopedThreadName() {
#ifdef __linux__
    if (restore_) pthread_setname_np(pthread_self(), saved_);
#endif
}

ThreadGovernor::ThreadGovernor(int32_t n_threads, int32_t n_threads_batch, bool adaptive,
                               std::string compute_thread_name)
    : configured_(std::max(1, n_threads)),
      configured_batch_(std::max(1, n_threads_batch)),
      n_threads_(configured_),
      n_threads_batch_(configured_batch_),
      thread_name_(std::move(compute_thread_name)) {
#ifdef __linux__
    cpu_set_t set;
    CPU_ZERO(&set);
    if (adaptive && sched_getaffinity(0, sizeof(set), &set) == 0) {
        for (int c = 0; c < CPU_SETSIZE; ++c)
            if (CPU_ISSET(c, &set)) cpus_.push_back(c);
        const long hz = sysconf(_SC_CLK_TCK);
        if (hz > 0) tick_s_ = 1.0 / (double)hz;
    }
    // One thread has nothing to give back.
    adaptive_ = adaptive && !cpus_.empty() && std::max(configured_, configured_batch_) > 1;
    static std::atomic<unsigned> governors{0};  // where this one's threads start when kept apart
    first_cpu_ = cpus_.empty() ? 0 : (int)((governors.fetch_add(1) * (unsigned)configured_) % cpus_.size());
#else
    (void)adaptive;
#endif
}

int32_t ThreadGovernor::threads_for(int32_t configured, double free_cores) {
    const double rounded = std::floor(free_cores + 0.5);
    return (int32_t)std::clamp<double>(rounded, 1.0, (double)std::max(1, configured));
}

ThreadGovernor::Sample ThreadGovernor::sample(Clock::time_point now) const {
    Sample s;
    s.at = now;
#ifdef __linux__
    if (thread_name_.empty()) {
        timespec ts{};
        if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0) return s;
        s.self_s = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    } else {
        s.self_s = threads_cpu_seconds(thread_name_, tick_s_);
    }
    // The per-CPU lines come first in /proc/stat, one per online CPU: "cpuN user nice system idle
    // iowait irq softirq steal guest guest_nice" in USER_HZ ticks (proc(5); guest time is already
    // inside user). Parsed by hand: it is read up to five times a second on the engine thread.
    FILE * f = std::fopen("/proc/stat", "re");
    if (!f) return s;
    char line[512];
    size_t next = 0;  // cpus_ is sorted
    unsigned long long busy = 0, steal = 0;
    while (next < cpus_.size() && std::fgets(line, sizeof line, f)) {
        if (std::strncmp(line, "cpu", 3) != 0) break;
        if (line[3] < '0' || line[3] > '9') continue;  // the all-CPUs line ("cpu  ...")
        int cpu = -1;
        unsigned long long v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        if (std::sscanf(line, "cpu%d %llu %llu %llu %llu %llu %llu %llu %llu", &cpu, &v[0], &v[1], &v[2], &v[3],
                        &v[4], &v[5], &v[6], &v[7]) < 5)
            continue;
        while (next < cpus_.size() && cpus_[next] < cpu) ++next;
        if (next < cpus_.size() && cpus_[next] == cpu) {
            busy += v[0] + v[1] + v[2] + v[5] + v[6] + v[7];  // not idle (v[3]) nor iowait (v[4])
            steal += v[7];
            ++next;
        }
    }
    std::fclose(f);
    s.cpus_busy_s = (double)busy * tick_s_;
    s.steal_s = (double)steal * tick_s_;
    s.ok = true;
#endif
    return s;
}

double ThreadGovernor::others_running_now(int readings, bool own_team_only) const {
#ifdef __linux__
    // jan's own threads are left out (at a resume: the ones that handed this work over are about to
    // block; with `own_team_only`, only this governor's compute threads, when the rest may be load). So is,
    // usually, the process that sent the request (it is still sending, then waits for the answer): the
    // least of three readings half a millisecond apart counts what stays runnable, as a CPU-bound
    // process does. In a container on a large host /proc/loadavg counts the host's tasks: scaled to
    // the CPUs allowed.
    int least = -1;
    for (int i = 0; i < readings; ++i) {
        if (i) std::this_thread::sleep_for(std::chrono::microseconds(500));
        const int machine = machine_running_tasks();
        if (machine < 0) return -1;
        const int others =
            std::max(0, machine - own_running_threads(own_team_only && !thread_name_.empty() ? &thread_name_ : nullptr));
        least = least < 0 ? others : std::min(least, others);
        if (least == 0) break;
    }
    const double others = (double)least;
    const long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > (long)cpus_.size() ? others * (double)cpus_.size() / (double)online : others;
#else
    return -1;
#endif
}

bool ThreadGovernor::resume_now(Clock::time_point now) {
    const bool recent = last_.ok && now - last_.at <= kRecent;
    bool changed = false;
    if (n_threads_ < configured_ || n_threads_batch_ < configured_batch_) {
        // Fewer threads than configured, from a window that may have ended with a busy spell (another
        // server's benchmark, a build step) rather than a lasting load. If nothing else is runnable at
        // this instant, start with the count that allows; never fewer than the window's.
        const double others = others_running_now();
        if (others >= 0) {
            const double free_cores = (double)cpus_.size() - others;
            changed = set_counts(std::max(n_threads_, threads_for(configured_, free_cores)),
                                 std::max(n_threads_batch_, threads_for(configured_batch_, free_cores)));
            if (changed) busy_elsewhere_ = std::clamp(others, 0.0, (double)cpus_.size());
        }
    }
    recheck_due_ = n_threads_ < configured_ || n_threads_batch_ < configured_batch_;
    resumed_at_ = now;
    if (changed || !recent) {
        // A fresh window from now, short, so the first decision about the machine as it is now (or a
        // check of the optimistic count just taken) comes soon; the idle time is not averaged in.
        const Sample s = sample(now);
        if (s.ok) {
            last_ = s;
            next_after_ = kResumeWindow;
        }
    } else {
        // The count taken stands on the recent window; the next window must still start here, or a busy
        // spell that ended before this request (the window's tail) would be judged as happening during its
        // work: a 1,450-token prompt right after llama-server's lost a thread after its first batch. The
        // sample is taken at the next update (after this step: the first token does not wait for it).
        baseline_due_ = true;
    }
    return changed;
}

bool ThreadGovernor::recheck_after_resume(Clock::time_point now) {
    if (!recheck_due_) return false;
    recheck_due_ = false;
    if (now - resumed_at_ > kResumeWindow) return false;  // the window's own reading is near anyway
    // others_running_now's readings are 0.5 ms apart, and it stops at the first that finds nothing else
    // runnable: a machine that stays busy costs the whole span, once, before a step of many tokens.
    const int readings = 1 + (int)(kRecheckSpan / std::chrono::microseconds(500));
    const double others = others_running_now(readings);
    if (others < 0) return false;
    const double free_cores = (double)cpus_.size() - others;
    const bool changed = set_counts(std::max(n_threads_, threads_for(configured_, free_cores)),
                                    std::max(n_threads_batch_, threads_for(configured_batch_, free_cores)));
    if (changed) busy_elsewhere_ = std::clamp(others, 0.0, (double)cpus_.size());
    return changed;
}

bool ThreadGovernor::update(Clock::time_point now) {
    if (!adaptive_) return false;
    if (resumed_) {
        resumed_ = false;
        if (last_.ok) return resume_now(now);
    }
    if (baseline_due_) {  // (resume_now) the window since the resume starts now
        baseline_due_ = false;
        const Sample s = sample(now);
        if (s.ok) {
            last_ = s;
            next_after_ = kResumeWindow;
        }
        return false;
    }
    if (last_.ok && now - last_.at < next_after_) return false;
    const Sample s = sample(now);
    if (!s.ok) return false;
    const Sample prev = last_;
    last_ = s;
    next_after_ = kInterval;
    if (!prev.ok) return false;
    const double wall = std::chrono::duration<double>(s.at - prev.at).count();
    if (wall <= 0) return false;
    const double elsewhere = ((s.cpus_busy_s - prev.cpus_busy_s) - (s.self_s - prev.self_s)) / wall;
    busy_elsewhere_ = std::clamp(elsewhere, 0.0, (double)cpus_.size());
    const double free_cores = (double)cpus_.size() - busy_elsewhere_;
    int32_t n = threads_for(configured_, free_cores);
    int32_t nb = threads_for(configured_batch_, free_cores);
    if (n != n_threads_ || nb != n_threads_batch_) {
        // A window's share cannot tell work that comes in bursts from a process that computes all along:
        // the event loop and a client reading 8 streams of stories260K at ~3,000 t/s kept 0.4-0.6 cores
        // busy, so the model went down to 1 thread (0.8x llama-server, where 2 threads gave 1.0x); and a
        // CPU-bound process sharing a core with one of two threads held apart got ~0.5 of it, which reads
        // as a free core. What stays runnable tells them apart: the count changes only as far as the
        // tasks runnable now (other than this team) agree with the window, down or up.
        const double others = others_running_now(3, /*own_team_only=*/true);
        if (others >= 0) {
            // (time the host took from this VM's CPUs shows as no task here: it counts from the window)
            const double steal = std::max(0.0, (s.steal_s - prev.steal_s) / wall);
            const double free_now = (double)cpus_.size() - others - steal;
            const int32_t n_now = threads_for(configured_, free_now);
            const int32_t nb_now = threads_for(configured_batch_, free_now);
            n = n < n_threads_ ? std::min(n_threads_, std::max(n, n_now)) : std::max(n_threads_, std::min(n, n_now));
            nb = nb < n_threads_batch_ ? std::min(n_threads_batch_, std::max(nb, nb_now))
                                       : std::max(n_threads_batch_, std::min(nb, nb_now));
        }
    }
    return set_counts(n, nb);
}

bool ThreadGovernor::set_counts(int32_t n, int32_t nb) {
    if (n == n_threads_ && nb == n_threads_batch_) return false;
    n_threads_ = n;
    n_threads_batch_ = nb;
    ++changes_;
    return true;
}

void ThreadGovernor::place_threads(bool oversubscribed, Clock::time_point now) {
#ifdef __linux__
    if (!adaptive_ || thread_name_.empty()) return;
    // Apart only while the rest leave a core free: with every core busy each thread shares its CPU with
    // another process either way, and the kernel may as well place them (2 CPU-bound processes on 2
    // cores: 39-87 t/s held apart, 60-77 with adaptive_threads off; "always" keeps ~350 on one thread).
    if (!oversubscribed || (double)cpus_.size() - busy_elsewhere_ < 0.5) {
        if (!apart_.empty() && now - last_oversubscribed_ >= kInterval) {
            for (int tid : apart_) set_thread_cpus(tid, cpus_);  // ended threads: ESRCH, nothing to undo
            apart_.clear();
        }
        return;
    }
    last_oversubscribed_ = now;
    if (!apart_.empty() && now - placed_at_ < kInterval) return;
    placed_at_ = now;
    // The team: the engine thread and the OpenMP workers it started (they carry its name). A team
    // that grew since the last look has threads nobody placed yet.
    std::vector<int> team;
    for_each_own_thread([&](pid_t tid, std::string_view comm, const char *) {
        if (comm == thread_name_) team.push_back(tid);
    });
    std::sort(team.begin(), team.end());
    if (team.empty() || team == apart_) return;
    // k threads on m CPUs: k <= m gives each thread its own run of m/k CPUs (the kernel may still
    // move it within the run); more threads than CPUs go round the CPUs.
    const size_t m = cpus_.size();
    const size_t k = team.size();
    std::vector<int> mine;
    for (size_t i = 0; i < k; ++i) {
        mine.clear();
        const size_t from = k <= m ? i * m / k : i % m;
        const size_t to = k <= m ? (i + 1) * m / k : from + 1;
        for (size_t c = from; c < to; ++c) mine.push_back(cpus_[(first_cpu_ + c) % m]);
        set_thread_cpus(team[i], mine);
    }
    apart_ = std::move(team);
#else
    (void)oversubscribed;
    (void)now;
#endif
}

}  // namespace jan
