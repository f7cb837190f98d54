// bench_mpi.cpp — mpi_pool over the ranks of an MPI job, side by side with
// mpi4py's MPIPoolExecutor (benchmarks/bench_mpi.py) on the same number of
// ranks, in the same run.
//
//   bench_mpi [--smoke] [--no-python] [--json PATH] [--np N]
//
// Run without mpirun, it is the driver: it launches
//   mpirun -np N --oversubscribe bench_mpi --measure ...        (offload)
//   mpirun -np N --oversubscribe python3 -m mpi4py.futures bench_mpi.py ...
// one after the other, reads the flat JSON each rank 0 prints, and prints one
// table (offload, mpi4py, cost ratio, targets) plus JSON (./bench_mpi.json).
// Both pools have N-1 worker ranks with one worker each (mpi_pool: a local
// process_pool of 1 per rank; mpi4py: the rank itself). Measured: pool start
// to first result, the sequential round trip of a no-op (median, p99), 10k
// no-ops gathered (calls/s), map over 1M ints in chunks of 10k, a 1 MiB
// round trip by value, and rank 0's CPU time per call while gathering (all
// its threads: the loop and the MPI thread), whose inverse is the most calls
// per second one rank 0 can drive. Ratios are "offload cost / peer cost".
#include "bench_common.hpp"

#include <offload/event_loop.hpp>
#include <offload/gather.hpp>
#include <offload/mpi_pool.hpp>
#include <offload/task.hpp>

#include <fmt/format.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>
#include <sys/resource.h>
#include <unistd.h>
#include <vector>

namespace {

using namespace offload_bench;

struct sizes {
    long n_seq = 2000;
    long gather = 10000;
    long map_items = 1000000;
    long chunk = 10000;
    long payload = 1 << 20;
    long payload_n = 50;
    int repeats = 3;

