// bench_socket — a socket ping-pong between two tasks of one event loop:
// offload (two offload::async_fd, read_some / write_some) beside asio (two
// coroutines on one io_context, async_read_some / async_write_some with
// use_awaitable) and beside offload's raw way (read/send on plain fds and
// event_loop::readable(fd) / writable(fd) on EAGAIN: what a socket cost
// before async_fd), over an AF_UNIX socketpair and over loopback TCP, with
// 1-byte and 4 KiB messages. Each round trip is timed: median and p99.
// Target: offload's round trip <= 1.0x asio's.
//
// With --syscalls it also counts the system calls of a round trip of each
// side: it runs itself under `strace -f -c` twice with different round
// counts (outside any timing) and divides the difference, so that start-up
// calls cancel out. Target: 0 epoll_ctl per round trip (the registration is
// made once per socket).
//
//   bench_socket [--smoke] [--no-python] [--no-asio] [--json PATH] [--syscalls]
#include "bench_common.hpp"

#include <offload/async_fd.hpp>
#include <offload/event_loop.hpp>
#include <offload/run.hpp>
#include <offload/task.hpp>
#include <offload/task_handle.hpp>

#include <fmt/core.h>

#include <algorithm>

#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <sys/socket.h>
#include <unistd.h>
#include <utility>
#include <vector>

#if OFFLOAD_HAVE_ASIO
// asio 1.22 turns co_await support on under clang only when it finds
// <experimental/coroutine>; libstdc++ 12 has <coroutine> (which asio then uses).
#if defined(__clang__) && defined(__cpp_impl_coroutine) && !defined(ASIO_HAS_CO_AWAIT)
#define ASIO_HAS_CO_AWAIT 1
#endif
#include <asio.hpp>
#endif

