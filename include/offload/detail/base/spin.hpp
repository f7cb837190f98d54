// offload/detail/base/spin.hpp — the one spin-then-park helper. Every hand-off
// in the library (the loop waiting for completions, thread-pool workers
// waiting for calls, process workers waiting in their mailbox) first spins
// for a short budget, because a wake-up across cores costs tens of
// microseconds while a quick call answers in one; then it parks (epoll,
// futex). Tuning where to stop spinning happens here, in one place.
//
// Spinning only pays while the spinner keeps its core. On a busy machine
// (more runnable threads than cores) a spinner is just one more CPU hog: the
// scheduler takes its core away for a whole time slice (milliseconds), and
// what it waited for then waits for it. A parked thread, by contrast, is
// woken at once and preempts the hog. So a `spinner` remembers how its spins
// went and stops spinning when that does not pay:
//   * descheduled: two consecutive clock reads far apart (more than
//     `spin_policy::deschedule_gap`, while a read costs ~20 ns and 16 polls
//     ~1 µs) mean another thread held our core. The spin ends at once, and
//     the next `park_after_deschedule` waits park at once (doubling at each
//     further gap up to `max_backoff`, for `max_skip_time` at most, halving
//     after `clean_to_decay` spins in a row that kept the core);
//   * failing: a success score (an average of recent spins: a spin that
//     found its event paid, one that timed out and whose wait went on past
//     4x the budget failed) sets the budget: all of it while most spins pay,
//     0 (park at once, probing with a short spin every 8th wait) when most
//     fail, in between when in between.
// A spin yields (sched_yield) only where the policy asks (`yield_after`):
// where what we wait for may run on our own core (a process worker and the
// parent's loop), a yield hands that core over for the few microseconds the
// peer needs, where a plain spin would hold it for the whole budget. A yield
// to a runnable hog instead costs a whole slice; that shows up as a gap above
// `yield_gap` and counts as losing the core, so the spinner parks at once for
// the next waits. Parking costs a futex wake and lets the waker preempt the hog.
//
// Who adapts: process workers (the default policy). The loop and thread-pool
// workers use `steady_spin_policy` (a gap ends the spin; no adapted budget,
// no parking at once): measured on a 2-vCPU VM, their adapting made
// sequential hand-offs settle in a park-and-wake regime (~5 µs median instead
// of ~0.6 µs on an idle machine).
#pragma once

#include <offload/detail/base/clock.hpp>
#include <offload/detail/base/config.hpp>
#include <offload/detail/base/cpu.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <limits>
#include <sched.h>
#include <unistd.h>

namespace offload::detail {

/// True while the machine has more runnable threads than CPUs (the running
/// count of /proc/loadavg, read at most every 10 ms by whichever spinner asks
/// first; false if it cannot be read). A spin yields only while this is false:
/// on an idle machine a yield hands the core to a peer that shares it (a
/// process worker and the parent's loop) for a few microseconds; on a busy one
/// it hands the core to a CPU hog for a whole time slice. Thread-safe.
OFFLOAD_DECL bool machine_busy() noexcept;

/// How many of this process's spinners spin on each CPU (indexed by
/// sched_getcpu() modulo its size; one cache line each). A spinner that sees
/// another one registered on its own CPU knows that one cannot run while it
/// spins: it hands the core over (yield) or, on a busy machine, stops.
struct alignas(cache_line) cpu_spinners {
    std::atomic<std::uint32_t> count{0};
    static constexpr unsigned slots = 1024;
};
OFFLOAD_DECL cpu_spinners* spinners_per_cpu() noexcept;

/// sched_yield, unless the machine is busy (see machine_busy); then a pause.
inline void yield_if_idle() noexcept {
    if (machine_busy())
        cpu_relax();
    else
        ::sched_yield();
}

/// How a spin behaves.
struct spin_policy {
    /// The longest a spin lasts before the caller parks (a `spinner`'s
    /// adaptive budget moves between 0 and this).
    std::chrono::nanoseconds budget = std::chrono::microseconds(50);
    /// Two consecutive clock reads of a spin further apart than this mean the
    /// spinner lost its core (a read happens every `polls_per_read` polls,
    /// about a microsecond apart): the spin ends at once.
    std::chrono::nanoseconds deschedule_gap = std::chrono::microseconds(20);
    /// The adaptive budget never drops below this (a spinner whose failed
    /// spins cost little, e.g. one of several pool workers, may keep spinning).
    std::chrono::nanoseconds floor = std::chrono::nanoseconds(0);
    /// Waits that park at once after a first deschedule (doubling at each
    /// further one, up to max_backoff); 0: a deschedule only ends that spin.
    unsigned park_after_deschedule = 16;
    /// After a deschedule, parking at once ends after this long at the latest
    /// (then a spin probes whether the core is ours again).
    std::chrono::nanoseconds max_skip_time = std::chrono::milliseconds(50);

