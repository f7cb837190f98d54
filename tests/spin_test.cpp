// Tests for offload/detail/base/spin.hpp: the spin-then-park helper. A fake
// clock that the polls themselves advance makes every case deterministic (no
// timing assertions): each poll "costs" 100 ns, and a case jumps the clock to
// play a deschedule or a long park.
#include <offload/detail/base/spin.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <sched.h>

using namespace std::chrono_literals;
using offload::detail::basic_spinner;
using offload::detail::spin_for;
using offload::detail::spin_policy;
using offload::detail::spin_result;
using offload::detail::steady_spin_policy;

namespace {

struct fake_clock {
    using duration = std::chrono::nanoseconds;
    using rep = duration::rep;
    using period = duration::period;
    using time_point = std::chrono::time_point<fake_clock>;
    static inline time_point t{};
    static time_point now() noexcept { return t; }
    static void advance(duration d) noexcept { t += d; }
};

using fake_spinner = basic_spinner<fake_clock>;

// A ready() that costs 100 ns a poll and turns true at poll `ready_at` (0: never).
struct poller {
    long ready_at = 0;
    long polls = 0;
    bool operator()() {
        ++polls;
        fake_clock::advance(100ns);
        return ready_at != 0 && polls >= ready_at;
    }
};

// One wait that nobody answers for `wait`: the spin fails, the caller parks
// until `wait` after the spin began, then reports the wake.
void unanswered_wait(fake_spinner& s, std::chrono::nanoseconds wait) {
    const auto t0 = fake_clock::now();
    poller p;
    REQUIRE_FALSE(s.spin(p));
    if (fake_clock::now() - t0 < wait) fake_clock::advance(wait - (fake_clock::now() - t0));
    s.woke();
}

// One wait answered after `polls` polls (within the budget when it spins).
long answered_wait(fake_spinner& s, long polls = 10) {
    poller p{polls};
    if (!s.spin(p)) {
        fake_clock::advance(std::chrono::nanoseconds(100 * polls));
        s.woke();
    }
    return p.polls;
}

} // namespace

TEST_CASE("spin_for: ready at once, later, or never within the budget", "[spin]") {
    spin_result how{};
    poller now{1};
    REQUIRE(spin_for<fake_clock>(50us, 20us, now, &how));
    REQUIRE(how == spin_result::ready);
    REQUIRE(now.polls == 1);

    poller later{300};
    REQUIRE(spin_for<fake_clock>(50us, 20us, later, &how));
    REQUIRE(how == spin_result::ready);
    REQUIRE(later.polls == 300);

    poller never;
    const auto t0 = fake_clock::now();
    REQUIRE_FALSE(spin_for<fake_clock>(50us, 20us, never, &how));
    REQUIRE(how == spin_result::timed_out);
    // 50 µs of 100 ns polls, give or take one clock-read interval.
    REQUIRE(fake_clock::now() - t0 >= 50us);
    REQUIRE(fake_clock::now() - t0 <= 50us + 2 * spin_policy::polls_per_read * 100ns);

    poller zero;
    REQUIRE_FALSE(spin_for<fake_clock>(0ns, 20us, zero, &how));
    REQUIRE(how == spin_result::timed_out);
    REQUIRE(zero.polls == 1); // a zero budget only looks once
}

TEST_CASE("spin_for: a gap between clock reads (lost the core) ends the spin", "[spin]") {
    long polls = 0;
    auto descheduled_at_40 = [&] {
        ++polls;
        fake_clock::advance(polls == 40 ? std::chrono::nanoseconds(3ms) : std::chrono::nanoseconds(100ns));
        return false;
    };
    spin_result how{};
    REQUIRE_FALSE(spin_for<fake_clock>(50us, 20us, descheduled_at_40, &how));
    REQUIRE(how == spin_result::descheduled);
    // Noticed at the next clock read (poll 48) plus one last look, not after 500 polls.
    REQUIRE(polls <= 40 + static_cast<long>(spin_policy::polls_per_read) + 1);

    // What arrived while we were away is still taken.
    polls = 0;
    auto arrives_while_away = [&] {
        ++polls;
        fake_clock::advance(polls == 20 ? std::chrono::nanoseconds(1ms) : std::chrono::nanoseconds(100ns));
        // Polls 1 (before the loop) and 2..33 (reads after polls 17 and 33):
        // the gap is seen after poll 33, and poll 34 is the last look.
        return polls >= 34;
    };
    REQUIRE(spin_for<fake_clock>(50us, 20us, arrives_while_away, &how));
    REQUIRE(how == spin_result::descheduled);

    // Gaps below the threshold (a slow ready(), an interrupt) do not end it.
    polls = 0;
    auto slow_polls = [&] {
        ++polls;
        fake_clock::advance(1us); // 16 µs between reads < 20 µs
        return polls == 45;
    };
    REQUIRE(spin_for<fake_clock>(50us, 20us, slow_polls, &how));
    REQUIRE(how == spin_result::ready);
}