namespace {

using namespace offload_bench;

[[noreturn]] void fail(const std::string& what) {
    throw std::runtime_error(fmt::format("bench_socket: {} ({})", what, std::strerror(errno)));
}

// ---------------------------------------------------------------------------
// Connected pairs of non-blocking sockets
// ---------------------------------------------------------------------------

enum class transport { unix_socket, tcp };

constexpr std::size_t read_buffer = 16384;

const char* name_of(transport t) { return t == transport::unix_socket ? "unix" : "tcp"; }

struct fd_pair {
    int a = -1, b = -1;
};

void set_nonblocking(int fd) {
    if (::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) fail("fcntl");
}

fd_pair make_pair(transport t) {
    fd_pair p;
    if (t == transport::unix_socket) {
        int sv[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) fail("socketpair");
        return {sv[0], sv[1]};
    }
    int ls = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (ls < 0) fail("socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(ls, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 || ::listen(ls, 1) < 0 ||
        ::getsockname(ls, reinterpret_cast<sockaddr*>(&addr), &len) < 0)
        fail("bind/listen on 127.0.0.1");
    p.a = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (p.a < 0 || ::connect(p.a, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) fail("connect");
    p.b = ::accept4(ls, nullptr, nullptr, SOCK_CLOEXEC);
    if (p.b < 0) fail("accept");
    ::close(ls);
    int one = 1;
    for (int fd : {p.a, p.b}) {
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        set_nonblocking(fd);
    }
    return p;
}

// ---------------------------------------------------------------------------
// offload: two tasks, each owning one end as an async_fd
// ---------------------------------------------------------------------------

// Both sides move each message with read_some / write_some calls in the
// coroutine itself (no nested coroutine per message), asio's too. Reads go
// into a buffer of read_buffer bytes, as a server's would (asio's and
// tokio's echo examples read into 1 KiB), until the message is complete.
offload::task<> offload_pong(offload::async_fd& fd, std::size_t size) {
    std::vector<std::byte> buf(std::max(size, read_buffer));
    for (;;) {
        for (std::size_t got = 0; got < size;) {
            std::size_t n = co_await fd.read_some(std::span(buf).subspan(got, buf.size() - got));
            if (n == 0) co_return; // end of file
            got += n;
        }
        for (std::size_t put = 0; put < size;) put += co_await fd.write_some(std::span(buf).subspan(put, size - put));
    }
}

// Runs `rounds` timed round trips after `warmup` untimed ones; the samples in ns.
std::vector<double> offload_pingpong(transport t, std::size_t size, long warmup, long rounds) {
    fd_pair p = make_pair(t);
    std::vector<double> samples;
    samples.reserve(static_cast<std::size_t>(rounds));
    offload::run([](fd_pair fds, std::size_t sz, long w, long n, std::vector<double>* out) -> offload::task<> {
        offload::async_fd a(fds.a), b(fds.b);
        auto ponger = offload::create_task(offload_pong(b, sz));
        std::vector<std::byte> msg(sz, std::byte{'p'}), back(std::max(sz, read_buffer));
        for (long i = 0; i < w + n; ++i) {
            auto t0 = bench_clock::now();
            for (std::size_t put = 0; put < sz;) put += co_await a.write_some(std::span(msg).subspan(put));
            for (std::size_t got = 0; got < sz;) {
                std::size_t k = co_await a.read_some(std::span(back).subspan(got, back.size() - got));
                if (k == 0) throw std::runtime_error("bench_socket: early end of file");
                got += k;
            }
            if (i >= w) out->push_back(ns_since(t0));
        }
        ::shutdown(a.fd(), SHUT_WR);
        co_await ponger;
    }(p, size, warmup, rounds, &samples));
    return samples;
}

// ---------------------------------------------------------------------------
// offload before async_fd: raw fds, event_loop::readable(fd) (level-triggered,
// registered for each wait: an EPOLL_CTL_ADD and a DEL per wait)
// ---------------------------------------------------------------------------

// Reads (or writes) once the fd is ready; a raw loop's way.
offload::task<std::size_t> raw_read(int fd, std::span<std::byte> buf) {
    for (;;) {
        ssize_t n = ::read(fd, buf.data(), buf.size());
        if (n >= 0) co_return static_cast<std::size_t>(n);
        if (errno != EAGAIN) fail("read");
        co_await offload::event_loop::current().readable(fd);
    }
}

offload::task<std::size_t> raw_write(int fd, std::span<const std::byte> buf) {
    for (;;) {
        ssize_t n = ::send(fd, buf.data(), buf.size(), MSG_NOSIGNAL);
        if (n >= 0) co_return static_cast<std::size_t>(n);
        if (errno != EAGAIN) fail("send");
        co_await offload::event_loop::current().writable(fd);
    }
}

offload::task<> raw_pong(int fd, std::size_t size) {
    std::vector<std::byte> buf(std::max(size, read_buffer));
    for (;;) {
        for (std::size_t got = 0; got < size;) {
            std::size_t n = co_await raw_read(fd, std::span(buf).subspan(got, buf.size() - got));
            if (n == 0) co_return;
            got += n;
        }
        for (std::size_t put = 0; put < size;) put += co_await raw_write(fd, std::span(buf).subspan(put, size - put));
    }
}

std::vector<double> raw_pingpong(transport t, std::size_t size, long warmup, long rounds) {
    fd_pair p = make_pair(t);
    std::vector<double> samples;
    samples.reserve(static_cast<std::size_t>(rounds));
    offload::run([](fd_pair fds, std::size_t sz, long w, long n, std::vector<double>* out) -> offload::task<> {
        auto ponger = offload::create_task(raw_pong(fds.b, sz));
        std::vector<std::byte> msg(sz, std::byte{'p'}), back(std::max(sz, read_buffer));
        for (long i = 0; i < w + n; ++i) {
            auto t0 = bench_clock::now();
            for (std::size_t put = 0; put < sz;) put += co_await raw_write(fds.a, std::span(msg).subspan(put));
            for (std::size_t got = 0; got < sz;) {
                std::size_t k = co_await raw_read(fds.a, std::span(back).subspan(got, back.size() - got));
                if (k == 0) throw std::runtime_error("bench_socket: early end of file");
                got += k;
            }
            if (i >= w) out->push_back(ns_since(t0));
        }
        ::shutdown(fds.a, SHUT_WR);
        co_await ponger;
    }(p, size, warmup, rounds, &samples));
    ::close(p.a);
    ::close(p.b);
    return samples;
}

// ---------------------------------------------------------------------------
// asio: the same two coroutines on one io_context
// ---------------------------------------------------------------------------

#if OFFLOAD_HAVE_ASIO
template <class Socket>
asio::awaitable<void> asio_pong(Socket& s, std::size_t size) {
    std::vector<std::byte> buf(std::max(size, read_buffer));
    try {
        for (;;) {
            for (std::size_t got = 0; got < size;)
                got += co_await s.async_read_some(asio::buffer(buf.data() + got, buf.size() - got),
                                                  asio::use_awaitable);
            for (std::size_t put = 0; put < size;)
                put += co_await s.async_write_some(asio::buffer(buf.data() + put, size - put), asio::use_awaitable);
        }
    } catch (const std::system_error&) { // end of file
    }
}

template <class Socket>
asio::awaitable<void> asio_ping(Socket& s, std::size_t size, long w, long n, std::vector<double>* out) {
    std::vector<std::byte> msg(size, std::byte{'p'}), back(std::max(size, read_buffer));
    for (long i = 0; i < w + n; ++i) {
        auto t0 = bench_clock::now();
        for (std::size_t put = 0; put < size;)
            put += co_await s.async_write_some(asio::buffer(msg.data() + put, size - put), asio::use_awaitable);
        for (std::size_t got = 0; got < size;)
            got += co_await s.async_read_some(asio::buffer(back.data() + got, back.size() - got), asio::use_awaitable);
        if (i >= w) out->push_back(ns_since(t0));
    }
    s.shutdown(asio::socket_base::shutdown_send);
}

template <class Socket, class Protocol>
void asio_run_pair(fd_pair p, Protocol proto, std::size_t size, long warmup, long rounds, std::vector<double>& out) {
    asio::io_context ioc{1};
    Socket a(ioc, proto, p.a), b(ioc, proto, p.b);
    auto rethrow = [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
    };
    asio::co_spawn(ioc, asio_pong(b, size), rethrow);
    asio::co_spawn(ioc, asio_ping(a, size, warmup, rounds, &out), rethrow);
    ioc.run();
}

std::vector<double> asio_pingpong(transport t, std::size_t size, long warmup, long rounds) {
    fd_pair p = make_pair(t);
    std::vector<double> samples;
    samples.reserve(static_cast<std::size_t>(rounds));
    if (t == transport::unix_socket)
        asio_run_pair<asio::local::stream_protocol::socket>(p, asio::local::stream_protocol(), size, warmup, rounds,
                                                            samples);
    else
        asio_run_pair<asio::ip::tcp::socket>(p, asio::ip::tcp::v4(), size, warmup, rounds, samples);
    return samples;
}
#endif

// ---------------------------------------------------------------------------
// System calls per round trip, counted with strace outside the timing
// ---------------------------------------------------------------------------

// The child mode: `--child offload|raw|asio unix|tcp SIZE ROUNDS` runs round trips untimed.
int run_child(std::string_view who, std::string_view tr, std::size_t size, long rounds) {
    transport t = tr == "tcp" ? transport::tcp : transport::unix_socket;
    if (who == "offload") {
        offload_pingpong(t, size, 0, rounds);
        return 0;
    }
    if (who == "raw") {
        raw_pingpong(t, size, 0, rounds);
        return 0;
    }
#if OFFLOAD_HAVE_ASIO
    if (who == "asio") {
        asio_pingpong(t, size, 0, rounds);
        return 0;
    }
#endif
    return 2;
}

// Runs the child under `strace -f -c` and returns {syscall: calls}.
std::map<std::string, double> strace_counts(const std::string& self, std::string_view who, transport t,
                                            std::size_t size, long rounds) {
    char path[] = "/tmp/bench_socket_strace_XXXXXX";
    int fd = ::mkstemp(path);
    if (fd < 0) fail("mkstemp");
    ::close(fd);
    std::string cmd = fmt::format("strace -f -c -o {} {} --child {} {} {} {} >/dev/null 2>&1", path, self, who,
                                  name_of(t), size, rounds);
    int rc = std::system(cmd.c_str());
    std::map<std::string, double> counts;
    if (rc == 0) {
        if (FILE* f = std::fopen(path, "r")) {
            char line[512];
            while (std::fgets(line, sizeof line, f)) {
                // "% time     seconds  usecs/call     calls    errors syscall"
                double pct, secs;
                long usecs, calls, errors;
                char name[128];
                if (std::sscanf(line, "%lf %lf %ld %ld %ld %127s", &pct, &secs, &usecs, &calls, &errors, name) == 6 ||
                    std::sscanf(line, "%lf %lf %ld %ld %127s", &pct, &secs, &usecs, &calls, name) == 5)
                    if (std::string_view(name) != "total") counts[name] += static_cast<double>(calls);
            }
            std::fclose(f);
        }
    }
    ::unlink(path);
    return counts;
}

struct syscall_profile {
    double total = 0;
    std::map<std::string, double> per_call; // per round trip
};

// (calls with `big` rounds - calls with `small` rounds) / (big - small).
std::optional<syscall_profile> syscalls_per_round_trip(const std::string& self, std::string_view who, transport t,
                                                       std::size_t size, long small, long big) {
    auto lo = strace_counts(self, who, t, size, small);
    auto hi = strace_counts(self, who, t, size, big);
    if (lo.empty() || hi.empty()) return std::nullopt;
    syscall_profile p;
    for (auto& [name, calls] : hi) {
        double d = (calls - (lo.count(name) ? lo[name] : 0.0)) / static_cast<double>(big - small);
        if (d < 0.005) continue;
        p.per_call[name] = d;
        p.total += d;
    }
    return p;
}

std::string describe(const syscall_profile& p) {
    std::string s;
    for (auto& [name, n] : p.per_call) s += fmt::format("{}{} {:.2f}", s.empty() ? "" : ", ", name, n);
    return s;
}

struct config : options {
    int repeats = 3;
    long warmup = 2'000;
    long rounds = 20'000;
    bool syscalls = false;
    std::vector<std::size_t> sizes = {1, 4096};
};

} // namespace

int main(int argc, char** argv) {
    // Our own flags first (parse_options knows only the common ones).
    std::vector<char*> args;
    bool syscalls = false;
    for (int i = 0; i < argc; ++i) {
        std::string_view a = argv[i];
        if (a == "--child" && i + 4 < argc)
            return run_child(argv[i + 1], argv[i + 2], std::strtoul(argv[i + 3], nullptr, 10),
                             std::strtol(argv[i + 4], nullptr, 10));
        if (a == "--syscalls")
            syscalls = true;
        else
            args.push_back(argv[i]);
    }
    config cfg;
    cfg.syscalls = syscalls;
    if (auto rc = parse_options(static_cast<int>(args.size()), args.data(), cfg, "bench_socket.json",
                                OFFLOAD_HAVE_ASIO + 0 != 0))
        return *rc;
    if (cfg.smoke) {
        cfg.repeats = 1;
        cfg.warmup = 50;
        cfg.rounds = 300;
    }
#if !OFFLOAD_HAVE_ASIO
    cfg.asio = false;
#endif

    std::vector<row> rows;
    std::vector<std::string> syscall_lines;
    std::string extra;
    for (transport t : {transport::unix_socket, transport::tcp}) {
        for (std::size_t size : cfg.sizes) {
            // Interleave the two sides per repeat, so that both see the same machine.
            std::vector<double> off_med, off_p99, asio_med, asio_p99, raw_med, raw_p99;
            for (int r = 0; r < cfg.repeats; ++r) {
                auto s = offload_pingpong(t, size, cfg.warmup, cfg.rounds);
                off_med.push_back(median(s));
                off_p99.push_back(percentile(s, 0.99));
                auto w = raw_pingpong(t, size, cfg.warmup, cfg.rounds);
                raw_med.push_back(median(w));
                raw_p99.push_back(percentile(w, 0.99));
#if OFFLOAD_HAVE_ASIO
                if (cfg.asio) {
                    auto q = asio_pingpong(t, size, cfg.warmup, cfg.rounds);
                    asio_med.push_back(median(q));
                    asio_p99.push_back(percentile(q, 0.99));
                }
#endif
            }
            auto asio_peer = [&](std::vector<double>& v) {
                if (v.empty()) return peer{"asio", std::nullopt, cfg.asio ? "n/a (no asio.hpp)" : "n/a (--no-asio)"};
                return peer{"asio", median(v), ""};
            };
            std::string what = fmt::format("{} {}", name_of(t), size == 1 ? "1 B" : fmt::format("{} B", size));
            rows.emplace_back(fmt::format("{}_{}B_median_ns", name_of(t), size),
                              fmt::format("ping-pong round trip, {}, median", what), kind::time_ns, median(off_med),
                              std::vector<peer>{asio_peer(asio_med), peer{"readable(fd)", median(raw_med), ""}}, "asio",
                              1.0);
            rows.emplace_back(fmt::format("{}_{}B_p99_ns", name_of(t), size),
                              fmt::format("ping-pong round trip, {}, p99", what), kind::time_ns, median(off_p99),
                              std::vector<peer>{asio_peer(asio_p99), peer{"readable(fd)", median(raw_p99), ""}}, "",
                              0.0);
        }
    }

    if (cfg.syscalls) {
        const std::string self = "/proc/self/exe";
        char exe[4096];
        ssize_t len = ::readlink(self.c_str(), exe, sizeof exe - 1);
        std::string me = len > 0 ? std::string(exe, static_cast<std::size_t>(len)) : std::string(argv[0]);
        const long small = cfg.smoke ? 100 : 1'000, big = cfg.smoke ? 600 : 11'000;
        fmt::print("\ncounting system calls with strace -f -c ({} and {} round trips, difference)...\n", small, big);
        for (transport t : {transport::unix_socket, transport::tcp}) {
            auto off = syscalls_per_round_trip(me, "offload", t, 1, small, big);
            std::optional<syscall_profile> as, raw = syscalls_per_round_trip(me, "raw", t, 1, small, big);
#if OFFLOAD_HAVE_ASIO
            if (cfg.asio) as = syscalls_per_round_trip(me, "asio", t, 1, small, big);
#endif
            if (!off) {
                fmt::print("strace not usable here (not installed, or ptrace not permitted): no syscall rows\n");
                break;
            }
            auto ctl = [](const syscall_profile& p) {
                auto it = p.per_call.find("epoll_ctl");
                return it == p.per_call.end() ? 0.0 : it->second;
            };
            auto cell = [](const std::optional<syscall_profile>& p, double v) {
                return p ? fmt::format("{:.2f}", v) : std::string("n/a");
            };
            syscall_lines.push_back(fmt::format("{:<34} | {:>7.2f} | {:>7} | {:>12}",
                                                fmt::format("{}, all syscalls", name_of(t)), off->total,
                                                cell(as, as ? as->total : 0), cell(raw, raw ? raw->total : 0)));
            syscall_lines.push_back(fmt::format(
                "{:<34} | {:>7.2f} | {:>7} | {:>12}",
                fmt::format("{}, epoll_ctl (target 0): {}", name_of(t), ctl(*off) < 0.01 ? "met" : "NOT met"),
                ctl(*off), cell(as, as ? ctl(*as) : 0), cell(raw, raw ? ctl(*raw) : 0)));
            fmt::print("  {} offload: {:.2f} per round trip ({})\n", name_of(t), off->total, describe(*off));
            if (as) fmt::print("  {} asio:    {:.2f} per round trip ({})\n", name_of(t), as->total, describe(*as));
            if (raw)
                fmt::print("  {} readable(fd): {:.2f} per round trip ({})\n", name_of(t), raw->total, describe(*raw));
            extra += fmt::format("  \"{}_syscalls_per_round_trip_offload\": {:.3f},\n", name_of(t), off->total);
            extra += fmt::format("  \"{}_epoll_ctl_per_round_trip_offload\": {:.3f},\n", name_of(t), ctl(*off));
            if (as) {
                extra += fmt::format("  \"{}_syscalls_per_round_trip_asio\": {:.3f},\n", name_of(t), as->total);
                extra += fmt::format("  \"{}_epoll_ctl_per_round_trip_asio\": {:.3f},\n", name_of(t), ctl(*as));
            }
            if (raw) {
                extra += fmt::format("  \"{}_syscalls_per_round_trip_readable_fd\": {:.3f},\n", name_of(t), raw->total);
                extra += fmt::format("  \"{}_epoll_ctl_per_round_trip_readable_fd\": {:.3f},\n", name_of(t), ctl(*raw));
            }
            extra += fmt::format("  \"{}_syscalls_offload\": \"{}\",\n", name_of(t), json_escape(describe(*off)));
            if (as) extra += fmt::format("  \"{}_syscalls_asio\": \"{}\",\n", name_of(t), json_escape(describe(*as)));
        }
    }

    fmt::print("\nbench_socket: ping-pong between two tasks of one loop over a socket ({} round trips x {} "
               "repeats; median of the repeats' medians / p99s)\n",
               cfg.rounds, cfg.repeats);
    print_table(rows, 2);
    if (!syscall_lines.empty()) {
        fmt::print("\nsystem calls per round trip, 1 B (strace -f -c, outside the timing)\n");
        fmt::print("{:<34} | {:>7} | {:>7} | {:>12}\n", "", "offload", "asio", "readable(fd)");
        for (auto& l : syscall_lines) fmt::print("{}\n", l);
    }
    extra += fmt::format("  \"rounds\": {},\n", cfg.rounds);
    write_json(cfg.json_path, "bench_socket", cfg.smoke, cfg.repeats, rows, extra);
    return 0;
}