    std::string args() const {
        return fmt::format("--n-seq {} --gather {} --map-items {} --chunk {} --payload {} --payload-n {} --repeats {}",
                           n_seq, gather, map_items, chunk, payload, payload_n, repeats);
    }
};

void check(bool ok, const char* what) {
    if (!ok) throw std::runtime_error(fmt::format("bench_mpi: self-check failed: {}", what));
}

void noop() {}
std::vector<std::byte> echo(std::vector<std::byte> b) { return b; }
long twice(const long& x) { return 2 * x + 1; }

double cpu_ns() {
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    auto ns = [](const timeval& t) {
        return static_cast<double>(t.tv_sec) * 1e9 + static_cast<double>(t.tv_usec) * 1e3;
    };
    return ns(u.ru_utime) + ns(u.ru_stime);
}

offload::task<> measure_all(offload::mpi_pool& pool, sizes sz, std::vector<std::pair<std::string, double>>& out) {
    using offload::run_in_executor;
    for (long i = 0; i < std::min(200L, sz.n_seq); ++i) co_await run_in_executor(pool, noop);
    std::vector<double> samples;
    auto before = pool.stats();
    for (long i = 0; i < sz.n_seq; ++i) {
        auto t = bench_clock::now();
        co_await run_in_executor(pool, noop);
        samples.push_back(ns_since(t));
    }
    out.emplace_back("rt_median_ns", median(samples));
    out.emplace_back("rt_p99_ns", percentile(samples, 0.99));
    auto after = pool.stats();
    // Bytes on the wire per no-op call, each way (call id, function names; outcome header).
    out.emplace_back("noop_bytes_sent", double(after.bytes_sent - before.bytes_sent) / double(sz.n_seq));
    out.emplace_back("noop_bytes_received", double(after.bytes_received - before.bytes_received) / double(sz.n_seq));

    std::vector<double> rates, cpu;
    for (int r = 0; r < sz.repeats; ++r) {
        std::vector<offload::task<>> calls;
        calls.reserve(static_cast<std::size_t>(sz.gather));
        for (long i = 0; i < sz.gather; ++i)
            calls.push_back([](offload::mpi_pool& p) -> offload::task<> { co_await run_in_executor(p, noop); }(pool));
        auto t = bench_clock::now();
        double c0 = cpu_ns();
        co_await offload::gather(std::move(calls));
        cpu.push_back((cpu_ns() - c0) / static_cast<double>(sz.gather));
        rates.push_back(static_cast<double>(sz.gather) / (ns_since(t) / 1e9));
    }
    out.emplace_back("gather_rate", median(rates));
    out.emplace_back("rank0_cpu_ns_per_call", median(cpu));

    std::vector<long> items(static_cast<std::size_t>(sz.map_items));
    for (long i = 0; i < sz.map_items; ++i) items[static_cast<std::size_t>(i)] = i;
    std::vector<double> times;
    for (int r = 0; r < sz.repeats; ++r) {
        auto t = bench_clock::now();
        auto res = co_await offload::map(pool, twice, items, static_cast<std::size_t>(sz.chunk));
        times.push_back(ns_since(t));
        check(res.size() == items.size() && res.back() == 2 * items.back() + 1, "map results");
    }
    out.emplace_back("map_ns", median(times));

    std::vector<std::byte> payload(static_cast<std::size_t>(sz.payload));
    samples.clear();
    for (long i = 0; i < sz.payload_n; ++i) {
        auto t = bench_clock::now();
        auto b = co_await run_in_executor(pool, echo, payload);
        samples.push_back(ns_since(t));
        check(b.size() == payload.size(), "payload size");
    }
    out.emplace_back("payload_ns", median(samples));
}

sizes parse_sizes(int argc, char** argv) {
    sizes s;
    for (int i = 1; i + 1 < argc; ++i) {
        std::string a = argv[i];
        long v = std::atol(argv[i + 1]);
        if (a == "--n-seq")
            s.n_seq = v;
        else if (a == "--gather")
            s.gather = v;
        else if (a == "--map-items")
            s.map_items = v;
        else if (a == "--chunk")
            s.chunk = v;
        else if (a == "--payload")
            s.payload = v;
        else if (a == "--payload-n")
            s.payload_n = v;
        else if (a == "--repeats")
            s.repeats = static_cast<int>(v);
    }
    return s;
}

// Under mpirun: rank 0 measures and prints one flat JSON object.
int measure(int argc, char** argv) {
    offload::mpi_pool::worker_main(argc, argv); // ranks 1..N-1 serve here
    sizes sz = parse_sizes(argc, argv);
    std::vector<std::pair<std::string, double>> out;
    auto t0 = bench_clock::now();
    offload::mpi_pool pool({.local_workers = 1});
    offload::event_loop loop;
    loop.run_until_complete(
        [](offload::mpi_pool& p) -> offload::task<> { co_await offload::run_in_executor(p, noop); }(pool));
    out.emplace_back("start_us", ns_since(t0) / 1e3);
    loop.run_until_complete(measure_all(pool, sz, out));
    std::string s = "{";
    for (std::size_t i = 0; i < out.size(); ++i)
        s += fmt::format("{}\"{}\": {:.6g}", i ? ", " : "", out[i].first, out[i].second);
    fmt::print("{}}}\n", s);
    std::fflush(stdout);
    return 0;
}

// Runs `cmd` and parses the flat JSON object in its output.
python_result run_json(const std::string& cmd, const char* what) {
    python_result r;
    std::fflush(nullptr);
    FILE* p = ::popen(cmd.c_str(), "r");
    if (!p) {
        r.unavailable = fmt::format("n/a (could not start {})", what);
        return r;
    }
    std::string text;
    char buf[4096];
    while (std::size_t got = std::fread(buf, 1, sizeof buf, p)) text.append(buf, got);
    int status = ::pclose(p);
    auto brace = text.rfind('{');
    if (status != 0 || brace == std::string::npos) {
        r.unavailable = fmt::format("n/a ({} failed, status {})", what, status);
        return r;
    }
    r.values = parse_flat_json(std::string_view(text).substr(brace));
    if (r.values.empty()) r.unavailable = fmt::format("n/a (no JSON from {})", what);
    return r;
}

double need(const python_result& r, const char* key) {
    auto v = r.get(key);
    if (!v)
        throw std::runtime_error(
            fmt::format("bench_mpi: our own run gave no {} ({})", key, r.unavailable.value_or("missing key")));
    return *v;
}

int drive(int argc, char** argv) {
    options cfg;
    int np = 3;
    std::vector<char*> rest{argv[0]};
    for (int i = 1; i < argc; ++i) {
        if (std::string(argv[i]) == "--np" && i + 1 < argc)
            np = std::atoi(argv[++i]);
        else
            rest.push_back(argv[i]);
    }
    if (auto stop = parse_options(static_cast<int>(rest.size()), rest.data(), cfg, "bench_mpi.json", false))
        return *stop;
    sizes sz;
    if (cfg.smoke) sz = {50, 200, 20000, 1000, 1 << 16, 5, 1};
    std::string mpirun = fmt::format("'{}' -np {} --oversubscribe{}", OFFLOAD_MPIEXEC, np,
                                     ::geteuid() == 0 ? " --allow-run-as-root" : "");
    char self[4096];
    ssize_t len = ::readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) throw std::runtime_error("bench_mpi: cannot read /proc/self/exe");
    self[len] = '\0';
    fmt::print("bench_mpi: mpi_pool({{.local_workers = 1}}) vs mpi4py MPIPoolExecutor, {} ranks ({} workers), "
               "{} repeats{}; {} CPUs online{}\n",
               np, np - 1, sz.repeats, cfg.smoke ? ", SMOKE sizes" : "", ::sysconf(_SC_NPROCESSORS_ONLN), hogs_note());