    /// Polls after which every further poll yields the CPU (sched_yield), for
    /// a spinner whose peer may share its core; never_yield = only pause.
    unsigned yield_after = never_yield;
    /// While yielding, a gap between clock reads up to this long is the peer's
    /// turn on our core, not a lost core (a hog's turn lasts a time slice,
    /// a millisecond or more).
    std::chrono::nanoseconds yield_gap = std::chrono::microseconds(500);
    /// While the machine has more runnable threads than CPUs (machine_busy),
    /// park at once: a spin there only takes CPU from someone who needs it.
    bool park_when_busy = false;
    /// Polls between two clock reads.
    static constexpr unsigned polls_per_read = 16;
    static constexpr unsigned never_yield = ~0u;
};

/// A policy whose spinner keeps its whole budget and never parks at once: a
/// deschedule gap only ends the spin it happens in (see the file comment:
/// the loop and thread-pool workers use it).
inline spin_policy steady_spin_policy(std::chrono::nanoseconds budget = std::chrono::microseconds(50)) noexcept {
    spin_policy p;
    p.budget = budget;
    p.floor = budget;
    p.park_after_deschedule = 0;
    return p;
}

/// How one spin ended.
enum class spin_result : std::uint8_t {
    ready,       ///< ready() returned true while spinning
    timed_out,   ///< the budget was spent (or was 0) and ready() is false
    descheduled, ///< a deschedule gap ended the spin (ready() may be either)
};

/// Polls `ready()` until it returns true (returns true) or `budget` is spent or
/// a deschedule gap is seen (returns ready() one last time). The stateless
/// core of every spin; `Clock` is injectable for tests. `*how` (if given)
/// says how the spin ended.
/// Past `yield_after` polls every poll yields, and a gap counts only above
/// `yield_gap` (see spin_policy).
template <class Clock = clock, class Ready>
bool spin_for(std::chrono::nanoseconds budget, std::chrono::nanoseconds gap, Ready&& ready, spin_result* how = nullptr,
              unsigned yield_after = spin_policy::never_yield,
              std::chrono::nanoseconds yield_gap = std::chrono::microseconds(500)) {
    auto set = [how](spin_result r) {
        if (how) *how = r;
    };
    if (ready()) {
        set(spin_result::ready);
        return true;
    }
    if (budget.count() <= 0) {
        set(spin_result::timed_out);
        return false;
    }
    // Registered as spinning on this CPU for the length of the spin.
    const int cpu = ::sched_getcpu();
    std::atomic<std::uint32_t>& here =
        spinners_per_cpu()[static_cast<unsigned>(cpu < 0 ? 0 : cpu) % cpu_spinners::slots].count;
    here.fetch_add(1, std::memory_order_relaxed);
    struct unregister {
        std::atomic<std::uint32_t>& c;
        ~unregister() { c.fetch_sub(1, std::memory_order_relaxed); }
    } registered{here};
    auto prev = Clock::now();
    const auto until = prev + budget;
    for (unsigned i = 1;; ++i) {
        if (ready()) {
            set(spin_result::ready);
            return true;
        }
        const bool yielding = i > yield_after;
        if (yielding)
            yield_if_idle();
        else
            cpu_relax();
        if (i % spin_policy::polls_per_read == 0) {
            auto now = Clock::now();
            if (now - prev > (yielding ? std::max(gap, yield_gap) : gap)) {
                set(spin_result::descheduled);
                return ready();
            }
            if (now >= until) {
                set(spin_result::timed_out);
                return false;
            }
            if (cpu >= 0 && here.load(std::memory_order_relaxed) > 1) {
                // Another spinner of ours waits for this core (often the very
                // thread we wait for): hand it over, or stop on a busy machine.
                if (machine_busy()) {
                    set(spin_result::timed_out);
                    return ready();
                }
                ::sched_yield();
                now = Clock::now();
            }
            prev = now;
        }
    }
}

/// Polls `ready()` for at most `policy.budget`, ending early on a deschedule
/// gap (no memory of earlier spins: prefer a `spinner`). True when ready.
template <class Ready>
bool spin_until(const spin_policy& policy, Ready&& ready) {
    return spin_for(policy.budget, policy.deschedule_gap, ready, nullptr, policy.yield_after, policy.yield_gap);
}

/// A spinner's memory of its recent spins (see the file comment): one per
/// waiting thread (a loop, a pool worker, a process worker). Not thread-safe:
/// only its own thread uses it. `Clock` is injectable for tests.
///
///     spinner s;                       // per waiting thread
///     if (!s.spin([&] { return ready(); })) {
///         park();                      // futex, epoll...
///         s.woke();                    // how long the park lasted teaches the budget
///     }
template <class Clock = clock>
class basic_spinner {
public:
    static constexpr unsigned max_backoff = 256;    // waits parked at once after deschedules, doubling up to this
    static constexpr unsigned clean_to_decay = 64;  // spins that kept the core before the back-off halves
    static constexpr unsigned failed_wait_factor = 4; // a failed spin: the wait lasted over 4x the budget ceiling
    static constexpr unsigned score_max = 1024; // the success score: an average of recent spins, 1024 = all paid
    static constexpr unsigned score_full = 448; // from this score up (~60% of spins paid), the whole budget
    static constexpr unsigned score_off = 192;  // below it (under ~30%), budget 0: park at once, probing now and then
    static constexpr unsigned probe_every = 8;     // at budget 0, every 8th wait spins policy.budget / 16

