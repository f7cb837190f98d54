// bench_common.hpp — what the benchmark programs share: keeping the optimiser
// honest, timing and medians, running a Python peer script (flat JSON on its
// stdout), and printing the results as a table and as JSON.
//
// Every row compares offload with its peers as a cost ratio, "offload cost /
// peer cost" (below 1: offload faster), and may carry targets: a maximum cost
// ratio against a named peer, or an absolute bound on offload's own figure.
//
// `--hogs N` (every program that uses parse_options) measures on a busy
// machine: parse_options starts N busy-loop child processes at normal
// priority, which run for the rest of the program (the Python peer included,
// so every column of a row sees the same hogs) and are killed and reaped at
// exit; the count is printed above the table and written to the JSON.
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <utility>
#include <vector>

namespace offload_bench {

/// The command line every benchmark takes: --smoke (tiny sizes, for CI),
/// --no-python, --no-asio (where an asio peer exists), --json PATH, --hogs N.
struct options {
    bool smoke = false;
    bool python = true;
    bool asio = true;
    int hogs = 0; // busy-loop processes running beside the benchmark (see start_hogs)
    std::string json_path;
};

// ---------------------------------------------------------------------------
// Hogs: busy-loop child processes, for measuring on a busy machine
// ---------------------------------------------------------------------------

namespace hog_detail {
struct state {
    pid_t owner = 0; // the process that started them (forked children must not stop them)
    std::vector<pid_t> pids;
};
inline state& hogs() {
    static state s;
    return s;
}
} // namespace hog_detail

/// How many hogs run now (0 when none).
inline int hog_count() { return static_cast<int>(hog_detail::hogs().pids.size()); }

/// Kills (SIGKILL) and reaps the hogs; a no-op when none run or when called
/// from a process that did not start them (a forked worker). Registered with
/// atexit by start_hogs; callable earlier.
inline void stop_hogs() {
    auto& h = hog_detail::hogs();
    if (h.pids.empty() || ::getpid() != h.owner) return;
    for (pid_t p : h.pids) ::kill(p, SIGKILL);
    for (pid_t p : h.pids)
        while (::waitpid(p, nullptr, 0) < 0 && errno == EINTR) {
        }
    h.pids.clear();
}

/// Starts `n` busy-loop child processes at normal priority (nice 0 where
/// allowed). They die with this process (PR_SET_PDEATHSIG) and are killed and
/// reaped at exit (atexit). Call before starting threads. Throws when fork fails.
inline void start_hogs(int n) {
    auto& h = hog_detail::hogs();
    if (n <= 0) return;
    if (h.owner == 0) std::atexit(stop_hogs);
    h.owner = ::getpid();
    std::fflush(nullptr);
    for (int i = 0; i < n; ++i) {
        pid_t pid = ::fork();
        if (pid < 0) {
            stop_hogs();
            throw std::runtime_error("--hogs: fork failed");
        }
        if (pid == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != h.owner) ::_exit(0); // the parent died before PDEATHSIG was armed
            ::setpriority(PRIO_PROCESS, 0, 0);      // normal priority (fails quietly if we were niced)
            for (;;) asm volatile("" ::: "memory");
        }
        h.pids.push_back(pid);
    }
}

/// Parses argv into `o` (json_path defaults to `default_json`) and, with
/// --hogs N, starts the hogs (start_hogs). Returns the exit code when the
/// program should stop at once (--help: 0, a bad argument: 2, with the usage
/// printed), or nullopt to go on.
inline std::optional<int> parse_options(int argc, char** argv, options& o, std::string_view default_json,
                                        bool has_asio) {
    o.json_path = default_json;
    auto usage = [&](int code) {
        fmt::print(stderr, "usage: {} [--smoke] [--no-python]{} [--json PATH] [--hogs N]\n", argv[0],
                   has_asio ? " [--no-asio]" : "");
        fmt::print(stderr, "  --hogs N: run N busy-loop processes beside the benchmark (and its Python peer)\n");
        return code;
    };
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        if (a == "--smoke")
            o.smoke = true;
        else if (a == "--no-python")
            o.python = false;
        else if (has_asio && a == "--no-asio")
            o.asio = false;
        else if (a == "--json" && i + 1 < argc)
            o.json_path = argv[++i];
        else if (a == "--hogs" && i + 1 < argc) {
            char* end = nullptr;
            long n = std::strtol(argv[++i], &end, 10);
            if (end == argv[i] || *end != '\0' || n < 0 || n > 1024) {
                fmt::print(stderr, "--hogs wants a count from 0 to 1024, not '{}'\n", argv[i]);
                return usage(2);
            }
            o.hogs = static_cast<int>(n);
        } else
            return usage(a == "--help" || a == "-h" ? 0 : 2);
    }
    start_hogs(o.hogs);
    return std::nullopt;
}

