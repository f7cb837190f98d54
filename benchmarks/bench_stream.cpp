// bench_stream — echo round trip over loopback TCP and a Unix socket, client
// and server in the same process on one loop: write a 64-byte line, read it
// back, N times; prints the median, p99 and mean round trip in microseconds.
#include <offload/run.hpp>
#include <offload/stream.hpp>
#include <offload/task.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

using namespace offload;

namespace {

task<> echo(stream s) {
    for (;;) {
        std::string line = co_await s.read(4096);
        if (line.empty()) co_return;
        s.write(line);
    }
}

task<> measure(stream c, const char* what, int n) {
    std::string line(63, 'x');
    line += '\n';
    std::vector<double> us;
    us.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n + 1000; ++i) {
        auto t0 = std::chrono::steady_clock::now();
        c.write(line);
        std::string back = co_await c.read_exactly(line.size());
        auto t1 = std::chrono::steady_clock::now();
        if (i >= 1000) us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count()); // after a warm-up
    }
    std::sort(us.begin(), us.end());
    double mean = 0;
    for (double v : us) mean += v;
    mean /= static_cast<double>(us.size());
    std::printf("%-10s round trips %d  median %.1f us  p99 %.1f us  mean %.1f us\n", what, n, us[us.size() / 2],
                us[us.size() * 99 / 100], mean);
}

task<> bench(int n) {
    server tcp = co_await start_server(echo, "127.0.0.1", 0);
    stream c1 = co_await open_connection("127.0.0.1", tcp.port());
    co_await measure(std::move(c1), "tcp", n);
    std::string path = "/tmp/offload_bench_stream_" + std::to_string(::getpid()) + ".sock";
    server un = co_await start_unix_server(echo, path);
    stream c2 = co_await open_unix_connection(path);
    co_await measure(std::move(c2), "unix", n);
    tcp.close();
    tcp.close_clients();
    un.close();
    un.close_clients();
    co_await tcp.wait_closed();
    co_await un.wait_closed();
}

} // namespace

int main(int argc, char** argv) {
    // `--smoke` (CTest): a short run; a number: that many round trips per transport.
    int n = 100000;
    if (argc > 1) n = std::string(argv[1]) == "--smoke" ? 1000 : std::atoi(argv[1]);
    if (n <= 0) {
        std::fprintf(stderr, "usage: bench_stream [round_trips > 0 | --smoke]\n");
        return 2;
    }
    run(bench(n));
}