    explicit basic_spinner(spin_policy p = {}) noexcept
        : policy_(p), budget_(p.budget), backoff_(p.park_after_deschedule) {}

    /// Spins on `ready()` within the adapted budget, unless recent spins lost
    /// the core (then only checks once). True when ready; false: the caller
    /// parks, then calls woke().
    template <class Ready>
    bool spin(Ready&& ready) {
        parked_after_spin_ = false;
        if (policy_.park_when_busy && machine_busy()) {
            ++parked_at_once_;
            return ready();
        }
        if (skip_ > 0) { // lost the core lately: park at once
            --skip_;
            if (Clock::now() - skip_since_ > policy_.max_skip_time) skip_ = 0; // probe next time
            ++parked_at_once_;
            return ready();
        }
        auto b = budget_;
        if (b.count() == 0) { // spins kept failing: park at once, but probe now and then
            if (++zero_waits_ % probe_every != 0) {
                ++parked_at_once_;
                return ready();
            }
            b = policy_.budget / 16;
        }
        spin_result how{};
        spun_since_ = Clock::now();
        const bool ok = spin_for<Clock>(b, policy_.deschedule_gap, ready, &how, policy_.yield_after, policy_.yield_gap);
        switch (how) {
        case spin_result::ready:
            paid();
            kept_core();
            break;
        case spin_result::timed_out:
            kept_core();
            parked_after_spin_ = true;
            break;
        case spin_result::descheduled: lost_core(); break;
        }
        return ok;
    }

    /// Call after parking (spin() returned false) once woken. After a spin
    /// that timed out: a wait that ended within the budget ceiling of the
    /// spin's start means a longer spin would have paid (the budget grows);
    /// one that went on past it means spinning did not (after
    /// `failures_tolerated` such spins in a row, each halves the budget).
    void woke() noexcept {
        if (!parked_after_spin_) return;
        parked_after_spin_ = false;
        if (Clock::now() - spun_since_ > policy_.budget * failed_wait_factor) failed();
    }