/// "" or ", under N busy-loop hogs" for the header line of a program.
inline std::string hogs_note() {
    return hog_count() > 0
               ? fmt::format(", under {} busy-loop hog process{}", hog_count(), hog_count() == 1 ? "" : "es")
               : std::string();
}

using bench_clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------
// Keeping the optimiser honest, timing, medians
// ---------------------------------------------------------------------------

// Makes the compiler assume `v` is read (and memory clobbered), so the work
// that produced it cannot be deleted (benchmark::DoNotOptimize).
template <class T>
inline void do_not_optimize(T const& v) {
    asm volatile("" : : "r,m"(v) : "memory");
}

inline double ns_since(bench_clock::time_point t0) {
    return std::chrono::duration<double, std::nano>(bench_clock::now() - t0).count();
}

inline double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t m = v.size() / 2;
    return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

// The nearest-rank percentile (q in [0, 1]) of `v`, which it sorts.
inline double percentile(std::vector<double>& v, double q) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size())));
    return v[std::min(v.size() - 1, rank == 0 ? 0 : rank - 1)];
}

// Runs `fn` (which returns one sample) `repeats` times; the median sample.
template <class F>
double median_of(int repeats, F&& fn) {
    std::vector<double> samples;
    for (int i = 0; i < repeats; ++i) samples.push_back(fn());
    return median(std::move(samples));
}

// ---------------------------------------------------------------------------
// Python peer: run benchmarks/<name>.py, parse its flat JSON object
// ---------------------------------------------------------------------------

struct python_result {
    std::optional<std::string> unavailable; // why there are no figures
    std::vector<std::pair<std::string, double>> values;

    std::optional<double> get(std::string_view key) const {
        for (auto& [k, v] : values)
            if (k == key) return v;
        return std::nullopt;
    }
};

inline bool is_executable(const std::string& p) { return ::access(p.c_str(), X_OK) == 0; }
inline bool is_readable(const std::string& p) { return ::access(p.c_str(), R_OK) == 0; }

inline std::optional<std::string> find_in_path(const char* exe) {
    const char* path = std::getenv("PATH");
    std::string_view rest = path ? path : "/usr/bin:/bin";
    while (!rest.empty()) {
        auto colon = rest.find(':');
        std::string_view dir = rest.substr(0, colon);
        rest = colon == std::string_view::npos ? std::string_view{} : rest.substr(colon + 1);
        // (Built with append, not `dir = "."`: g++ 12 -O3 reports a false
        // -Wrestrict for assigning a literal to a std::string here.)
        std::string cand(dir.empty() ? std::string_view(".") : dir);
        cand.append("/").append(exe);
        if (is_executable(cand)) return cand;
    }
    return std::nullopt;
}

// Looks for `script` (e.g. "bench_loop.py") next to the benchmark sources, next
// to the executable, then relative to the working directory.
inline std::optional<std::string> find_script(const std::string& script, const char* argv0) {
    std::vector<std::string> cands;
#ifdef OFFLOAD_BENCHMARK_SOURCE_DIR
    cands.emplace_back(std::string(OFFLOAD_BENCHMARK_SOURCE_DIR) + "/" + script);
#endif
#ifdef OFFLOAD_SOURCE_DIR
    cands.emplace_back(std::string(OFFLOAD_SOURCE_DIR) + "/benchmarks/" + script);
#endif
    char exe[4096];
    ssize_t len = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
    std::string self = len > 0 ? std::string(exe, static_cast<std::size_t>(len)) : std::string(argv0);
    if (auto slash = self.rfind('/'); slash != std::string::npos) cands.push_back(self.substr(0, slash) + "/" + script);
    cands.emplace_back("benchmarks/" + script);
    cands.emplace_back(script);
    for (auto& c : cands)
        if (is_readable(c)) return c;
    return std::nullopt;
}

