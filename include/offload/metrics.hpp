// offload/metrics.hpp — offload::metrics, a registry that renders what the
// library measures (executor_stats of each pool, lag_monitor, the loop's own
// counters) and counters / gauges of your own as Prometheus text exposition
// (format 0.0.4) and as JSON, so a service can answer `GET /metrics` from its
// own loop. Sources are referenced, not copied: every render reads them anew.
#pragma once

#include <offload/detail/base/config.hpp>

#include <offload/event_loop.hpp>
#include <offload/executor.hpp>
#include <offload/lag_monitor.hpp>

#if OFFLOAD_DEFINE_BODIES
#include <fmt/core.h> // number formatting of the function bodies below
#endif

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace offload {

/// The Content-Type of prometheus() output, for an HTTP `/metrics` answer.
inline constexpr std::string_view prometheus_content_type = "text/plain; version=0.0.4; charset=utf-8";
/// The Content-Type of json() output.
inline constexpr std::string_view json_content_type = "application/json";

/// One label of a metric of yours: `{"route", "/cpu"}`.
struct metric_label {
    /// The label name: `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`.
    std::string name;
    /// The label value (any UTF-8; escaped on output).
    std::string value;
};

/// A registry of metric sources, rendered as Prometheus text or JSON.
///
/// What it renders (Prometheus names; JSON uses the same fields, see json()):
/// - per pool (`add(name, pool)`, label `pool="name"`): gauges
///   `offload_executor_workers`, `_busy`, `_queued`, `_max_queued`; counters
///   `offload_executor_submitted_total`, `_completed_total`, `_failed_total`,
///   `_cancelled_total`, `_crashes_total`, `_respawns_total`, `_kills_total`,
///   `_sent_bytes_total`, `_received_bytes_total` (the last five stay 0 for a
///   thread pool); latency as gauges `offload_executor_queue_wait_seconds` and
///   `offload_executor_run_time_seconds` with a `quantile` label (0.5, 0.95,
///   0.99: executor_stats' percentiles, upper bounds within 12.5%) plus exact
///   maxima `offload_executor_queue_wait_max_seconds` and `..._run_time_max_seconds`.
///   Percentiles are gauges, not a Prometheus summary: the histogram keeps no
///   sum, and a summary without `_sum` is not what scrapers expect.
/// - per lag monitor (`add(name, monitor)`, label `loop="name"`):
///   `offload_loop_lag_seconds{quantile=...}` (gauge), `offload_loop_lag_max_seconds`,
///   `offload_loop_lag_threshold_seconds`, counters `offload_loop_lag_samples_total`
///   and `offload_loop_lags_over_threshold_total` (both restart at 0 after reset()).
/// - per loop (`add(name, loop)`, label `loop="name"`): counters
///   `offload_loop_steps_total`, `_polls_total`, `_sleeps_total`,
///   `_slow_steps_total`, `_epoll_ctl_calls_total`; gauges `offload_loop_tasks`,
///   `_ready_steps`, `_timers`, `_debug` (0 or 1).
/// - yours: add_counter / add_gauge, under the name you give.
///
/// Names: a source's name is a label value and may be any UTF-8 string (it is
/// escaped); two sources of one kind may not share a name. Every family has
/// one `# HELP` and one `# TYPE` line before its samples.
///
/// Lifetime: sources are referenced, not copied. Each must outlive the
/// registry, or be removed with remove(name) before it is destroyed.
/// Thread safety: none of its own; add, remove and render from one thread at
/// a time. A loop or lag monitor is loop-local, so render on the thread of the
/// loop they belong to (a `/metrics` handler running on that loop does);
/// pools and your callables are read from whichever thread renders.
/// Example:
///     offload::metrics m;
///     m.add("cpu", pool);                    // a thread_pool or process_pool
///     m.add("main", offload::event_loop::current());
///     m.add("main", monitor);                // a started lag_monitor
///     m.add_counter("http_requests", "HTTP requests served", [&] { return double(served); });
///     respond(200, offload::prometheus_content_type, m.prometheus());
class metrics {
public:
    metrics() = default;
    metrics(const metrics&) = delete;
    metrics& operator=(const metrics&) = delete;
    /// Takes over another registry's sources.
    metrics(metrics&&) noexcept = default;
    /// Replaces this registry's sources with another's.
    metrics& operator=(metrics&&) noexcept = default;
    ~metrics() = default;

    /// Adds an executor (thread_pool, process_pool, or one of yours with
    /// stats()), labelled `pool="name"`. std::invalid_argument if a pool of that name exists.
    template <executor E>
    void add(std::string name, const E& pool) {
        add_executor(std::move(name), [p = &pool] { return p->stats(); });
    }
    /// Adds a lag monitor, labelled `loop="name"`. std::invalid_argument if one of that name exists.
    OFFLOAD_DECL void add(std::string name, const lag_monitor& monitor);
    /// Adds a loop's own counters (event_loop::stats()), labelled `loop="name"`.
    /// std::invalid_argument if a loop of that name exists.
    OFFLOAD_DECL void add(std::string name, event_loop& loop);

    /// Adds a counter of yours: `fn()` returns its value (cumulative, never
    /// decreasing). Rendered as `name_total` (`_total` is appended unless
    /// `name` ends with it). Several series of one name need distinct labels.
    /// std::invalid_argument for a name that is not `[a-zA-Z_:][a-zA-Z0-9_:]*`,
    /// starts with the library's `offload_`, is a gauge already, or repeats a series;
    /// or for a label name that is not `[a-zA-Z_][a-zA-Z0-9_]*` or starts with `__`.
    OFFLOAD_DECL void add_counter(std::string name, std::string help, std::function<double()> fn,
                                  std::vector<metric_label> labels = {});
    /// Adds a gauge of yours (a value now, up or down); names and errors as add_counter.
    OFFLOAD_DECL void add_gauge(std::string name, std::string help, std::function<double()> fn,
                                std::vector<metric_label> labels = {});

    /// Removes every source added under `name` (a pool, lag monitor or loop of
    /// that name, and your metrics of that name, as given to add_counter /
    /// add_gauge). Returns how many were removed.
    OFFLOAD_DECL std::size_t remove(std::string_view name);

    /// Prometheus text exposition format 0.0.4 (serve it with
    /// prometheus_content_type). Reads every source once.
    OFFLOAD_DECL std::string prometheus() const;

    /// The same values as one JSON object:
    /// `{"executors": {"<name>": {"workers": 4, ..., "queue_wait_ns": {"p50": 1200,
    /// "p95": ..., "p99": ..., "max": ...}, "run_time_ns": {...}}},
    ///   "lag_monitors": {"<name>": {"samples": ..., "lag_ns": {"p50": ..., ...},
    ///   "over_threshold": ..., "threshold_ns": ...}},
    ///   "loops": {"<name>": {"steps": ..., ..., "debug": false}},
    ///   "counters": [{"name": "x_total", "help": "...", "labels": {...}, "value": 1}],
    ///   "gauges": [...]}`.
    /// Durations are integer nanoseconds (exact); a value of yours that is
    /// not finite is `null`. Strings are escaped; names should be UTF-8.
    OFFLOAD_DECL std::string json() const;

private:
    struct user_metric {
        std::string given;  // the name as given (what remove() matches)
        std::string family; // the rendered name
        std::string help;
        bool counter = false;
        std::function<double()> fn;
        std::vector<metric_label> labels;
    };
    template <class T>
    struct named {
        std::string name;
        T source;
    };

    OFFLOAD_DECL void add_executor(std::string name, std::function<executor_stats()> stats);
    OFFLOAD_DECL void add_user(bool counter, std::string name, std::string help, std::function<double()> fn,
                               std::vector<metric_label> labels);

    std::vector<named<std::function<executor_stats()>>> executors_;
    std::vector<named<const lag_monitor*>> monitors_;
    std::vector<named<event_loop*>> loops_;
    std::vector<user_metric> user_;
};

namespace detail {
/// `s` as a Prometheus label value: `\`, `"` and newline escaped.
OFFLOAD_DECL std::string prometheus_label_escape(std::string_view s);
/// `s` as the body of a JSON string (without the quotes).
OFFLOAD_DECL std::string json_escape(std::string_view s);
} // namespace detail

#if OFFLOAD_DEFINE_BODIES

namespace detail {

OFFLOAD_DECL std::string prometheus_label_escape(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char c : s) {
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '"') {
            out += "\\\"";
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
    return out;
}

OFFLOAD_DECL std::string json_escape(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char c : s) {
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
            if (static_cast<unsigned char>(c) < 0x20) {
                out += fmt::format("\\u{:04x}", static_cast<unsigned>(static_cast<unsigned char>(c)));
            } else {
                out += c;
            }
        }
    }
    return out;
}

