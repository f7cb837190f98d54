// tests/exactly_once_test.cpp — "exactly once under chaos": offloads over a
// thread pool and a process pool with random cancels, random wait_for
// timeouts, worker kills (a call that SIGKILLs its own worker, and a task that
// kills workers from outside) and shutdowns at random moments. Every awaiter
// must resolve exactly once, with an outcome that what happened allows;
// nothing may hang (a watchdog per round fails with a message), and no fd,
// child process or memfd may outlive a round. Built on the public API only.
//
// The normal case runs a small count; the hidden [.stress] case reads its
// count from OFFLOAD_CHAOS_OFFLOADS (default 1'000'000; its CTest entry sets a
// smaller one). OFFLOAD_CHAOS_SEED replays a run; the seed is printed.
#include <offload/process_pool.hpp>
#include <offload/run.hpp>
#include <offload/semaphore.hpp>
#include <offload/sleep.hpp>
#include <offload/task_handle.hpp>
#include <offload/thread_pool.hpp>
#include <offload/to_thread.hpp>
#include <offload/wait_for.hpp>

#include "pp_workers.hpp"
#include "proc_check.hpp"

#include <catch2/catch.hpp>
#include <fmt/core.h>

#include <array>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <dirent.h>
#include <filesystem>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <typeinfo>
#include <unistd.h>
#include <unordered_set>
#include <utility>
#include <vector>

using namespace offload;
using namespace std::chrono_literals;