TEST_CASE("spinner: the budget goes down to 0 after failed spins and back up after successes", "[spin]") {
    fake_spinner s;
    REQUIRE(s.budget() == 50us);

    // Spins that time out and whose waits go on for milliseconds: spinning does not pay.
    int failures = 0;
    while (s.budget() > 0ns && failures < 100) {
        unanswered_wait(s, 5ms);
        ++failures;
    }
    REQUIRE(s.budget() == 0ns);
    REQUIRE(failures > 3); // not on the first failure: one slow call is no trend

    // At budget 0 a wait looks once and parks, except every probe_every-th (a short probe).
    long looks = 0;
    for (unsigned i = 1; i < fake_spinner::probe_every; ++i) {
        poller p;
        REQUIRE_FALSE(s.spin(p));
        looks += p.polls;
        s.woke();
    }
    REQUIRE(looks == static_cast<long>(fake_spinner::probe_every) - 1);
    REQUIRE(s.parked_at_once() == fake_spinner::probe_every - 1);

    // Calls answered quickly again: the probes succeed and the budget recovers.
    int waits = 0;
    while (s.budget() < 50us && waits < 1000) {
        answered_wait(s, 5);
        ++waits;
    }
    REQUIRE(s.budget() == 50us);
    REQUIRE(waits < 1000);
}

TEST_CASE("spinner: a few long waits among quick ones keep the whole budget", "[spin]") {
    fake_spinner s;
    for (int round = 0; round < 50; ++round) {
        for (int i = 0; i < 4; ++i) answered_wait(s, 20);
        unanswered_wait(s, 5ms); // 1 in 5 waits is a long call
    }
    REQUIRE(s.budget() == 50us);
}

TEST_CASE("spinner: a wait that ended soon after the spin gave up is no failure", "[spin]") {
    fake_spinner s;
    for (int i = 0; i < 200; ++i) unanswered_wait(s, 80us); // answered just after the budget ran out
    REQUIRE(s.budget() == 50us);
}

TEST_CASE("spinner: after losing the core it parks at once, backing off further each time", "[spin]") {
    fake_spinner s;
    long polls = 0;
    auto lose_core = [&] {
        ++polls;
        fake_clock::advance(polls == 3 ? std::chrono::nanoseconds(2ms) : std::chrono::nanoseconds(100ns));
        return false;
    };
    REQUIRE_FALSE(s.spin(lose_core));
    s.woke();
    REQUIRE(s.deschedules() == 1);
    const unsigned first = s.policy().park_after_deschedule;
    REQUIRE(first > 0);
    REQUIRE(s.skipping() == first);

    // The next `first` waits park at once: one look each, no spinning.
    for (unsigned i = 0; i < first; ++i) {
        poller p;
        REQUIRE_FALSE(s.spin(p));
        REQUIRE(p.polls == 1);
        s.woke();
    }
    REQUIRE(s.skipping() == 0);
    REQUIRE(s.parked_at_once() == first);

    // Spinning again; losing the core once more parks twice as long.
    polls = 0;
    REQUIRE_FALSE(s.spin(lose_core));
    REQUIRE(s.skipping() == 2 * first);
    for (unsigned i = 0; i < 2 * first; ++i) answered_wait(s, 1);

    // Waits that keep the core let the back-off decay again.
    REQUIRE(s.backoff() == 4 * first);
    for (unsigned i = 0; i < 4 * fake_spinner::clean_to_decay; ++i) answered_wait(s, 3);
    REQUIRE(s.backoff() == first);
}

TEST_CASE("spinner: parking at once after a deschedule ends after max_skip_time", "[spin]") {
    spin_policy p;
    p.park_after_deschedule = 1000;
    fake_spinner s(p);
    long polls = 0;
    auto lose_core = [&] {
        ++polls;
        fake_clock::advance(polls == 3 ? std::chrono::nanoseconds(2ms) : std::chrono::nanoseconds(100ns));
        return false;
    };
    REQUIRE_FALSE(s.spin(lose_core));
    REQUIRE(s.skipping() == 1000);
    answered_wait(s, 1);
    REQUIRE(s.skipping() == 999);
    fake_clock::advance(p.max_skip_time + 1ms);
    answered_wait(s, 1); // notices the time and probes from the next wait on
    REQUIRE(s.skipping() == 0);
    poller q{30};
    REQUIRE(s.spin(q));
    REQUIRE(q.polls == 30); // spun
}