namespace metrics_impl {

inline bool valid_metric_name(std::string_view n) noexcept {
    if (n.empty()) return false;
    for (std::size_t i = 0; i < n.size(); ++i) {
        const char c = n[i];
        const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
    }
    return true;
}

inline bool valid_label_name(std::string_view n) noexcept {
    if (n.empty() || n.starts_with("__")) return false;
    for (std::size_t i = 0; i < n.size(); ++i) {
        const char c = n[i];
        const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
    }
    return true;
}

// HELP text escapes only `\` and newline (format 0.0.4).
inline std::string help_escape(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char c : s) {
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
    return out;
}

// A float as Prometheus reads it (Go's ParseFloat): NaN, +Inf, -Inf, or the
// shortest decimal that reads back as the same double.
inline std::string prometheus_value(double v) {
    if (v != v) return "NaN";
    if (v > 1.7976931348623157e308) return "+Inf";
    if (v < -1.7976931348623157e308) return "-Inf";
    return fmt::format("{}", v);
}

inline std::string json_value(double v) {
    if (v != v || v > 1.7976931348623157e308 || v < -1.7976931348623157e308) return "null";
    return fmt::format("{}", v);
}

inline std::string seconds(std::chrono::nanoseconds d) {
    return prometheus_value(static_cast<double>(d.count()) / 1e9);
}

// Writes families: one HELP and one TYPE line each, then its samples.
struct prometheus_writer {
    std::string out;