// Parses `{"key": number, ...}` (flat; values that are not numbers are skipped).
inline std::vector<std::pair<std::string, double>> parse_flat_json(std::string_view s) {
    std::vector<std::pair<std::string, double>> out;
    std::size_t i = 0;
    while ((i = s.find('"', i)) != std::string_view::npos) {
        std::size_t end = s.find('"', i + 1);
        if (end == std::string_view::npos) break;
        std::string key(s.substr(i + 1, end - i - 1));
        std::size_t colon = s.find(':', end);
        if (colon == std::string_view::npos) break;
        std::size_t v = s.find_first_not_of(" \t\r\n", colon + 1);
        if (v == std::string_view::npos) break;
        std::string num(s.substr(v, s.find_first_of(",}", v) - v));
        char* stop = nullptr;
        double d = std::strtod(num.c_str(), &stop);
        if (stop != num.c_str()) out.emplace_back(std::move(key), d);
        i = s.find_first_of(",}", v);
        if (i == std::string_view::npos) break;
    }
    return out;
}

// Runs `python3 <script> <args>` and parses the flat JSON object it prints.
inline python_result run_python(const std::string& script_name, const std::string& args, const char* argv0) {
    python_result r;
    auto py = find_in_path("python3");
    if (!py) {
        r.unavailable = "n/a (python3 not found)";
        return r;
    }
    auto script = find_script(script_name, argv0);
    if (!script) {
        r.unavailable = fmt::format("n/a ({} not found)", script_name);
        return r;
    }
    std::string cmd = fmt::format("'{}' '{}' {}", *py, *script, args);
    std::fflush(nullptr);
    FILE* p = ::popen(cmd.c_str(), "r");
    if (!p) {
        r.unavailable = "n/a (could not start python3)";
        return r;
    }
    std::string text;
    char buf[4096];
    while (std::size_t got = std::fread(buf, 1, sizeof buf, p)) text.append(buf, got);
    int status = ::pclose(p);
    if (status != 0) {
        r.unavailable = fmt::format("n/a (python3 failed, status {})", status);
        return r;
    }
    r.values = parse_flat_json(text);
    if (r.values.empty()) r.unavailable = fmt::format("n/a (no JSON from {})", script_name);
    return r;
}

// ---------------------------------------------------------------------------
// Results: table and JSON
// ---------------------------------------------------------------------------

// time_ns, time_us, percent: lower is better; rate: higher is better.
enum class kind { time_ns, rate, time_us, percent };

inline bool lower_is_better(kind k) { return k != kind::rate; }

inline const char* unit_of(kind k) {
    switch (k) {
    case kind::time_ns: return "ns/op";
    case kind::rate: return "ops/s";
    case kind::time_us: return "us/op";
    case kind::percent: return "% of a core";
    }
    return "";
}

struct peer {
    std::string name;
    std::optional<double> value;
    std::string missing; // shown when there is no value
};

// The figure `key` of a Python peer's run as a peer column named `name`, or
// why it is missing (the peer did not run, or did not print that key).
inline peer python_peer(const python_result& py, std::string_view key, std::string name = "python") {
    peer p{std::move(name), std::nullopt, ""};
    if (py.unavailable)
        p.missing = *py.unavailable;
    else if (!(p.value = py.get(key)))
        p.missing = fmt::format("n/a ({} missing in output)", key);
    return p;
}

// A target: offload's cost ratio against `peer` at most `max`; or, with an
// empty `peer`, offload's own figure at most `max` (in the row's unit).
struct target_spec {
    std::string peer;
    double max = 0;
};

struct row {
    std::string key;
    std::string label;
    kind k;
    double offload;
    std::vector<peer> peers;
    std::vector<target_spec> targets;