    auto ours = run_json(fmt::format("{} '{}' --measure {}", mpirun, self, sz.args()), "mpirun bench_mpi");
    python_result py;
    if (cfg.python) {
        auto script = find_script("bench_mpi.py", argv[0]);
        // Debian's python3-mpi4py is for the system python3.
        std::string python = is_executable("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
        if (!script)
            py.unavailable = "n/a (bench_mpi.py not found)";
        else
            py = run_json(fmt::format("{} {} -m mpi4py.futures '{}' {}", mpirun, python, *script, sz.args()),
                          "mpirun python3 -m mpi4py.futures");
    } else {
        py.unavailable = "n/a (--no-python)";
    }
    auto peers_of = [&](const char* key) { return std::vector<offload_bench::peer>{python_peer(py, key, "mpi4py")}; };
    using targets = std::vector<target_spec>;
    std::vector<row> rows;
    rows.push_back({"rt_median", "no-op round trip, median", kind::time_ns, need(ours, "rt_median_ns"),
                    peers_of("rt_median_ns"), targets{{"mpi4py", 1.0 / 10}}});
    rows.push_back(
        {"rt_p99", "no-op round trip, p99", kind::time_ns, need(ours, "rt_p99_ns"), peers_of("rt_p99_ns"), targets{}});
    rows.push_back({fmt::format("gather_{}", sz.gather), fmt::format("{} no-ops gathered", sz.gather), kind::rate,
                    need(ours, "gather_rate"), peers_of("gather_rate"), targets{{"mpi4py", 1.0 / 10}}});
    rows.push_back({fmt::format("map_{}_c{}", sz.map_items, sz.chunk),
                    fmt::format("map {} ints, chunks of {}", sz.map_items, sz.chunk), kind::time_us,
                    need(ours, "map_ns") / 1e3, peers_of("map_ns"), targets{{"mpi4py", 1.0 / 10}}});
    // mpi4py's figures are in ns where ours are shown in us: scale its column.
    for (auto& r : rows)
        if (r.k == kind::time_us)
            for (auto& p : r.peers)
                if (p.value) *p.value /= 1e3;
    rows.push_back({fmt::format("payload_{}", sz.payload), fmt::format("{} B round trip by value", sz.payload),
                    kind::time_us, need(ours, "payload_ns") / 1e3, peers_of("payload_ns"), targets{}});
    if (rows.back().peers[0].value) *rows.back().peers[0].value /= 1e3;
    rows.push_back({"start", "pool start to first result", kind::time_us, need(ours, "start_us"), peers_of("start_us"),
                    targets{}});
    rows.push_back({"rank0_ceiling", "rank 0 ceiling (1 / its CPU per call)", kind::rate,
                    1e9 / need(ours, "rank0_cpu_ns_per_call"),
                    std::vector<offload_bench::peer>{{"mpi4py", std::nullopt, "n/a (not measured)"}}, targets{}});
    print_table(rows, 1);
    write_json(cfg.json_path, "bench_mpi", cfg.smoke, sz.repeats, rows,
               fmt::format("  \"ranks\": {},\n  \"rank0_cpu_ns_per_call\": {:.6g},\n  \"noop_bytes_sent\": {:.6g},\n"
                           "  \"noop_bytes_received\": {:.6g},\n",
                           np, need(ours, "rank0_cpu_ns_per_call"), need(ours, "noop_bytes_sent"),
                           need(ours, "noop_bytes_received")));
    fmt::print("a no-op call moves {:.0f} B to its rank and {:.0f} B back; rank 0 spends {:.1f} us of CPU per call "
               "(loop + MPI thread) while gathering\n",
               need(ours, "noop_bytes_sent"), need(ours, "noop_bytes_received"),
               need(ours, "rank0_cpu_ns_per_call") / 1e3);
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    try {
        if (std::getenv("OMPI_COMM_WORLD_SIZE")) return measure(argc, argv);
        return drive(argc, argv);
    } catch (const std::exception& e) {
        fmt::print(stderr, "bench_mpi: {}\n", e.what());
        return 1;
    }
}