    void family(std::string_view name, std::string_view type, std::string_view help) {
        out += "# HELP ";
        out += name;
        out += ' ';
        out += help_escape(help);
        out += "\n# TYPE ";
        out += name;
        out += ' ';
        out += type;
        out += '\n';
    }
    // One sample: `name{k="v",...} value`.
    void sample(std::string_view name, const std::vector<std::pair<std::string_view, std::string_view>>& labels,
                std::string_view value) {
        out += name;
        if (!labels.empty()) {
            out += '{';
            bool first = true;
            for (const auto& [k, v] : labels) {
                if (!first) out += ',';
                first = false;
                out += k;
                out += "=\"";
                out += prometheus_label_escape(v);
                out += '"';
            }
            out += '}';
        }
        out += ' ';
        out += value;
        out += '\n';
    }
};

// A family of one number per source: its name, type, help and how to read it.
template <class Stats>
struct scalar_family {
    const char* name;
    const char* type;
    const char* help;
    std::uint64_t (*get)(const Stats&);
};

template <class Stats, std::size_t N>
void write_scalars(prometheus_writer& w, const scalar_family<Stats> (&families)[N], std::string_view label,
                   const std::vector<std::pair<std::string_view, Stats>>& snaps) {
    if (snaps.empty()) return;
    for (const auto& f : families) {
        w.family(f.name, f.type, f.help);
        for (const auto& [name, s] : snaps) w.sample(f.name, {{label, name}}, fmt::format("{}", f.get(s)));
    }
}

// A latency as gauges: `<base>_seconds{quantile=...}` and `<base>_max_seconds`.
template <class Stats>
void write_latency(prometheus_writer& w, std::string_view base, std::string_view help, std::string_view label,
                   const std::vector<std::pair<std::string_view, Stats>>& snaps,
                   latency_percentiles (*get)(const Stats&)) {
    if (snaps.empty()) return;
    const std::string q = std::string(base) + "_seconds";
    w.family(q, "gauge", std::string(help) + " (percentile upper bounds, within 12.5%)");
    for (const auto& [name, s] : snaps) {
        const latency_percentiles p = get(s);
        w.sample(q, {{label, name}, {"quantile", "0.5"}}, seconds(p.p50));
        w.sample(q, {{label, name}, {"quantile", "0.95"}}, seconds(p.p95));
        w.sample(q, {{label, name}, {"quantile", "0.99"}}, seconds(p.p99));
    }
    const std::string m = std::string(base) + "_max_seconds";
    w.family(m, "gauge", std::string(help) + " (largest seen, exact)");
    for (const auto& [name, s] : snaps) w.sample(m, {{label, name}}, seconds(get(s).max));
}

inline const scalar_family<executor_stats> executor_families[] = {
    {"offload_executor_workers", "gauge", "Worker threads or processes the executor has now",
     [](const executor_stats& s) -> std::uint64_t { return s.workers; }},
    {"offload_executor_busy", "gauge", "Workers running a call now",
     [](const executor_stats& s) -> std::uint64_t { return s.busy; }},
    {"offload_executor_queued", "gauge", "Calls submitted but not yet started",
     [](const executor_stats& s) -> std::uint64_t { return s.queued; }},
    {"offload_executor_max_queued", "gauge", "The highest number of queued calls seen",
     [](const executor_stats& s) -> std::uint64_t { return s.max_queued; }},
    {"offload_executor_submitted_total", "counter", "Calls accepted",
     [](const executor_stats& s) { return s.submitted; }},
    {"offload_executor_completed_total", "counter", "Calls that returned a value",
     [](const executor_stats& s) { return s.completed; }},
    {"offload_executor_failed_total", "counter", "Calls that threw, or whose worker crashed or timed out",
     [](const executor_stats& s) { return s.failed; }},
    {"offload_executor_cancelled_total", "counter", "Calls cancelled, queued or running",
     [](const executor_stats& s) { return s.cancelled; }},
    {"offload_executor_crashes_total", "counter", "Process pools: workers that died unexpectedly",
     [](const executor_stats& s) { return s.crashes; }},
    {"offload_executor_respawns_total", "counter", "Process pools: workers started to replace another",
     [](const executor_stats& s) { return s.respawns; }},
    {"offload_executor_kills_total", "counter", "Process pools: workers the pool killed itself",
     [](const executor_stats& s) { return s.kills; }},
    {"offload_executor_sent_bytes_total", "counter", "Process pools: bytes of requests written to workers",
     [](const executor_stats& s) { return s.bytes_sent; }},
    {"offload_executor_received_bytes_total", "counter", "Process pools: bytes of results read from workers",
     [](const executor_stats& s) { return s.bytes_received; }},
};

inline const scalar_family<lag_stats> lag_families[] = {
    {"offload_loop_lag_samples_total", "counter", "Timer firings the lag monitor measured",
     [](const lag_stats& s) -> std::uint64_t { return s.samples; }},
    {"offload_loop_lags_over_threshold_total", "counter", "Timer firings later than the lag monitor's threshold",
     [](const lag_stats& s) { return s.over_threshold; }},
};

inline const scalar_family<loop_stats> loop_families[] = {
    {"offload_loop_steps_total", "counter", "Steps the loop ran (resumptions and callbacks)",
     [](const loop_stats& s) { return s.steps; }},
    {"offload_loop_polls_total", "counter", "Waits for events (epoll), zero-timeout polls included",
     [](const loop_stats& s) { return s.polls; }},
    {"offload_loop_sleeps_total", "counter", "Polls that could block: the loop had nothing ready",
     [](const loop_stats& s) { return s.sleeps; }},
    {"offload_loop_slow_steps_total", "counter",
     "Debug mode: steps that held the loop for slow_callback_duration or longer",
     [](const loop_stats& s) { return s.slow_steps; }},
    {"offload_loop_epoll_ctl_calls_total", "counter", "epoll_ctl calls made for fd registrations",
     [](const loop_stats& s) { return s.epoll_ctl_calls; }},
    {"offload_loop_tasks", "gauge", "Tasks of the loop that have not finished",
     [](const loop_stats& s) -> std::uint64_t { return s.tasks; }},
    {"offload_loop_ready_steps", "gauge", "Steps queued to run now",
     [](const loop_stats& s) -> std::uint64_t { return s.ready; }},
    {"offload_loop_timers", "gauge", "Timers scheduled now",
     [](const loop_stats& s) -> std::uint64_t { return s.timers; }},
    {"offload_loop_debug", "gauge", "1 when the loop runs in debug mode",
     [](const loop_stats& s) -> std::uint64_t { return s.debug ? 1 : 0; }},
};

template <class T>
void throw_if_taken(const std::vector<T>& v, const std::string& name, const char* kind) {
    for (const auto& e : v)
        if (e.name == name)
            throw std::invalid_argument(fmt::format(
                "offload::metrics: a {} named \"{}\" is already registered; names label the series and must "
                "be unique per kind (remove(\"{}\") first to replace it)",
                kind, name, name));
}

inline std::string json_latency(const latency_percentiles& p) {
    return fmt::format(R"({{"p50":{},"p95":{},"p99":{},"max":{}}})", p.p50.count(), p.p95.count(), p.p99.count(),
                       p.max.count());
}

} // namespace metrics_impl
} // namespace detail

