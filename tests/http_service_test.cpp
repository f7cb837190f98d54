// examples/http_service.cpp run as a whole: the test starts the built program
// on an ephemeral port (OFFLOAD_HTTP_SERVICE, set by CMake), reads the port
// from its "listening on" line, and talks to it with a client written with
// open_connection: the endpoints in the three modes, malformed input, a client
// that hangs up mid-request, a worker killed with SIGKILL, fds over 1,000
// connections, and the SIGTERM drain.
#include "proc_check.hpp"

#include <offload/offload.hpp>
#include <offload/stream.hpp>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>

#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

extern char** environ;

namespace {

using offload::task;
using namespace std::chrono_literals;

// The service's CPU function, computed here independently.
std::uint64_t expected_cpu(std::uint64_t n) {
    std::uint64_t x = 88172645463325252ull;
    for (std::uint64_t i = 0; i < n; ++i) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    return x;
}

// n large enough that a call runs until it is cancelled or killed (about 10 s).
constexpr std::uint64_t forever_n = 10'000'000'000ull;

/// The example running as a child process in its own process group; killed
/// (with its group) if a test ends without stopping it.
class service_process {
public:
    explicit service_process(std::vector<std::string> args) {
        int out[2];
        REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, out[1], 1);
        posix_spawnattr_t attr;
        posix_spawnattr_init(&attr);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        posix_spawnattr_setpgroup(&attr, 0);
        sigset_t none, all;
        sigemptyset(&none);
        sigfillset(&all);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setsigdefault(&attr, &all); // whatever the test runner ignores or handles
        args.insert(args.begin(), OFFLOAD_HTTP_SERVICE);
        args.insert(args.end(), {"--port", "0"});
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        int rc = ::posix_spawn(&pid_, OFFLOAD_HTTP_SERVICE, &fa, &attr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        ::close(out[1]);
        if (rc != 0) {
            ::close(out[0]);
            FAIL("posix_spawn " OFFLOAD_HTTP_SERVICE " failed: " << rc);
        }
        out_ = out[0];
        // "listening on 127.0.0.1:PORT\n" (sanitizer builds start slowly).
        std::string line;
        auto until = std::chrono::steady_clock::now() + 30s;
        while (line.find('\n') == std::string::npos && std::chrono::steady_clock::now() < until) {
            pollfd p{out_, POLLIN, 0};
            if (::poll(&p, 1, 100) <= 0) continue;
            char buf[256];
            ssize_t n = ::read(out_, buf, sizeof buf);
            if (n <= 0) break;
            line.append(buf, static_cast<std::size_t>(n));
        }
        INFO("the service printed: " << line);
        REQUIRE(line.rfind("listening on 127.0.0.1:", 0) == 0);
        auto colon = line.rfind(':');
        port_ = static_cast<std::uint16_t>(std::stoi(line.substr(colon + 1)));
    }
    service_process(const service_process&) = delete;
    service_process& operator=(const service_process&) = delete;
    ~service_process() {
        if (pid_ > 0) {
            ::kill(-pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
        if (out_ >= 0) ::close(out_);
    }

    pid_t pid() const noexcept { return pid_; }
    std::uint16_t port() const noexcept { return port_; }

    /// Sends `sig` to the service process (or to its whole group).
    void signal(int sig, bool group = false) const { ::kill(group ? -pid_ : pid_, sig); }

    /// Waits for the service to exit: its exit status, 128 + the signal that
    /// killed it, or -1 if it did not exit in time.
    int wait_exit(std::chrono::seconds limit = 30s) {
        int status = 0;
        bool exited = offload::test::wait_until([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; }, limit);
        if (!exited) return -1;
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }

private:
    pid_t pid_ = -1;
    int out_ = -1;
    std::uint16_t port_ = 0;
};

/// Every process below `pid` (children, their children, ...).
std::vector<pid_t> descendants(pid_t pid) {
    std::vector<pid_t> out;
    for (pid_t c : offload::test::children_of(pid)) {
        out.push_back(c);
        for (pid_t g : descendants(c)) out.push_back(g);
    }
    return out;
}

/// The pool's worker processes: the descendants without children of their own
/// (with forkserver, the server is the service's child and the workers its children).
std::vector<pid_t> worker_pids(pid_t service) {
    std::vector<pid_t> out;
    for (pid_t p : descendants(service))
        if (offload::test::children_of(p).empty() && offload::test::proc_state(p) != 'Z') out.push_back(p);
    return out;
}

std::size_t fds_of(pid_t pid) {
    std::size_t n = 0;
    if (DIR* d = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str())) {
        while (dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
        ::closedir(d);
    }
    return n;
}

struct response {
    int status = 0;
    std::string head;
    std::string body;
    bool closes() const { return head.find("Connection: close") != std::string::npos; }
};

/// Reads one response (head, then Content-Length bytes of body).
task<response> read_response(offload::stream& s) {
    response r;
    r.head = co_await s.read_until("\r\n\r\n");
    r.status = std::stoi(r.head.substr(9, 3));
    auto at = r.head.find("Content-Length: ");
    REQUIRE(at != std::string::npos);
    std::size_t len = std::stoul(r.head.substr(at + 16));
    r.body = co_await s.read_exactly(len);
    co_return r;
}

/// Sends `GET target` (plus `headers`, each ending in \r\n) and reads the response.
task<response> get(offload::stream& s, std::string target, std::string headers = {}) {
    s.write("GET " + target + " HTTP/1.1\r\nHost: test\r\n" + headers + "\r\n");
    co_await s.drain();
    co_return co_await read_response(s);
}

/// One request on a new connection.
task<response> get_once(std::uint16_t port, std::string target) {
    auto s = co_await offload::open_connection("127.0.0.1", port);
    auto r = co_await get(s, std::move(target), "Connection: close\r\n");
    s.close();
    co_return r;
}

/// The value of the first sample of /metrics whose line starts with `prefix` (-1: none).
double metric(const std::string& text, std::string_view prefix) {
    std::size_t at = 0;
    while ((at = text.find(prefix, at)) != std::string::npos) {
        if (at == 0 || text[at - 1] == '\n') {
            auto sp = text.find(' ', at + prefix.size());
            auto nl = text.find('\n', at);
            if (sp != std::string::npos && sp < nl) return std::stod(text.substr(sp + 1, nl - sp - 1));
        }
        ++at;
    }
    return -1;
}

/// Polls /metrics until `prefix`'s value reaches `at_least` (bounded).
task<bool> metric_reaches(std::uint16_t port, std::string prefix, double at_least, std::chrono::seconds limit = 20s) {
    auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
        auto r = co_await get_once(port, "/metrics");
        if (metric(r.body, prefix) >= at_least) co_return true;
        co_await offload::sleep(10ms);
    }
    co_return false;
}

// The metric names the checks read (the library's families, and the example's own).
constexpr const char* busy_metric = "offload_executor_busy{pool=\"cpu\"}";
constexpr const char* cancelled_metric = "offload_executor_cancelled_total{pool=\"cpu\"}";
constexpr const char* crashes_metric = "offload_executor_crashes_total{pool=\"cpu\"}";
constexpr const char* abandoned_metric = "http_cpu_abandoned_total";

} // namespace

TEST_CASE("http_service: /ping and /cpu answer in every mode, over one keep-alive connection", "[http_service]") {
    for (const char* mode : {"inline", "thread", "process"}) {
        INFO("mode " << mode);
        service_process svc({"--mode", mode, "--workers", "1"});
        offload::run([](std::uint16_t port) -> task<> {
            auto s = co_await offload::open_connection("127.0.0.1", port);
            for (std::uint64_t n : {0ull, 1ull, 12345ull, 1'000'000ull}) {
                auto ping = co_await get(s, "/ping");
                CHECK(ping.status == 200);
                CHECK(ping.body == "pong\n");
                CHECK_FALSE(ping.closes());
                auto cpu = co_await get(s, "/cpu?n=" + std::to_string(n));
                CHECK(cpu.status == 200);
                CHECK(cpu.body == std::to_string(expected_cpu(n)) + "\n");
            }
            auto m = co_await get(s, "/metrics");
            CHECK(m.status == 200);
            CHECK(m.body.find("# TYPE http_responses_total counter") != std::string::npos);
            CHECK(metric(m.body, "http_responses_total{status=\"200\"}") >= 8);
            s.close();
        }(svc.port()));
        svc.signal(SIGTERM);
        CHECK(svc.wait_exit() == 0);
    }
}

TEST_CASE("http_service: bad requests get 400, 404, 405, 413, 431 and the connection rules", "[http_service]") {
    service_process svc({"--mode", "process", "--workers", "1"});
    offload::run([](std::uint16_t port) -> task<> {
        auto m = co_await get_once(port, "/metrics");
        CHECK(m.status == 200);
        CHECK(m.body.find("pool=\"cpu\"") != std::string::npos); // the pool's families
        CHECK(metric(m.body, busy_metric) == 0);

        auto nope = co_await get_once(port, "/nope");
        CHECK(nope.status == 404);
        for (const char* bad : {"/cpu", "/cpu?n=", "/cpu?n=abc", "/cpu?n=-1", "/cpu?n=10000000001"}) {
            INFO(bad);
            auto r = co_await get_once(port, bad);
            CHECK(r.status == 400);
        }

        auto s = co_await offload::open_connection("127.0.0.1", port);
        s.write("POST /ping HTTP/1.1\r\nHost: t\r\n\r\n");
        auto post = co_await read_response(s);
        CHECK(post.status == 405);
        CHECK(post.head.find("Allow: GET") != std::string::npos);
        // Two requests in one write (pipelining): both answered, in order.
        s.write("GET /ping HTTP/1.1\r\n\r\nGET /cpu?n=7 HTTP/1.1\r\n\r\n");
        auto p1 = co_await read_response(s);
        auto p2 = co_await read_response(s);
        CHECK(p1.body == "pong\n");
        CHECK(p2.body == std::to_string(expected_cpu(7)) + "\n");
        // Connection: close is honoured.
        auto last = co_await get(s, "/ping", "Connection: close\r\n");
        CHECK(last.closes());
        auto eof = co_await s.read(1);
        CHECK(eof.empty());
        s.close();

        // Malformed, a body, an unknown version, an oversized head: an error, then the server closes.
        const std::string huge(9000, 'a');
        for (auto [raw, status] :
             std::vector<std::pair<std::string, int>>{{"GARBAGE\r\n\r\n", 400},
                                                      {"GET /ping HTTP/1.1\r\nno colon here\r\n\r\n", 400},
                                                      {"POST /ping HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 413},
                                                      {"GET /ping HTTP/2.0\r\n\r\n", 505},
                                                      {"GET /ping HTTP/1.1\r\nX-Big: " + huge + "\r\n\r\n", 431}}) {
            INFO(raw.substr(0, 40));
            auto c = co_await offload::open_connection("127.0.0.1", port);
            c.write(raw);
            auto r = co_await read_response(c);
            CHECK(r.status == status);
            CHECK(r.closes());
            auto end = co_await c.read(1);
            CHECK(end.empty());
            c.close();
        }
        // HTTP/1.0 closes unless asked to keep alive.
        auto c = co_await offload::open_connection("127.0.0.1", port);
        c.write("GET /ping HTTP/1.0\r\n\r\n");
        auto r10 = co_await read_response(c);
        CHECK(r10.status == 200);
        CHECK(r10.closes());
        c.close();
    }(svc.port()));
    svc.signal(SIGTERM);
    CHECK(svc.wait_exit() == 0);
}

TEST_CASE("http_service: a client that hangs up mid-request gets its call cancelled", "[http_service]") {
    for (const char* mode : {"thread", "process"}) {
        INFO("mode " << mode);
        service_process svc({"--mode", mode, "--workers", "1"});
        offload::run([](std::uint16_t port) -> task<> {
            auto s = co_await offload::open_connection("127.0.0.1", port);
            s.write("GET /cpu?n=" + std::to_string(forever_n) + " HTTP/1.1\r\n\r\n");
            co_await s.drain();
            bool running = co_await metric_reaches(port, busy_metric, 1);
            REQUIRE(running);
            s.close(); // hang up while the call runs
            bool abandoned = co_await metric_reaches(port, abandoned_metric, 1);
            CHECK(abandoned);
            bool cancelled = co_await metric_reaches(port, cancelled_metric, 1);
            CHECK(cancelled);
            // The only worker is free again at once (killed and replaced, or its thread stopped).
            auto r = co_await get_once(port, "/cpu?n=1000");
            CHECK(r.status == 200);
            CHECK(r.body == std::to_string(expected_cpu(1000)) + "\n");
        }(svc.port()));
        svc.signal(SIGTERM);
        CHECK(svc.wait_exit() == 0);
    }
}

TEST_CASE("http_service: a worker killed with SIGKILL fails only its request (502), then the pool heals",
          "[http_service]") {
    service_process svc({"--mode", "process", "--workers", "1"});
    offload::run([](pid_t service, std::uint16_t port) -> task<> {
        auto s = co_await offload::open_connection("127.0.0.1", port);
        s.write("GET /cpu?n=" + std::to_string(forever_n) + " HTTP/1.1\r\n\r\n");
        co_await s.drain();
        bool running = co_await metric_reaches(port, busy_metric, 1);
        REQUIRE(running);
        auto workers = worker_pids(service);
        REQUIRE(workers.size() == 1);
        ::kill(workers[0], SIGKILL);
        auto r = co_await read_response(s);
        CHECK(r.status == 502);
        CHECK_FALSE(r.closes()); // the connection itself is fine
        for (int i = 0; i < 5; ++i) {
            auto ok = co_await get(s, "/cpu?n=" + std::to_string(1000 + i));
            CHECK(ok.status == 200);
            CHECK(ok.body == std::to_string(expected_cpu(1000 + i)) + "\n");
        }
        auto m = co_await get(s, "/metrics");
        CHECK(metric(m.body, crashes_metric) == 1);
        CHECK(metric(m.body, "http_responses_total{status=\"502\"}") == 1);
        s.close();
    }(svc.pid(), svc.port()));
    svc.signal(SIGTERM);
    CHECK(svc.wait_exit() == 0);
}

TEST_CASE("http_service: a call over --timeout-ms answers 504 and frees its worker", "[http_service]") {
    service_process svc({"--mode", "process", "--workers", "1", "--timeout-ms", "300"});
    offload::run([](std::uint16_t port) -> task<> {
        auto r = co_await get_once(port, "/cpu?n=" + std::to_string(forever_n));
        CHECK(r.status == 504);
        auto ok = co_await get_once(port, "/cpu?n=10");
        CHECK(ok.status == 200);
    }(svc.port()));
    svc.signal(SIGTERM);
    CHECK(svc.wait_exit() == 0);
}

TEST_CASE("http_service: a thousand connections leave no fd behind", "[http_service]") {
    service_process svc({"--mode", "process", "--workers", "1"});
    offload::run([](pid_t service, std::uint16_t port) -> task<> {
        auto warm = co_await get_once(port, "/cpu?n=1");
        CHECK(warm.status == 200);
        // The server closes its side of a connection as it reads the EOF: wait for that.
        auto fds_settle = [](pid_t service, std::size_t most) -> task<bool> {
            for (int i = 0; i < 1000 && fds_of(service) > most; ++i) co_await offload::sleep(10ms);
            co_return fds_of(service) <= most;
        };
        const std::size_t before = fds_of(service);
        for (int i = 0; i < 1000; ++i) {
            auto s = co_await offload::open_connection("127.0.0.1", port);
            if (i % 2 == 0) {
                auto r = co_await get(s, i % 4 == 0 ? "/ping" : "/cpu?n=10");
                CHECK(r.status == 200);
            } // odd ones hang up without a request
            s.close();
        }
        bool back = co_await fds_settle(service, before);
        INFO("fds before " << before << ", after " << fds_of(service));
        CHECK(back);
    }(svc.pid(), svc.port()));
    svc.signal(SIGTERM);
    CHECK(svc.wait_exit() == 0);
}

TEST_CASE("http_service: SIGTERM (or Ctrl-C to the group) drains the request in flight, exits 0, leaves no process",
          "[http_service]") {
    struct how {
        const char* mode;
        int sig;
        bool group; // as a terminal's Ctrl-C: the workers and the forkserver get it too
    };
    for (how h : {how{"thread", SIGTERM, false}, how{"process", SIGTERM, false}, how{"process", SIGINT, true}}) {
        const char* mode = h.mode;
        INFO("mode " << mode << ", signal " << h.sig << (h.group ? " to the process group" : ""));
        service_process svc({"--mode", mode, "--workers", "1", "--grace-ms", "20000", "--timeout-ms", "20000"});
        const auto below = descendants(svc.pid());
        // About 0.2 s of work at -O2, more in sanitizer and -O0 builds: well within the grace.
        constexpr std::uint64_t n = 200'000'000;
        offload::run([](service_process& svc, how h) -> task<> {
            auto s = co_await offload::open_connection("127.0.0.1", svc.port());
            auto idle = co_await offload::open_connection("127.0.0.1", svc.port()); // a keep-alive client
            auto first = co_await get(idle, "/ping");
            CHECK(first.status == 200);
            s.write("GET /cpu?n=" + std::to_string(n) + " HTTP/1.1\r\n\r\n");
            co_await s.drain();
            bool running = co_await metric_reaches(svc.port(), busy_metric, 1);
            REQUIRE(running);
            svc.signal(h.sig, h.group);
            auto r = co_await read_response(s);
            CHECK(r.status == 200);
            CHECK(r.body == std::to_string(expected_cpu(n)) + "\n");
            CHECK(r.closes()); // no more requests on it: we are stopping
            auto eof = co_await idle.read(1);
            CHECK(eof.empty()); // the idle connection was closed
            s.close();
            idle.close();
        }(svc, h));
        CHECK(svc.wait_exit() == 0);
        for (pid_t p : below) {
            bool gone = offload::test::wait_until([&] { return offload::test::process_gone(p); }, 10s);
            CHECK(gone);
        }
    }
}
