// Tests of event_loop: callbacks (FIFO, timers, cancellation), cross-thread
// wake-ups, fd readiness (callbacks and awaitables), signals, errors from
// callbacks, stop/run misuse, the clock, and that a loop leaks no fds.
#include <offload/event_loop.hpp>

#include <offload/run.hpp>
#include <offload/sleep.hpp>
#include <offload/task.hpp>
#include <offload/task_handle.hpp>

#include <busy_wait.hpp>
#include <fd_count.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <fcntl.h>
#include <random>
#include <stdexcept>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace offload;
using namespace std::chrono_literals;

namespace {

// A pipe or socketpair that closes its ends.
struct fd_pair {
    int fd[2] = {-1, -1};
    ~fd_pair() {
        for (int f : fd)
            if (f >= 0) ::close(f);
    }
};

fd_pair make_pipe() {
    fd_pair p;
    REQUIRE(::pipe2(p.fd, O_NONBLOCK | O_CLOEXEC) == 0);
    return p;
}

fd_pair make_socketpair() {
    fd_pair p;
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, p.fd) == 0);
    return p;
}

void write_byte(int fd, char c) { REQUIRE(::write(fd, &c, 1) == 1); }

char read_byte(int fd) {
    char c = 0;
    REQUIRE(::read(fd, &c, 1) == 1);
    return c;
}

task<char> read_when_readable(int fd) {
    co_await event_loop::current().readable(fd);
    co_return read_byte(fd);
}

task<> wait_readable(int fd) { co_await event_loop::current().readable(fd); }

task<int> yield_then(int v) {
    co_await sleep(0ms);
    co_return v;
}

} // namespace

TEST_CASE("event_loop: call_soon callbacks run in FIFO order", "[event_loop]") {
    event_loop loop;
    std::vector<int> order;
    for (int i = 0; i < 100; ++i) loop.call_soon([&order, i] { order.push_back(i); });
    loop.call_soon([&loop] { loop.stop(); });
    loop.run_forever();
    REQUIRE(order.size() == 100u);
    REQUIRE(std::is_sorted(order.begin(), order.end()));
}

TEST_CASE("event_loop: call_later and call_at callbacks run in deadline order", "[event_loop][timers]") {
    event_loop loop;
    std::vector<int> order;
    loop.call_later(30ms, [&order] { order.push_back(3); });
    loop.call_later(10ms, [&order] { order.push_back(1); });
    loop.call_at(loop.time() + 20ms, [&order] { order.push_back(2); });
    loop.call_at(loop.time() + 20ms, [&order] { order.push_back(22); }); // same deadline: FIFO
    loop.call_later(0ms, [&order] { order.push_back(0); });
    loop.call_later(40ms, [&loop] { loop.stop(); });
    loop.run_forever();
    REQUIRE(order == std::vector<int>{0, 1, 2, 22, 3});
}

TEST_CASE("event_loop: a 20 ms timer fires no earlier than 20 ms and not much later", "[event_loop][timers]") {
    event_loop loop;
    const auto t0 = loop.time();
    event_loop::duration took{};
    loop.call_later(20ms, [&] {
        took = loop.time() - t0;
        loop.stop();
    });
    loop.run_forever();
    REQUIRE(took >= 20ms);
    REQUIRE(took < 200ms); // generous: only catches a loop that oversleeps badly
}

TEST_CASE("event_loop: a cancelled timer never runs its callback", "[event_loop][timers]") {
    event_loop loop;
    bool ran = false;
    timer_handle h = loop.call_later(5ms, [&ran] { ran = true; });
    REQUIRE(loop.scheduled_timers() == 1u);
    h.cancel();
    h.cancel(); // harmless twice
    REQUIRE(h.cancelled());
    REQUIRE(loop.scheduled_timers() == 0u);
    loop.call_later(30ms, [&loop] { loop.stop(); });
    loop.run_forever();
    REQUIRE_FALSE(ran);
}