OFFLOAD_DECL void metrics::add_executor(std::string name, std::function<executor_stats()> stats) {
    detail::metrics_impl::throw_if_taken(executors_, name, "pool");
    executors_.push_back({std::move(name), std::move(stats)});
}

OFFLOAD_DECL void metrics::add(std::string name, const lag_monitor& monitor) {
    detail::metrics_impl::throw_if_taken(monitors_, name, "lag monitor");
    monitors_.push_back({std::move(name), &monitor});
}

OFFLOAD_DECL void metrics::add(std::string name, event_loop& loop) {
    detail::metrics_impl::throw_if_taken(loops_, name, "loop");
    loops_.push_back({std::move(name), &loop});
}

OFFLOAD_DECL void metrics::add_counter(std::string name, std::string help, std::function<double()> fn,
                                       std::vector<metric_label> labels) {
    add_user(true, std::move(name), std::move(help), std::move(fn), std::move(labels));
}

OFFLOAD_DECL void metrics::add_gauge(std::string name, std::string help, std::function<double()> fn,
                                     std::vector<metric_label> labels) {
    add_user(false, std::move(name), std::move(help), std::move(fn), std::move(labels));
}

OFFLOAD_DECL void metrics::add_user(bool counter, std::string name, std::string help, std::function<double()> fn,
                                    std::vector<metric_label> labels) {
    using namespace detail::metrics_impl;
    const char* what = counter ? "add_counter" : "add_gauge";
    if (!valid_metric_name(name))
        throw std::invalid_argument(fmt::format(
            "offload::metrics::{}: \"{}\" is not a Prometheus metric name; use letters, digits, '_' and ':' "
            "(not starting with a digit), e.g. \"http_requests\"",
            what, name));
    if (name.starts_with("offload_"))
        throw std::invalid_argument(
            fmt::format("offload::metrics::{}: \"{}\": the prefix offload_ is reserved for the library's own metrics; "
                        "name it after your service instead",
                        what, name));
    if (!fn) throw std::invalid_argument(fmt::format("offload::metrics::{}: \"{}\" has an empty callable", what, name));
    for (std::size_t i = 0; i < labels.size(); ++i) {
        if (!valid_label_name(labels[i].name))
            throw std::invalid_argument(
                fmt::format("offload::metrics::{}: label \"{}\" of \"{}\" is not a Prometheus label name; use letters, "
                            "digits and '_' (not starting with a digit or \"__\")",
                            what, labels[i].name, name));
        for (std::size_t j = 0; j < i; ++j)
            if (labels[j].name == labels[i].name)
                throw std::invalid_argument(fmt::format("offload::metrics::{}: label \"{}\" of \"{}\" is given twice",
                                                        what, labels[i].name, name));
    }
    std::string family = counter && !name.ends_with("_total") ? name + "_total" : name;
    for (const user_metric& u : user_) {
        // A gauge "x_total" and a counter "x" would render as one family of two types.
        if (u.family == family && u.counter != counter)
            throw std::invalid_argument(
                fmt::format("offload::metrics::{}: \"{}\" is already registered as a {}; one name has one type", what,
                            family, u.counter ? "counter" : "gauge"));
        if (u.family == family && u.labels.size() == labels.size() &&
            std::equal(labels.begin(), labels.end(), u.labels.begin(),
                       [](const metric_label& a, const metric_label& b) {
                           return a.name == b.name && a.value == b.value;
                       }))
            throw std::invalid_argument(fmt::format(
                "offload::metrics::{}: \"{}\" with these labels is already registered; give each series of one "
                "name distinct labels",
                what, family));
    }
    user_.push_back({std::move(name), std::move(family), std::move(help), counter, std::move(fn), std::move(labels)});
}