TEST_CASE("spinner: a steady policy keeps its budget and only ends the spin on a deschedule", "[spin]") {
    fake_spinner s(steady_spin_policy(40us));
    for (int i = 0; i < 100; ++i) unanswered_wait(s, 10ms);
    REQUIRE(s.budget() == 40us);

    long polls = 0;
    auto lose_core = [&] {
        ++polls;
        fake_clock::advance(polls == 3 ? std::chrono::nanoseconds(2ms) : std::chrono::nanoseconds(100ns));
        return false;
    };
    REQUIRE_FALSE(s.spin(lose_core));
    REQUIRE(polls < 40); // ended early
    REQUIRE(s.deschedules() == 1);
    REQUIRE(s.skipping() == 0);
    poller q{50};
    REQUIRE(s.spin(q)); // the next wait spins again
    REQUIRE(q.polls == 50);
}

TEST_CASE("spinner: a zero budget never spins", "[spin]") {
    spin_policy p;
    p.budget = 0ns;
    fake_spinner s(p);
    for (int i = 0; i < 50; ++i) {
        poller q;
        REQUIRE_FALSE(s.spin(q));
        REQUIRE(q.polls == 1);
        s.woke();
    }
    poller ready_now{1};
    REQUIRE(s.spin(ready_now));
}

TEST_CASE("spin_for: while yielding, a peer's short turn is no lost core, a hog's slice is", "[spin]") {
    // Past yield_after polls each poll yields; the gap that then counts as a
    // lost core is yield_gap (500 µs), not deschedule_gap (20 µs).
    long polls = 0;
    auto peer_turns = [&] {
        ++polls;
        // From poll 8 on, every poll comes back 40 µs later (the peer ran).
        fake_clock::advance(polls > 8 ? std::chrono::nanoseconds(40us) : std::chrono::nanoseconds(100ns));
        return polls == 20;
    };
    spin_result how{};
    REQUIRE(spin_for<fake_clock>(5ms, 20us, peer_turns, &how, 8, 500us));
    REQUIRE(how == spin_result::ready);

    // The same gaps without yielding end the spin at the first clock read.
    polls = 0;
    REQUIRE_FALSE(spin_for<fake_clock>(5ms, 20us, peer_turns, &how));
    REQUIRE(how == spin_result::descheduled);

    // A yield that lost a whole slice ends it.
    polls = 0;
    auto hog_slice = [&] {
        ++polls;
        fake_clock::advance(polls == 12 ? std::chrono::nanoseconds(3ms) : std::chrono::nanoseconds(100ns));
        return false;
    };
    REQUIRE_FALSE(spin_for<fake_clock>(50ms, 20us, hog_slice, &how, 8, 500us));
    REQUIRE(how == spin_result::descheduled);
    REQUIRE(polls <= 12 + static_cast<long>(spin_policy::polls_per_read) + 1);
}

TEST_CASE("spin_for: a spin is registered on its CPU while it lasts", "[spin]") {
    // The registry is how a spinner learns that another spinner of this
    // process (often the thread it waits for) is stuck behind it on its core.
    auto count_here = [] {
        int cpu = ::sched_getcpu();
        return offload::detail::spinners_per_cpu()[static_cast<unsigned>(cpu < 0 ? 0 : cpu) %
                                                   offload::detail::cpu_spinners::slots]
            .count.load();
    };
    // Pinned to the CPU it runs on, so that sched_getcpu() cannot move under it.
    cpu_set_t old_set, one;
    REQUIRE(::sched_getaffinity(0, sizeof old_set, &old_set) == 0);
    CPU_ZERO(&one);
    CPU_SET(::sched_getcpu(), &one);
    REQUIRE(::sched_setaffinity(0, sizeof one, &one) == 0);
    const auto before = count_here();
    std::uint32_t inside = 0;
    long polls = 0;
    auto look = [&] {
        fake_clock::advance(100ns);
        if (++polls == 3) inside = count_here();
        return polls == 5;
    };
    REQUIRE(spin_for<fake_clock>(50us, 20us, look));
    CHECK(inside == before + 1);
    CHECK(count_here() == before);
    ::sched_setaffinity(0, sizeof old_set, &old_set);
}