    // At most one target: a maximum cost ratio against `target_peer` ("" = none).
    row(std::string key_, std::string label_, kind k_, double offload_, std::vector<peer> peers_,
        std::string target_peer, double target)
        : key(std::move(key_)), label(std::move(label_)), k(k_), offload(offload_), peers(std::move(peers_)) {
        if (!target_peer.empty()) targets.push_back({std::move(target_peer), target});
    }
    row(std::string key_, std::string label_, kind k_, double offload_, std::vector<peer> peers_,
        std::vector<target_spec> targets_)
        : key(std::move(key_)), label(std::move(label_)), k(k_), offload(offload_), peers(std::move(peers_)),
          targets(std::move(targets_)) {}
};

// offload cost / peer cost (below 1: offload faster).
inline std::optional<double> cost_ratio(const row& r, const peer& p) {
    if (!p.value || *p.value <= 0 || r.offload <= 0) return std::nullopt;
    return lower_is_better(r.k) ? r.offload / *p.value : *p.value / r.offload;
}

inline std::string fmt_value(kind k, double v) {
    switch (k) {
    case kind::time_ns: return v < 100 ? fmt::format("{:.2f} ns", v) : fmt::format("{:.0f} ns", v);
    case kind::time_us: return v < 100 ? fmt::format("{:.2f} us", v) : fmt::format("{:.0f} us", v);
    case kind::percent: return fmt::format("{:.3f} %", v);
    case kind::rate: break;
    }
    if (v >= 1e6) return fmt::format("{:.2f} M/s", v / 1e6);
    return fmt::format("{:.0f} k/s", v / 1e3);
}

inline std::optional<bool> target_met(const row& r, const target_spec& t) {
    if (t.peer.empty()) return r.offload <= t.max;
    for (auto& p : r.peers)
        if (p.name == t.peer) {
            if (auto c = cost_ratio(r, p)) return *c <= t.max;
        }
    return std::nullopt;
}

inline std::string target_text(const row& r, const target_spec& t) {
    return t.peer.empty() ? fmt::format("<= {}", fmt_value(r.k, t.max)) : fmt::format("<= {:.2f}x {}", t.max, t.peer);
}

inline void print_table(const std::vector<row>& rows, std::size_t npeers) {
    fmt::print("hogs: {} busy-loop process{} beside every column{}\n", hog_count(), hog_count() == 1 ? "" : "es",
               hog_count() > 0 ? fmt::format(" ({} CPUs online)", ::sysconf(_SC_NPROCESSORS_ONLN)) : "");
    std::vector<std::vector<std::string>> cells;
    std::vector<std::string> head = {"measurement", "offload"};
    for (std::size_t i = 0; i < npeers; ++i) {
        head.push_back(fmt::format("peer {}", i + 1));
        head.push_back("ratio");
    }
    head.push_back("target");
    head.push_back("met");
    cells.push_back(head);
    for (auto& r : rows) {
        std::vector<std::string> c = {r.label, fmt_value(r.k, r.offload)};
        for (std::size_t i = 0; i < npeers; ++i) {
            if (i < r.peers.size()) {
                auto& p = r.peers[i];
                c.push_back(p.value ? fmt::format("{}: {}", p.name, fmt_value(r.k, *p.value))
                                    : fmt::format("{}: {}", p.name, p.missing));
                auto cr = cost_ratio(r, p);
                c.push_back(cr ? fmt::format("{:.2f}x", *cr) : "-");
            } else {
                c.push_back("");
                c.push_back("");
            }
        }
        std::string target = "-", met = "-";
        for (std::size_t i = 0; i < r.targets.size(); ++i) {
            auto m = target_met(r, r.targets[i]);
            target = (i ? target + "; " : std::string()) + target_text(r, r.targets[i]);
            met = (i ? met + ", " : std::string()) + (!m ? "n/a" : *m ? "met" : "NOT MET");
        }
        c.push_back(target);
        c.push_back(met);
        cells.push_back(std::move(c));
    }
    std::vector<std::size_t> w(cells[0].size(), 0);
    for (auto& c : cells)
        for (std::size_t i = 0; i < c.size(); ++i) w[i] = std::max(w[i], c[i].size());
    auto line = [&](const std::vector<std::string>& c) {
        std::string s;
        for (std::size_t i = 0; i < c.size(); ++i)
            s += fmt::format("{:<{}}{}", c[i], w[i], i + 1 < c.size() ? " | " : "");
        fmt::print("{}\n", s);
    };
    line(cells[0]);
    std::string sep;
    for (std::size_t i = 0; i < w.size(); ++i) sep += std::string(w[i], '-') + (i + 1 < w.size() ? "-+-" : "");
    fmt::print("{}\n", sep);
    for (std::size_t i = 1; i < cells.size(); ++i) line(cells[i]);
}