OFFLOAD_DECL std::size_t metrics::remove(std::string_view name) {
    std::size_t n = 0;
    auto drop = [&](auto& v, auto&& key) {
        const auto before = v.size();
        std::erase_if(v, [&](const auto& e) { return key(e) == name; });
        n += before - v.size();
    };
    drop(executors_, [](const auto& e) -> const std::string& { return e.name; });
    drop(monitors_, [](const auto& e) -> const std::string& { return e.name; });
    drop(loops_, [](const auto& e) -> const std::string& { return e.name; });
    drop(user_, [](const user_metric& u) -> const std::string& { return u.given; });
    return n;
}

OFFLOAD_DECL std::string metrics::prometheus() const {
    using namespace detail::metrics_impl;
    // Read each source once, so every family shows the same snapshot.
    std::vector<std::pair<std::string_view, executor_stats>> ex;
    for (const auto& e : executors_) ex.emplace_back(e.name, e.source());
    std::vector<std::pair<std::string_view, lag_stats>> lags;
    for (const auto& m : monitors_) lags.emplace_back(m.name, m.source->stats());
    std::vector<std::pair<std::string_view, loop_stats>> loops;
    for (const auto& l : loops_) loops.emplace_back(l.name, l.source->stats());

    prometheus_writer w;
    write_scalars(w, executor_families, "pool", ex);
    write_latency<executor_stats>(w, "offload_executor_queue_wait", "Time from submission to the start of a call",
                                  "pool", ex, [](const executor_stats& s) { return s.queue_wait; });
    write_latency<executor_stats>(w, "offload_executor_run_time", "Time a call ran", "pool", ex,
                                  [](const executor_stats& s) { return s.run_time; });

    write_scalars(w, lag_families, "loop", lags);
    write_latency<lag_stats>(w, "offload_loop_lag", "How late the loop served the lag monitor's timer", "loop", lags,
                             [](const lag_stats& s) {
                                 return latency_percentiles{s.p50, s.p95, s.p99, s.max};
                             });
    if (!lags.empty()) {
        w.family("offload_loop_lag_threshold_seconds", "gauge", "The lag monitor's threshold");
        for (const auto& [name, s] : lags)
            w.sample("offload_loop_lag_threshold_seconds", {{"loop", name}}, seconds(s.threshold));
    }

    write_scalars(w, loop_families, "loop", loops);

    // Yours, grouped by family in the order each family first appeared.
    std::vector<bool> done(user_.size(), false);
    for (std::size_t i = 0; i < user_.size(); ++i) {
        if (done[i]) continue;
        const user_metric& f = user_[i];
        w.family(f.family, f.counter ? "counter" : "gauge", f.help);
        for (std::size_t j = i; j < user_.size(); ++j) {
            if (done[j] || user_[j].family != f.family) continue;
            done[j] = true;
            std::vector<std::pair<std::string_view, std::string_view>> labels;
            for (const auto& l : user_[j].labels) labels.emplace_back(l.name, l.value);
            w.sample(f.family, labels, prometheus_value(user_[j].fn()));
        }
    }
    return std::move(w.out);
}