TEST_CASE("event_loop: 100k timers scheduled then cancelled leave no timer behind", "[event_loop][timers]") {
    event_loop loop;
    constexpr std::size_t n = 100'000;
    std::vector<timer_handle> handles;
    handles.reserve(n);
    std::mt19937 rng(12345);
    for (std::size_t i = 0; i < n; ++i)
        handles.push_back(loop.call_later(std::chrono::milliseconds(1'000'000 + rng() % 100'000), [] {}));
    REQUIRE(loop.scheduled_timers() == n);
    std::shuffle(handles.begin(), handles.end(), rng); // cancel from anywhere in the heap
    for (auto& h : handles) h.cancel();
    REQUIRE(loop.scheduled_timers() == 0u);
    handles.clear();
    // The loop still works afterwards.
    bool ran = false;
    loop.call_later(1ms, [&] {
        ran = true;
        loop.stop();
    });
    loop.run_forever();
    REQUIRE(ran);
}

TEST_CASE("event_loop: call_soon_threadsafe from 8 threads runs every call exactly once on the loop thread",
          "[event_loop][threads]") {
    constexpr std::size_t threads = 8;
    constexpr std::size_t per_thread = 100'000;
    constexpr std::size_t total = threads * per_thread;
    event_loop loop;
    const auto loop_thread = std::this_thread::get_id();
    std::vector<int> hits(total, 0); // touched on the loop thread only
    std::size_t arrived = 0;
    std::size_t wrong_thread = 0;

    std::vector<std::thread> producers;
    for (std::size_t t = 0; t < threads; ++t)
        producers.emplace_back([&, t] {
            for (std::size_t i = 0; i < per_thread; ++i) {
                const std::size_t id = t * per_thread + i;
                loop.call_soon_threadsafe([&, id] {
                    if (std::this_thread::get_id() != loop_thread) ++wrong_thread;
                    ++hits[id];
                    if (++arrived == total) loop.stop();
                });
            }
        });
    loop.run_forever();
    for (auto& th : producers) th.join();

    REQUIRE(arrived == total);
    REQUIRE(wrong_thread == 0u);
    REQUIRE(std::all_of(hits.begin(), hits.end(), [](int h) { return h == 1; }));
}

TEST_CASE("event_loop: call_soon_threadsafe wakes a loop that sleeps with no timers", "[event_loop][threads]") {
    event_loop loop;
    std::atomic<bool> ran{false};
    // The loop has nothing to do: it blocks in epoll with no timeout. Only the
    // wake-up can end this test (a hang here is a lost wake-up).
    std::thread poker([&] {
        std::this_thread::sleep_for(50ms);
        loop.call_soon_threadsafe([&] {
            ran = true;
            loop.stop();
        });
    });
    REQUIRE(loop.scheduled_timers() == 0u);
    loop.run_forever();
    poker.join();
    REQUIRE(ran);
}

TEST_CASE("event_loop: add_reader calls back when a pipe is readable, remove_reader stops it", "[event_loop][io]") {
    event_loop loop;
    fd_pair p = make_pipe();
    std::vector<char> got;
    bool removed = false;
    loop.add_reader(p.fd[0], [&] {
        got.push_back(read_byte(p.fd[0]));
        if (got.size() == 2) removed = loop.remove_reader(p.fd[0]);
    });
    loop.call_soon([&] { write_byte(p.fd[1], 'a'); });
    loop.call_later(10ms, [&] { write_byte(p.fd[1], 'b'); });
    loop.call_later(20ms, [&] { write_byte(p.fd[1], 'c'); }); // after removal: nobody reads it
    loop.call_later(60ms, [&] { loop.stop(); });
    loop.run_forever();
    REQUIRE(removed);
    REQUIRE(got == std::vector<char>{'a', 'b'});
    REQUIRE_FALSE(loop.remove_reader(p.fd[0]));
    REQUIRE(read_byte(p.fd[0]) == 'c');
}

TEST_CASE("event_loop: a reader callback that adds a writer on the same fd stays registered", "[event_loop][io]") {
    // While a callback runs, the loop holds it outside its slot; changing the
    // other direction of the fd meanwhile must not drop it from epoll.
    event_loop loop;
    fd_pair s = make_socketpair();
    const int a = s.fd[0], b = s.fd[1];
    std::vector<char> got;
    int writes = 0;
    loop.add_reader(b, [&] {
        got.push_back(read_byte(b));
        if (got.size() == 1) {
            loop.add_writer(b, [&] {
                ++writes;
                write_byte(b, 'r');
                loop.remove_writer(b);
                write_byte(a, '2'); // the reader must see this one too
            });
        } else {
            loop.stop();
        }
    });
    loop.call_soon([&] { write_byte(a, '1'); });
    timer_handle guard = loop.call_later(5s, [&] { loop.stop(); }); // ends the test if the reader was lost
    loop.run_forever();
    guard.cancel();
    REQUIRE(writes == 1);
    REQUIRE(got == std::vector<char>{'1', '2'});
    REQUIRE(read_byte(a) == 'r');
    REQUIRE(loop.remove_reader(b));
}

TEST_CASE("event_loop: a reader callback that cancels a writable() wait on the same fd stays registered",
          "[event_loop][io][cancel]") {
    // Full duplex on one socket: a plain reader, and a task waiting until the
    // socket can be written again. When the reader cancels the writer, the
    // reader (running at that moment) must stay watched.
    event_loop loop;
    fd_pair s = make_socketpair();
    const int a = s.fd[0], b = s.fd[1];
    std::string chunk(65536, 'f');
    while (::write(b, chunk.data(), chunk.size()) > 0) {
    } // b's send buffer is full: writable(b) waits
    loop.run_until_complete([](int a_, int b_) -> task<> {
        auto& l = event_loop::current();
        auto writer = create_task([](int fd) -> task<> { co_await event_loop::current().writable(fd); }, b_);
        co_await sleep(0ms);
        REQUIRE_FALSE(writer.done());
        std::vector<char> got;
        l.add_reader(b_, [&got, &writer, b_] {
            got.push_back(read_byte(b_));
            if (got.size() == 1) writer.cancel();
        });
        write_byte(a_, '1');
        REQUIRE_THROWS_AS(co_await writer, cancelled_error);
        REQUIRE(got.size() == 1u);
        write_byte(a_, '2');
        for (int i = 0; i < 2000 && got.size() < 2; ++i) co_await sleep(1ms);
        REQUIRE(got == std::vector<char>{'1', '2'});
        REQUIRE(l.remove_reader(b_));
    }(a, b));
}

TEST_CASE("event_loop: add_writer calls back when a pipe is writable", "[event_loop][io]") {
    event_loop loop;
    fd_pair p = make_pipe();
    int calls = 0;
    loop.add_writer(p.fd[1], [&] {
        ++calls;
        write_byte(p.fd[1], 'w');
        loop.remove_writer(p.fd[1]);
        loop.stop();
    });
    loop.run_forever();
    REQUIRE(calls == 1);
    REQUIRE(read_byte(p.fd[0]) == 'w');
}

TEST_CASE("event_loop: readable() and writable() resume a task when a socket is ready", "[event_loop][io]") {
    event_loop loop;
    fd_pair s = make_socketpair();
    char c = loop.run_until_complete([](int a, int b) -> task<char> {
        auto reader = create_task(read_when_readable(b));
        co_await sleep(1ms); // the reader is waiting now
        REQUIRE_FALSE(reader.done());
        co_await event_loop::current().writable(a);
        write_byte(a, 'z');
        char r = co_await reader;
        co_return r;
    }(s.fd[0], s.fd[1]));
    REQUIRE(c == 'z');
}

TEST_CASE("event_loop: cancelling a readable() wait unregisters it from the fd", "[event_loop][io][cancel]") {
    event_loop loop;
    fd_pair s = make_socketpair();
    loop.run_until_complete([](int a, int b) -> task<> {
        auto& l = event_loop::current();
        auto waiting = create_task(wait_readable(b));
        co_await sleep(0ms);
        REQUIRE(waiting.cancel());
        REQUIRE_THROWS_AS(co_await waiting, cancelled_error);

        // A new awaitable wait on the same fd is accepted (it is exclusive)...
        auto again = create_task(read_when_readable(b));
        co_await sleep(0ms);
        write_byte(a, '1');
        char first = co_await again;
        REQUIRE(first == '1');

        // ...and so is a plain reader; the cancelled wait's callback never runs.
        int calls = 0;
        l.add_reader(b, [&calls, b] {
            ++calls;
            read_byte(b);
        });
        write_byte(a, '2');
        for (int i = 0; i < 100 && calls == 0; ++i) co_await sleep(1ms);
        REQUIRE(calls == 1);
        REQUIRE(l.remove_reader(b));
    }(s.fd[0], s.fd[1]));
}

TEST_CASE("event_loop: a signal handler runs on the loop when the signal arrives", "[event_loop][signals]") {
    event_loop loop;
    const auto loop_thread = std::this_thread::get_id();
    int calls = 0;
    bool on_loop_thread = false;
    loop.add_signal_handler(SIGUSR1, [&] {
        ++calls;
        on_loop_thread = std::this_thread::get_id() == loop_thread;
        loop.stop();
    });
    loop.call_soon([] { ::kill(::getpid(), SIGUSR1); });
    loop.run_forever();
    REQUIRE(calls == 1);
    REQUIRE(on_loop_thread);
    REQUIRE(loop.remove_signal_handler(SIGUSR1));
    REQUIRE_FALSE(loop.remove_signal_handler(SIGUSR1));
    sigset_t blocked;
    ::pthread_sigmask(SIG_BLOCK, nullptr, &blocked);
    REQUIRE_FALSE(sigismember(&blocked, SIGUSR1)); // the mask is restored
}

TEST_CASE("event_loop: an exception from a callback reaches the exception handler and the loop goes on",
          "[event_loop][errors]") {
    event_loop loop;
    std::vector<exception_context> seen;
    loop.set_exception_handler([&seen](const exception_context& c) { seen.push_back(c); });
    bool after = false;
    loop.call_soon([] { throw std::runtime_error("callback failure"); });
    loop.call_soon([&] {
        after = true;
        loop.stop();
    });
    loop.run_forever();
    REQUIRE(after);
    REQUIRE(seen.size() == 1u);
    REQUIRE(seen[0].task_name.empty());
    REQUIRE_THROWS_AS(std::rethrow_exception(seen[0].exception), std::runtime_error);
}

TEST_CASE("event_loop: stop() ends run_forever, and the loop can run again", "[event_loop]") {
    event_loop loop;
    int runs = 0;
    for (int i = 0; i < 2; ++i) {
        loop.call_later(1ms, [&] {
            ++runs;
            loop.stop();
        });
        loop.run_forever();
        REQUIRE_FALSE(loop.is_running());
    }
    REQUIRE(runs == 2);
}

TEST_CASE("event_loop: run_until_complete inside a running loop throws std::logic_error", "[event_loop][misuse]") {
    event_loop loop;
    int v = loop.run_until_complete([]() -> task<int> {
        auto& l = event_loop::current();
        REQUIRE_THROWS_AS(l.run_until_complete(yield_then(1)), std::logic_error);
        event_loop other;
        REQUIRE_THROWS_AS(other.run_until_complete(yield_then(2)), std::logic_error);
        REQUIRE(&event_loop::current() == &l); // the running loop is untouched
        int r = co_await yield_then(3);
        co_return r;
    }());
    REQUIRE(v == 3);
}

TEST_CASE("event_loop: current() without a running loop throws std::logic_error", "[event_loop][misuse]") {
    REQUIRE(event_loop::current_or_null() == nullptr);
    REQUIRE_THROWS_AS(event_loop::current(), std::logic_error);
    event_loop loop; // constructed, not running
    REQUIRE_THROWS_AS(event_loop::current(), std::logic_error);
}

TEST_CASE("event_loop: time() never goes backwards", "[event_loop]") {
    event_loop loop;
    auto prev = loop.time();
    for (int i = 0; i < 10'000; ++i) {
        auto now = loop.time();
        REQUIRE(now >= prev);
        prev = now;
    }
}

TEST_CASE("event_loop: a loop closes every fd it opened", "[event_loop][resources]") {
    const std::size_t before = offload::test::fd_count();
    {
        event_loop loop;
        REQUIRE(offload::test::fd_count() > before);
        loop.add_signal_handler(SIGUSR2, [] {});
        fd_pair s = make_socketpair();
        loop.run_until_complete([](int a, int b) -> task<> {
            auto reader = create_task(read_when_readable(b));
            co_await sleep(0ms);
            write_byte(a, 'x');
            co_await reader;
        }(s.fd[0], s.fd[1]));
        REQUIRE(loop.remove_signal_handler(SIGUSR2));
    }
    REQUIRE(offload::test::fd_count() == before);
}

// --- a fair loop: I/O is polled by time, not every N iterations (issue 9) ----------

namespace {
struct cpu_probe {
    int steps = 0;
    bool stop = false;
};

// CPU steps of `step`, yielding with sleep(0s) in between (asyncio's idiom).
task<> cpu_steps(cpu_probe& p, std::chrono::milliseconds step) {
    while (!p.stop) {
        const auto end = std::chrono::steady_clock::now() + step;
        while (std::chrono::steady_clock::now() < end) {
        }
        ++p.steps;
        co_await sleep(0s);
    }
}

task<int> steps_until_readable(int fd, cpu_probe& p) {
    const int before = p.steps;
    co_await event_loop::current().readable(fd);
    co_return p.steps - before;
}
} // namespace

TEST_CASE("event_loop: a readable fd is noticed after a step or two of a task that yields with sleep(0s)",
          "[event_loop][fairness]") {
    // Each step takes 2 ms, far above the loop's polling budget, so the loop
    // must poll between any two steps (it used to poll every 32 iterations).
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    cpu_probe p;
    int waited = run([](int rd, int wr, cpu_probe& p) -> task<int> {
        auto cpu = create_task(cpu_steps(p, 2ms));
        co_await sleep(0s);
        co_await sleep(0s); // the CPU task is in its stride
        auto reader = create_task(steps_until_readable(rd, p));
        co_await sleep(0s); // the reader waits
        REQUIRE(::write(wr, "x", 1) == 1);
        int steps = co_await reader;
        p.stop = true;
        co_await cpu;
        co_return steps;
    }(sv[0], sv[1], p));
    ::close(sv[0]);
    ::close(sv[1]);
    CHECK(waited <= 3);
}

TEST_CASE("event_loop: stats() counts steps, polls and sleeps, and sees tasks, ready steps and timers",
          "[event_loop]") {
    event_loop loop;
    loop.set_debug(false);
    const loop_stats before = loop.stats();
    CHECK(before.steps == 0);
    CHECK(before.tasks == 0);
    auto body = [&]() -> task<> {
        const loop_stats a = loop.stats();
        CHECK(a.tasks == 1); // this one
        loop.call_soon([] {});
        const loop_stats queued = loop.stats();
        CHECK(queued.ready >= 1);
        co_await sleep(2ms); // the loop has nothing to do: it sleeps
        const loop_stats b = loop.stats();
        CHECK(b.steps > a.steps);
        CHECK(b.polls > a.polls);
        CHECK(b.sleeps > a.sleeps);
        CHECK(b.sleeps <= b.polls);
        CHECK(b.slow_steps == 0);
        CHECK_FALSE(b.debug);
        auto h = loop.call_later(1h, [] {});
        CHECK(loop.stats().timers == b.timers + 1);
        h.cancel();
        offload::test::busy_wait(30ms); // slow, but debug mode is off: not counted
        co_await sleep(0ms);
        CHECK(loop.stats().slow_steps == 0);
    };
    loop.run_until_complete(body());
    CHECK(loop.stats().tasks == 0);
}

TEST_CASE("event_loop: stats() counts a slow step in debug mode, once per report", "[event_loop]") {
    event_loop loop;
    loop.set_debug(true);
    loop.set_slow_callback_duration(50ms);
    std::size_t reports = 0;
    loop.set_slow_callback_handler([&reports](const slow_callback_report&) { ++reports; });
    auto body = [&]() -> task<> {
        co_await sleep(1ms);
        offload::test::busy_wait(200ms); // one step that holds the loop
        co_await sleep(1ms);
    };
    loop.run_until_complete(body());
    const loop_stats s = loop.stats();
    CHECK(s.debug);
    CHECK(reports >= 1);
    CHECK(s.slow_steps == reports);
}