inline std::string json_escape(std::string_view s) {
    std::string o;
    for (char ch : s) {
        if (ch == '"' || ch == '\\')
            o += {'\\', ch};
        else if (static_cast<unsigned char>(ch) < 0x20)
            o += fmt::format("\\u{:04x}", static_cast<unsigned>(ch));
        else
            o += ch;
    }
    return o;
}

inline std::string json_number(std::optional<double> v) { return v ? fmt::format("{:.6g}", *v) : "null"; }

inline std::string json_target(const row& r, const target_spec& t) {
    auto met = target_met(r, t);
    const char* m = met ? (*met ? "true" : "false") : "null";
    if (t.peer.empty()) return fmt::format("{{\"peer\": null, \"max_value\": {}, \"met\": {}}}", json_number(t.max), m);
    return fmt::format("{{\"peer\": \"{}\", \"max_ratio\": {}, \"met\": {}}}", json_escape(t.peer), json_number(t.max),
                       m);
}

// Writes {"benchmark": name, "smoke", "repeats", "hardware_concurrency",
// "hogs", <extra_fields>, "ratio", "results": [...]}. `extra_fields`: `"key": value,\n`
// lines (indented two spaces), or empty. One target is written as "target",
// several as "targets".
inline void write_json(const std::string& path, std::string_view name, bool smoke, int repeats,
                       const std::vector<row>& rows, std::string_view extra_fields = {}) {
    std::string s = "{\n";
    s += fmt::format("  \"benchmark\": \"{}\",\n  \"smoke\": {},\n  \"repeats\": {},\n", json_escape(name), smoke,
                     repeats);
    s += fmt::format("  \"hardware_concurrency\": {},\n", std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN)));
    s += fmt::format("  \"hogs\": {},\n", hog_count());
    s += extra_fields;
    s += "  \"ratio\": \"offload cost / peer cost (below 1: offload faster)\",\n  \"results\": [\n";
    for (std::size_t i = 0; i < rows.size(); ++i) {
        auto& r = rows[i];
        s += fmt::format("    {{\"key\": \"{}\", \"label\": \"{}\", \"unit\": \"{}\", \"offload\": {}, \"peers\": [",
                         json_escape(r.key), json_escape(r.label), unit_of(r.k), json_number(r.offload));
        for (std::size_t j = 0; j < r.peers.size(); ++j) {
            auto& p = r.peers[j];
            s += fmt::format("{}{{\"name\": \"{}\", \"value\": {}, \"ratio\": {}{}}}", j ? ", " : "",
                             json_escape(p.name), json_number(p.value), json_number(cost_ratio(r, p)),
                             p.value ? std::string() : fmt::format(", \"missing\": \"{}\"", json_escape(p.missing)));
        }
        s += "]";
        if (r.targets.size() == 1) {
            s += fmt::format(", \"target\": {}", json_target(r, r.targets[0]));
        } else if (!r.targets.empty()) {
            s += ", \"targets\": [";
            for (std::size_t j = 0; j < r.targets.size(); ++j) s += (j ? ", " : "") + json_target(r, r.targets[j]);
            s += "]";
        }
        s += fmt::format("}}{}\n", i + 1 < rows.size() ? "," : "");
    }
    s += "  ]\n}\n";
    FILE* f = std::fopen(path.c_str(), "w");
    if (!f) throw std::runtime_error(fmt::format("{}: cannot write {}", name, path));
    std::fwrite(s.data(), 1, s.size(), f);
    std::fclose(f);
}

} // namespace offload_bench