OFFLOAD_DECL std::string metrics::json() const {
    using namespace detail::metrics_impl;
    using detail::json_escape;
    std::string out = "{\"executors\":{";
    bool first = true;
    auto sep = [&first, &out] {
        if (!first) out += ',';
        first = false;
    };
    for (const auto& e : executors_) {
        const executor_stats s = e.source();
        sep();
        out += fmt::format(R"("{}":{{"workers":{},"busy":{},"queued":{},"max_queued":{},"submitted":{},)"
                           R"("completed":{},"failed":{},"cancelled":{},"crashes":{},"respawns":{},"kills":{},)"
                           R"("bytes_sent":{},"bytes_received":{},"queue_wait_ns":{},"run_time_ns":{}}})",
                           json_escape(e.name), s.workers, s.busy, s.queued, s.max_queued, s.submitted, s.completed,
                           s.failed, s.cancelled, s.crashes, s.respawns, s.kills, s.bytes_sent, s.bytes_received,
                           json_latency(s.queue_wait), json_latency(s.run_time));
    }
    out += "},\"lag_monitors\":{";
    first = true;
    for (const auto& m : monitors_) {
        const lag_stats s = m.source->stats();
        sep();
        out += fmt::format(R"("{}":{{"samples":{},"lag_ns":{},"over_threshold":{},"threshold_ns":{}}})",
                           json_escape(m.name), s.samples, json_latency({s.p50, s.p95, s.p99, s.max}), s.over_threshold,
                           s.threshold.count());
    }
    out += "},\"loops\":{";
    first = true;
    for (const auto& l : loops_) {
        const loop_stats s = l.source->stats();
        sep();
        out += fmt::format(R"("{}":{{"steps":{},"polls":{},"sleeps":{},"slow_steps":{},"epoll_ctl_calls":{},)"
                           R"("tasks":{},"ready":{},"timers":{},"debug":{}}})",
                           json_escape(l.name), s.steps, s.polls, s.sleeps, s.slow_steps, s.epoll_ctl_calls, s.tasks,
                           s.ready, s.timers, s.debug ? "true" : "false");
    }
    out += '}';
    for (bool counters : {true, false}) {
        out += counters ? ",\"counters\":[" : "],\"gauges\":[";
        first = true;
        for (const user_metric& u : user_) {
            if (u.counter != counters) continue;
            sep();
            out += fmt::format(R"({{"name":"{}","help":"{}","labels":{{)", json_escape(u.family), json_escape(u.help));
            bool first_label = true;
            for (const auto& l : u.labels) {
                out += fmt::format(R"({}"{}":"{}")", first_label ? "" : ",", json_escape(l.name), json_escape(l.value));
                first_label = false;
            }
            out += fmt::format(R"(}},"value":{}}})", json_value(u.fn()));
        }
    }
    out += "]}";
    return out;
}

#endif // OFFLOAD_DEFINE_BODIES

} // namespace offload