namespace {

// --- what the offloaded calls do -------------------------------------------------

enum work_kind : int { immediate, spin, nap, throws, long_nap, suicide };

constexpr std::int64_t expected_value(std::int64_t id) { return id * 31 + 7; }

std::int64_t do_work(std::int64_t id, int kind, int us) {
    switch (kind) {
    case spin: {
        auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
        while (std::chrono::steady_clock::now() < until) {
        }
        break;
    }
    case nap:
    case long_nap: ::usleep(static_cast<useconds_t>(us)); break;
    case throws: throw std::runtime_error(fmt::format("chaos boom {}", id));
    case suicide: std::raise(SIGKILL); break; // process pool only: kills its own worker
    default: break;
    }
    return expected_value(id);
}

std::int64_t thread_work(std::int64_t id, int kind, int us) { return do_work(id, kind, us); }

// The same, but a nap ends early when the call is cancelled (its result is then dropped).
std::int64_t stoppable_thread_work(std::stop_token stop, std::int64_t id, int kind, int us) {
    if (kind != nap && kind != long_nap) return do_work(id, kind, us);
    auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
    while (!stop.stop_requested() && std::chrono::steady_clock::now() < until) ::usleep(50);
    return expected_value(id);
}

// The pid tells the test which workers are past startup (safe to kill from outside).
std::pair<std::int64_t, int> process_work(std::int64_t id, int kind, int us) {
    std::int64_t v = do_work(id, kind, us);
    return {v, static_cast<int>(::getpid())};
}

// --- the plan of one round ---------------------------------------------------------

std::uint64_t splitmix(std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

struct round_config {
    int index = 0;
    std::uint64_t seed = 0;
    std::int64_t first_id = 0;
    std::size_t offloads = 0;
    std::size_t window = 0; // offloads in flight at most
    std::size_t tp_workers = 1, tp_max_queued = 0;
    std::size_t pp_workers = 1, pp_max_tasks_per_child = 0;
    start_method pp_start = start_method::forkserver;
    std::optional<std::chrono::nanoseconds> pp_task_timeout;
    crash_policy pp_on_crash = crash_policy::respawn;
    int process_percent = 30;
    bool external_kills = false;
    // A shutdown at offload `shutdown_at` (none when shutdown_at >= offloads).
    std::size_t shutdown_at = SIZE_MAX;
    bool shut_tp = false, shut_pp = false, shut_wait = false, shut_cancel_pending = false, shut_from_thread = false;

    std::string describe() const {
        return fmt::format(
            "round {} (seed {}): {} offloads, window {}; thread_pool {} workers, max_queued {}; process_pool {} "
            "workers, {}, max_tasks_per_child {}, task_timeout {} us, {}; {}% to the process pool; external kills {}; "
            "shutdown {}",
            index, seed, offloads, window, tp_workers, tp_max_queued, pp_workers, offload::to_string(pp_start),
            pp_max_tasks_per_child,
            pp_task_timeout ? std::chrono::duration_cast<std::chrono::microseconds>(*pp_task_timeout).count() : 0,
            pp_on_crash == crash_policy::respawn ? "respawn" : "break_pool", process_percent,
            external_kills ? "on" : "off",
            shutdown_at < offloads
                ? fmt::format("at offload {} of {}{}, wait {}, cancel_pending {}, from {}", shutdown_at,
                              shut_tp ? "thread_pool" : "",
                              shut_pp ? (shut_tp ? " and process_pool" : "process_pool") : "", shut_wait,
                              shut_cancel_pending, shut_from_thread ? "another thread" : "the loop thread")
                : std::string("none"));
    }
};

// Features cycle with the round index (so that even a few rounds see each of
// them); the numbers are random.
round_config make_config(int index, std::uint64_t seed, std::int64_t first_id, std::size_t offloads) {
    std::mt19937_64 rng(seed);
    auto pick = [&rng](std::uint64_t lo, std::uint64_t hi) { return lo + rng() % (hi - lo + 1); };
    round_config c;
    c.index = index;
    c.seed = seed;
    c.first_id = first_id;
    c.offloads = offloads;
    c.window = pick(16, 256);
    c.tp_workers = pick(1, 4);
    c.tp_max_queued = rng() % 3 == 0 ? 0 : pick(1, 32);
    c.pp_workers = pick(1, 3);
    c.pp_start = index % 6 == 4 ? start_method::spawn : start_method::forkserver;
    // Each recycled worker costs a fork (more under ASan), a spawned one an exec
    // of this program: not too often.
    if (index % 3 == 1) c.pp_max_tasks_per_child = c.pp_start == start_method::spawn ? pick(16, 64) : pick(4, 64);
    if (index % 4 == 2) c.pp_task_timeout = std::chrono::microseconds(pick(2'000, 20'000));
    c.pp_on_crash = index % 8 == 5 ? crash_policy::break_pool : crash_policy::respawn;
    c.process_percent = static_cast<int>(pick(10, 50));
    c.external_kills = index % 2 == 1;
    if (index % 4 == 3 || rng() % 5 == 0) {
        c.shutdown_at = pick(0, offloads - 1);
        int which = static_cast<int>(rng() % 3);
        c.shut_tp = which != 1;
        c.shut_pp = which != 0;
        c.shut_wait = rng() % 2 == 0;
        c.shut_cancel_pending = rng() % 2 == 0;
        c.shut_from_thread = rng() % 2 == 0;
    }
    return c;
}

struct offload_spec {
    bool process = false;
    int kind = immediate;
    int us = 0;
    int wait_for_us = 0;      // 0: no wait_for
    int cancel_after_us = -1; // -1: never cancelled; 0: right after create_task
};

// Microseconds, log-uniform between 1 and `hi`.
int log_us(std::mt19937_64& rng, int hi) {
    double x = std::uniform_real_distribution<double>(0, std::log(static_cast<double>(hi)))(rng);
    return std::max(1, static_cast<int>(std::exp(x)));
}

offload_spec make_spec(std::mt19937_64& rng, const round_config& c) {
    offload_spec s;
    s.process = static_cast<int>(rng() % 100) < c.process_percent;
    int k = static_cast<int>(rng() % 1000);
    if (k < 400)
        s.kind = immediate;
    else if (k < 650)
        s.kind = spin, s.us = log_us(rng, 50);
    else if (k < 880)
        s.kind = nap, s.us = log_us(rng, 200);
    else if (k < 985)
        s.kind = throws;
    else if (k < 988)
        s.kind = long_nap, s.us = 20'000 + static_cast<int>(rng() % 20'000);
    else
        s.kind = s.process ? suicide : immediate; // 1.2% of process calls kill their worker
    if (rng() % 10 == 0) s.wait_for_us = log_us(rng, 3'000);
    if (rng() % 12 == 0) s.cancel_after_us = rng() % 4 == 0 ? 0 : log_us(rng, 2'000);
    return s;
}

// --- what happened to each offload -------------------------------------------------

enum class outcome : std::uint8_t {
    none,
    value,               // the call returned the expected value
    error,               // the call's own std::runtime_error, with its message
    cancelled,           // cancelled_error at the await
    cancelled_unstarted, // the awaiting task was cancelled before its first step
    timeout,             // timeout_error (wait_for, or the process pool's task_timeout)
    crashed,             // worker_crashed
    closed,              // executor_closed
    broken,              // broken_executor (a break_pool pool after a crash)
    wrong,               // anything else: a wrong value, a wrong error, another exception type
};
constexpr std::size_t outcome_count = 10;
constexpr std::array<const char*, outcome_count> outcome_names{
    "none",          "value",          "error",           "cancelled",       "cancelled before start",
    "timeout_error", "worker_crashed", "executor_closed", "broken_executor", "wrong"};

struct slot {
    std::uint8_t resolutions = 0;
    outcome first = outcome::none;
    outcome second = outcome::none;
    bool started = false;
    bool cancel_sent = false;
    bool closed_early = false; // executor_closed before any shutdown of that pool began
    int crash_signal = 0;
    std::string note; // what a `wrong` outcome was
};

struct round_state {
    explicit round_state(const round_config& c) : cfg(c), specs(c.offloads), slots(c.offloads) {
        std::mt19937_64 rng(splitmix(c.seed));
        for (auto& s : specs) s = make_spec(rng, c);
    }
    const round_config& cfg;
    std::vector<offload_spec> specs;
    std::vector<slot> slots;
    semaphore* window = nullptr;
    bool tp_shut = false, pp_shut = false; // set before the shutdown call starts
    bool stop_killer = false;
    std::unordered_set<int> ready_pids; // workers that answered a call: past startup
    std::size_t external_kills = 0;
    std::vector<std::size_t> hung; // offloads still unresolved when the watchdog fired

    void record(std::size_t i, outcome o, std::string note = {}) {
        slot& s = slots[i];
        if (s.resolutions == 0)
            s.first = o;
        else if (s.resolutions == 1)
            s.second = o;
        if (s.resolutions < 255) ++s.resolutions;
        if (!note.empty()) s.note = std::move(note);
    }
};

struct pools {
    thread_pool& tp;
    process_pool& pp;
};

// The awaiter under test: one offload, and how it ended.
task<> offload_one(round_state& r, std::size_t i, pools p) {
    r.slots[i].started = true;
    const offload_spec& s = r.specs[i];
    const std::int64_t id = r.cfg.first_id + static_cast<std::int64_t>(i);
    try {
        std::int64_t v = 0;
        if (s.process) {
            std::pair<std::int64_t, int> got;
            if (s.wait_for_us)
                got = co_await wait_for(run_in_executor(p.pp, &process_work, id, s.kind, s.us),
                                        std::chrono::microseconds(s.wait_for_us));
            else
                got = co_await run_in_executor(p.pp, &process_work, id, s.kind, s.us);
            r.ready_pids.insert(got.second);
            v = got.first;
        } else {
            if (s.wait_for_us && id % 2)
                v = co_await wait_for(run_in_executor(p.tp, &stoppable_thread_work, id, s.kind, s.us),
                                      std::chrono::microseconds(s.wait_for_us));
            else if (s.wait_for_us)
                v = co_await wait_for(run_in_executor(p.tp, &thread_work, id, s.kind, s.us),
                                      std::chrono::microseconds(s.wait_for_us));
            else if (id % 2)
                v = co_await run_in_executor(p.tp, &stoppable_thread_work, id, s.kind, s.us);
            else
                v = co_await run_in_executor(p.tp, &thread_work, id, s.kind, s.us);
        }
        if (v == expected_value(id))
            r.record(i, outcome::value);
        else
            r.record(i, outcome::wrong, fmt::format("value {} instead of {}", v, expected_value(id)));
    } catch (const cancelled_error&) {
        r.record(i, outcome::cancelled);
    } catch (const timeout_error&) {
        r.record(i, outcome::timeout);
    } catch (const worker_crashed& e) {
        r.slots[i].crash_signal = e.signal();
        r.record(i, outcome::crashed);
    } catch (const executor_closed&) {
        if (!(s.process ? r.pp_shut : r.tp_shut)) r.slots[i].closed_early = true;
        r.record(i, outcome::closed);
    } catch (const broken_executor&) {
        r.record(i, outcome::broken);
    } catch (const std::runtime_error& e) {
        if (typeid(e) == typeid(std::runtime_error) && e.what() == fmt::format("chaos boom {}", id))
            r.record(i, outcome::error);
        else
            r.record(i, outcome::wrong, fmt::format("{}: {}", typeid(e).name(), e.what()));
    } catch (const std::exception& e) {
        r.record(i, outcome::wrong, fmt::format("{}: {}", typeid(e).name(), e.what()));
    } catch (...) {
        r.record(i, outcome::wrong, "an exception of unknown type");
    }
}

// Runs one offload as its own task, cancels it when its spec says so, and
// notes a task cancelled before its first step (its body never ran).
task<> supervise(round_state& r, std::size_t i, pools p) {
    auto h = create_task(offload_one(r, i, p));
    const offload_spec& s = r.specs[i];
    if (s.cancel_after_us >= 0) {
        if (s.cancel_after_us > 0) co_await sleep(std::chrono::microseconds(s.cancel_after_us));
        if (!h.done()) {
            r.slots[i].cancel_sent = true;
            h.cancel();
        }
    }
    try {
        co_await h;
    } catch (const cancelled_error&) {
        // A cancelled task ends cancelled, also after it recorded what it saw.
    } catch (...) {
        r.slots[i].note = "the offload task itself threw";
    }
    if (!r.slots[i].started) r.record(i, outcome::cancelled_unstarted);
    r.window->release();
}

task<> shut_down(round_state& r, pools p) {
    const round_config& c = r.cfg;
    if (c.shut_tp) r.tp_shut = true;
    if (c.shut_pp) r.pp_shut = true;
    auto body = [&c, p] {
        if (c.shut_tp) p.tp.shutdown(c.shut_wait, c.shut_cancel_pending);
        if (c.shut_pp) p.pp.shutdown(c.shut_wait, c.shut_cancel_pending);
    };
    if (c.shut_from_thread)
        co_await to_thread(body);
    else
        body();
}

// Kills a random worker that has answered a call, every few milliseconds; at
// most 24 a round (on a loaded machine a round lasts longer, and unbounded
// kills would keep its pool respawning: slower still).
task<> killer(round_state& r, process_pool& pp) {
    std::mt19937_64 rng(splitmix(r.cfg.seed + 1));
    while (!r.stop_killer && r.external_kills < 24) {
        co_await sleep(std::chrono::microseconds(500 + rng() % 4'000));
        std::vector<pid_t> victims;
        for (pid_t pid : pp.worker_pids())
            if (r.ready_pids.count(pid)) victims.push_back(pid);
        if (!victims.empty() && ::kill(victims[rng() % victims.size()], SIGKILL) == 0) ++r.external_kills;
    }
}

task<> round_body(round_state& r, pools p) {
    semaphore window(r.cfg.window);
    r.window = &window;
    std::optional<task_handle<>> kill_task, shutdown_task;
    if (r.cfg.external_kills) kill_task = create_task(killer(r, p.pp));
    for (std::size_t i = 0; i < r.cfg.offloads; ++i) {
        if (i == r.cfg.shutdown_at) shutdown_task = create_task(shut_down(r, p));
        co_await window.acquire();
        create_task(supervise(r, i, p));
    }
    for (std::size_t k = 0; k < r.cfg.window; ++k) co_await window.acquire();
    r.stop_killer = true;
    if (kill_task) co_await *kill_task;
    if (shutdown_task) co_await *shutdown_task;
}

// false: the round did not finish within `limit`.
task<bool> guarded_round(round_state& r, pools p, std::chrono::seconds limit) {
    try {
        co_await wait_for(round_body(r, p), limit);
    } catch (const timeout_error&) {
        for (std::size_t i = 0; i < r.slots.size(); ++i)
            if (r.slots[i].resolutions == 0) r.hung.push_back(i);
        co_return false;
    }
    co_return true;
}

// --- leaks and hangs -----------------------------------------------------------------

std::size_t memfd_count() {
    std::size_t n = 0;
    DIR* d = ::opendir("/proc/self/fd");
    if (!d) return 0;
    while (dirent* e = ::readdir(d)) {
        if (e->d_name[0] == '.') continue;
        std::error_code ec;
        auto target = std::filesystem::read_symlink(std::string("/proc/self/fd/") + e->d_name, ec);
        if (!ec && target.string().find("memfd:") != std::string::npos) ++n;
    }
    ::closedir(d);
    return n;
}

std::size_t dev_shm_count() {
    std::error_code ec;
    std::size_t n = 0;
    for (auto it = std::filesystem::directory_iterator("/dev/shm", ec); !ec && it != std::filesystem::end(it);
         it.increment(ec)) {
        // Python's multiprocessing (the benchmarks' peers, run by other tests in
        // parallel) makes and removes its own: not ours to count.
        const std::string name = it->path().filename().string();
        if (name.starts_with("sem.mp-") || name.starts_with("psm_")) continue;
        ++n;
    }
    return n;
}

// Aborts the whole program with a message if a round outlives even the
// in-loop watchdog (a round whose cancellation hangs too): a clear failure
// instead of a CTest timeout.
class hard_watchdog {
public:
    hard_watchdog()
        : thread_([this] {
              std::unique_lock lk(mu_);
              while (!stop_) {
                  if (armed_ && std::chrono::steady_clock::now() >= deadline_) {
                      std::fprintf(stderr, "exactly_once_test: HUNG and not even cancellable: %s\n", what_.c_str());
                      std::fflush(stderr);
                      std::abort();
                  }
                  if (armed_)
                      cv_.wait_until(lk, deadline_);
                  else
                      cv_.wait(lk);
              }
          }) {}
    hard_watchdog(const hard_watchdog&) = delete;
    hard_watchdog& operator=(const hard_watchdog&) = delete;
    ~hard_watchdog() {
        {
            std::lock_guard lk(mu_);
            stop_ = true;
        }
        cv_.notify_all();
        thread_.join();
    }
    void arm(std::chrono::seconds limit, std::string what) {
        {
            std::lock_guard lk(mu_);
            armed_ = true;
            deadline_ = std::chrono::steady_clock::now() + limit;
            what_ = std::move(what);
        }
        cv_.notify_all();
    }
    void disarm() {
        std::lock_guard lk(mu_);
        armed_ = false;
    }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false, armed_ = false;
    std::chrono::steady_clock::time_point deadline_{};
    std::string what_;
    std::thread thread_;
};

// --- checking and reporting ----------------------------------------------------------

struct totals {
    std::size_t offloads = 0, rounds = 0, shutdown_rounds = 0, external_kills = 0;
    std::array<std::size_t, outcome_count> by_outcome{};
    std::vector<std::string> failures;
};

// Why outcome `o` is not allowed for offload `i`, or "" if it is.
std::string disallowed(const round_state& r, std::size_t i, outcome o) {
    const offload_spec& s = r.specs[i];
    const slot& sl = r.slots[i];
    switch (o) {
    case outcome::value:
        return s.kind == throws || s.kind == suicide ? "a value from a call that throws or kills its worker" : "";
    case outcome::error: return s.kind == throws ? "" : "the call's error, but it does not throw";
    case outcome::cancelled: return sl.cancel_sent ? "" : "cancelled_error, but nobody cancelled it";
    case outcome::cancelled_unstarted:
        return sl.cancel_sent ? "" : "its task ended before its first step, but nobody cancelled it";
    case outcome::timeout:
        return s.wait_for_us || (s.process && r.cfg.pp_task_timeout) ? ""
                                                                     : "timeout_error without wait_for or task_timeout";
    case outcome::crashed:
        if (!s.process) return "worker_crashed from the thread pool";
        if (s.kind != suicide && !r.cfg.external_kills) return "worker_crashed, but no worker was killed";
        return sl.crash_signal == SIGKILL ? "" : fmt::format("worker_crashed with signal {}", sl.crash_signal);
    case outcome::closed: return sl.closed_early ? "executor_closed before a shutdown of its pool began" : "";
    case outcome::broken:
        return s.process && r.cfg.pp_on_crash == crash_policy::break_pool
                   ? ""
                   : "broken_executor from a pool that does not break";
    case outcome::wrong: return "unexpected: " + sl.note;
    case outcome::none: return "never resolved";
    }
    return "?";
}

void check_round(const round_state& r, totals& t) {
    for (std::size_t i = 0; i < r.slots.size(); ++i) {
        const slot& sl = r.slots[i];
        const offload_spec& s = r.specs[i];
        std::string why;
        if (sl.resolutions != 1)
            why = fmt::format("resolved {} times ({}, then {})", sl.resolutions,
                              outcome_names[static_cast<std::size_t>(sl.first)],
                              outcome_names[static_cast<std::size_t>(sl.second)]);
        else
            why = disallowed(r, i, sl.first);
        if (sl.resolutions == 1) ++t.by_outcome[static_cast<std::size_t>(sl.first)];
        if (!why.empty() && t.failures.size() < 20)
            t.failures.push_back(fmt::format(
                "offload {} ({} pool, kind {}, {} us, wait_for {} us, cancel after {} us, cancel sent {}): {} — {}",
                r.cfg.first_id + static_cast<std::int64_t>(i), s.process ? "process" : "thread", s.kind, s.us,
                s.wait_for_us, s.cancel_after_us, sl.cancel_sent, why, r.cfg.describe()));
    }
    t.offloads += r.slots.size();
    ++t.rounds;
    if (r.cfg.shutdown_at < r.cfg.offloads) ++t.shutdown_rounds;
    t.external_kills += r.external_kills;
}

std::size_t env_count(const char* name, std::size_t fallback) {
    const char* v = std::getenv(name);
    if (!v || !*v) return fallback;
    try {
        return static_cast<std::size_t>(std::stoull(v));
    } catch (const std::exception&) {
        throw std::invalid_argument(fmt::format("{}='{}' is not a number; unset it or give a count", name, v));
    }
}

std::uint64_t chaos_seed() {
    if (const char* v = std::getenv("OFFLOAD_CHAOS_SEED"); v && *v) {
        try {
            return std::stoull(v);
        } catch (const std::exception&) {
            throw std::invalid_argument(fmt::format("OFFLOAD_CHAOS_SEED='{}' is not a number", v));
        }
    }
    return (static_cast<std::uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
}

// Runs `total` offloads in rounds of about `per_round`, checking each round,
// and prints a summary.
void chaos_run(std::size_t total, std::size_t per_round, std::chrono::seconds round_limit) {
    const std::uint64_t seed = chaos_seed();
    fmt::print("exactly-once chaos: {} offloads, seed {} (replay with OFFLOAD_CHAOS_SEED={})\n", total, seed, seed);
    std::fflush(stdout);
    totals t;
    hard_watchdog hard;
    const std::size_t fds0 = test::fd_count();
    const std::size_t kids0 = test::child_count();
    const std::size_t shm0 = dev_shm_count();
    const auto t0 = std::chrono::steady_clock::now();
    std::int64_t next_id = 0;
    for (int index = 0; t.offloads < total; ++index) {
        std::uint64_t rseed = splitmix(seed + static_cast<std::uint64_t>(index));
        std::size_t n = std::min(total - t.offloads, per_round / 2 + rseed % (per_round + 1));
        round_config cfg = make_config(index, rseed, next_id, std::max<std::size_t>(n, 1));
        next_id += static_cast<std::int64_t>(cfg.offloads);
        INFO("seed " << seed << ", " << cfg.describe());
        round_state r(cfg);
        hard.arm(round_limit * 2 + 30s, cfg.describe());
        const auto round_t0 = std::chrono::steady_clock::now();
        bool finished = false;
        {
            process_pool pp({.workers = cfg.pp_workers,
                             .start = cfg.pp_start,
                             .max_tasks_per_child = cfg.pp_max_tasks_per_child,
                             .task_timeout = cfg.pp_task_timeout,
                             .on_crash = cfg.pp_on_crash});
            thread_pool tp({.workers = cfg.tp_workers, .max_queued = cfg.tp_max_queued, .name = "chaos"});
            finished = run(guarded_round(r, pools{tp, pp}, round_limit));
            if (finished) {
                // Every call the pools accepted is accounted for once (a thread
                // call abandoned while running keeps its worker busy a while).
                bool idle = test::wait_until([&] { return tp.stats().busy == 0; }, std::chrono::seconds(10));
                auto ts = tp.stats();
                auto ps = pp.stats();
                INFO("thread_pool: submitted "
                     << ts.submitted << ", completed " << ts.completed << ", failed " << ts.failed << ", cancelled "
                     << ts.cancelled << "; process_pool: " << ps.submitted << ", " << ps.completed << ", " << ps.failed
                     << ", " << ps.cancelled);
                CHECK(idle);
                CHECK(ts.queued == 0);
                CHECK(ts.submitted == ts.completed + ts.failed + ts.cancelled);
                CHECK(ps.queued == 0);
                CHECK(ps.busy == 0);
                CHECK(ps.submitted == ps.completed + ps.failed + ps.cancelled);
            }
            if (!finished) {
                // The stats after run() cancelled what was left.
                auto ts = tp.stats();
                auto ps = pp.stats();
                std::string which;
                for (std::size_t k = 0; k < std::min<std::size_t>(r.hung.size(), 10); ++k) {
                    const offload_spec& s = r.specs[r.hung[k]];
                    which += fmt::format("\n  offload {}: {} pool, kind {}, {} us, wait_for {} us, cancel after {} us",
                                         cfg.first_id + static_cast<std::int64_t>(r.hung[k]),
                                         s.process ? "process" : "thread", s.kind, s.us, s.wait_for_us,
                                         s.cancel_after_us);
                }
                FAIL_CHECK(fmt::format(
                    "the round hung: not finished after {} s, {} offloads had not resolved (first ones below). "
                    "After cancelling them: thread_pool: submitted {}, completed {}, failed {}, cancelled {}, queued "
                    "{}, busy {}; process_pool: submitted {}, completed {}, failed {}, cancelled {}, queued {}, busy "
                    "{}, crashes {}, respawns {}, {} workers left{}",
                    round_limit.count(), r.hung.size(), ts.submitted, ts.completed, ts.failed, ts.cancelled, ts.queued,
                    ts.busy, ps.submitted, ps.completed, ps.failed, ps.cancelled, ps.queued, ps.busy, ps.crashes,
                    ps.respawns, pp.worker_pids().size(), which));
            }
        }
        hard.disarm();
        const double round_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - round_t0).count();
        if (round_s > 3 || std::getenv("OFFLOAD_CHAOS_VERBOSE"))
            fmt::print("  {:.2f} s, {} external kills: {}\n", round_s, r.external_kills, cfg.describe());
        REQUIRE(finished); // (the outcomes of a hung round are the watchdog's cancellations)
        check_round(r, t);
        for (auto& f : t.failures) FAIL_CHECK(f);
        REQUIRE(t.failures.empty());
        // Nothing outlives the pools: fds, memfds, /dev/shm entries, child processes (zombies included).
        std::size_t fds = test::fd_count();
        CHECK(fds == fds0);
        CHECK(memfd_count() == 0);
        CHECK(dev_shm_count() == shm0);
        bool no_children = test::wait_until([&] { return test::child_count() == kids0; }, std::chrono::seconds(10));
        CHECK(no_children);
        REQUIRE((fds == fds0 && no_children));
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    fmt::print("exactly-once chaos: {} offloads in {} rounds ({} with a shutdown), {:.2f} s, {:.0f} offloads/s, "
               "{} external worker kills, seed {}\n",
               t.offloads, t.rounds, t.shutdown_rounds, secs, static_cast<double>(t.offloads) / secs, t.external_kills,
               seed);
    for (std::size_t k = 1; k < outcome_count; ++k)
        if (outcome_names[k] != std::string("wrong") || t.by_outcome[k])
            fmt::print("  {:<24} {:>9}\n", outcome_names[k], t.by_outcome[k]);
    std::fflush(stdout);
    CHECK(t.by_outcome[static_cast<std::size_t>(outcome::value)] > 0);
}

} // namespace

TEST_CASE("exactly once under chaos: every offload resolves once as allowed and nothing leaks", "[chaos]") {
    chaos_run(1'600, 200, 60s);
}

TEST_CASE("exactly once under chaos: OFFLOAD_CHAOS_OFFLOADS offloads (default 1'000'000)", "[.stress][chaos]") {
    chaos_run(env_count("OFFLOAD_CHAOS_OFFLOADS", 1'000'000), 4'000, 60s);
}