    /// The success score (0..score_max) of recent spins.
    unsigned score() const noexcept { return score_; }
    /// The current budget (0: park at once).
    std::chrono::nanoseconds budget() const noexcept { return budget_; }
    /// Waits left that park at once after a deschedule.
    unsigned skipping() const noexcept { return skip_; }
    /// Waits that the next deschedule makes park at once.
    unsigned backoff() const noexcept { return backoff_; }
    /// Deschedules seen, and waits that parked at once (for tests and stats).
    std::uint64_t deschedules() const noexcept { return deschedules_; }
    std::uint64_t parked_at_once() const noexcept { return parked_at_once_; }
    const spin_policy& policy() const noexcept { return policy_; }

private:
    // A paid spin moves the score 1/16 of the way up to score_max, a failed
    // one 1/8 of the way down to 0: a failure (a whole budget of CPU, and
    // lag the scheduler holds against us) weighs about two successes.
    void paid() noexcept {
        score_ += (score_max - score_) / 16;
        set_budget();
    }
    void failed() noexcept {
        score_ -= score_ / 8;
        set_budget();
    }
    void set_budget() noexcept {
        if (score_ < score_off)
            budget_ = std::chrono::nanoseconds(0);
        else
            budget_ = score_ >= score_full ? policy_.budget
                                           : policy_.budget * (score_ - score_off) / (score_full - score_off);
        budget_ = std::max(budget_, std::min(policy_.floor, policy_.budget));
    }
    void kept_core() noexcept {
        if (++clean_ >= clean_to_decay) {
            clean_ = 0;
            backoff_ = std::max(policy_.park_after_deschedule, backoff_ / 2);
        }
    }
    void lost_core() noexcept {
        ++deschedules_;
        clean_ = 0;
        skip_ = backoff_;
        skip_since_ = Clock::now();
        backoff_ = std::min(std::max(max_backoff, policy_.park_after_deschedule), backoff_ * 2);
    }

    spin_policy policy_;
    std::chrono::nanoseconds budget_;
    unsigned skip_ = 0;
    unsigned backoff_;
    unsigned clean_ = 0;
    unsigned score_ = score_max * 3 / 4;
    unsigned zero_waits_ = 0; // waits at budget 0 (every probe_every-th probes)
    bool parked_after_spin_ = false;
    typename Clock::time_point skip_since_{};
    typename Clock::time_point spun_since_{};
    std::uint64_t deschedules_ = 0;
    std::uint64_t parked_at_once_ = 0;
};

using spinner = basic_spinner<>;

#if OFFLOAD_DEFINE_BODIES

OFFLOAD_DECL cpu_spinners* spinners_per_cpu() noexcept {
    static cpu_spinners table[cpu_spinners::slots];
    return table;
}

OFFLOAD_DECL bool machine_busy() noexcept {
    using std::chrono::duration_cast;
    using std::chrono::nanoseconds;
    static std::atomic<std::int64_t> checked{std::numeric_limits<std::int64_t>::min() / 2};
    static std::atomic<bool> busy{false};
    static const long cpus = [] {
        long n = ::sysconf(_SC_NPROCESSORS_ONLN);
        return n > 0 ? n : 1L;
    }();
    constexpr std::int64_t every = 10'000'000; // ns
    const std::int64_t now = duration_cast<nanoseconds>(clock::now().time_since_epoch()).count();
    std::int64_t last = checked.load(std::memory_order_relaxed);
    if (now - last < every || !checked.compare_exchange_strong(last, now, std::memory_order_relaxed))
        return busy.load(std::memory_order_relaxed);
    // "0.20 0.18 0.12 3/812 11206": the fourth field is runnable/total.
    int fd = ::open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    char buf[128];
    ssize_t n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    if (n <= 0) return false;
    buf[n] = 0;
    const char* slash = std::strchr(buf, '/');
    if (!slash) return false;
    const char* p = slash;
    while (p > buf && p[-1] >= '0' && p[-1] <= '9') --p;
    long running = std::strtol(p, nullptr, 10);
    const bool b = running > cpus;
    busy.store(b, std::memory_order_relaxed);
    return b;
}

#endif // OFFLOAD_DEFINE_BODIES

} // namespace offload::detail
