// offload/available_cpus.hpp — how many CPUs this process may really use:
// the sched_getaffinity mask, capped by the cgroup CPU quota (v2 `cpu.max`,
// v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`), with the quota rounded up.
// std::thread::hardware_concurrency() sees neither, so a pool sized by it in a
// 2-CPU container on a 64-core host starts 64 workers that fight for 2 CPUs.
#pragma once

#include <offload/detail/base/config.hpp>
#if OFFLOAD_DEFINE_BODIES
#include <offload/detail/base/read_file.hpp>

#include <charconv>
#endif

#include <sched.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace offload {

namespace detail {

/// Where available_cpus_from looks: real paths by default, a fake tree in tests.
struct cpu_probe {
    /// The cgroup mount root: the cgroup2 mount itself (v2), or the directory
    /// holding the v1 controller mounts (`cpu,cpuacct`, `cpu`).
    std::string cgroup_root = "/sys/fs/cgroup";
    /// The file listing the process's cgroups (`hierarchy:controllers:path` lines).
    std::string proc_self_cgroup = "/proc/self/cgroup";
    /// The CPUs in the affinity mask; unset = ask sched_getaffinity.
    std::optional<std::size_t> affinity_cpus;
};

/// Splits `text` on whitespace.
OFFLOAD_DECL std::vector<std::string_view> split_ws(std::string_view text);

/// Parses a whole word as a signed integer; nullopt on any junk.
OFFLOAD_DECL std::optional<std::int64_t> parse_int(std::string_view word);

/// ceil(quota / period) as a CPU count, or nullopt when either is not positive
/// (v1 writes -1 for "no limit").
OFFLOAD_DECL std::optional<std::size_t> cpus_of_quota(std::int64_t quota, std::int64_t period);

/// The limit in one cgroup v2 directory's `cpu.max` ("max 100000" = none).
OFFLOAD_DECL std::optional<std::size_t> v2_limit_in(const std::string& dir);

/// The limit in one cgroup v1 cpu-controller directory (quota -1 = none).
OFFLOAD_DECL std::optional<std::size_t> v1_limit_in(const std::string& dir);

/// The smallest limit from `base + path` up to `base` itself: nested cgroup
/// limits all apply, so the tightest ancestor wins. Walking up also covers
/// containers without a cgroup namespace, where /proc/self/cgroup names a path
/// (e.g. /docker/<id>) that does not exist under the container's own mount,
/// but the mount root is the container's cgroup.
template <class LimitIn>
std::optional<std::size_t> tightest_limit(const std::string& base, std::string_view path, LimitIn limit_in) {
    std::optional<std::size_t> best;
    std::string rel(path);
    while (!rel.empty() && rel.back() == '/') rel.pop_back();  // "/" -> "" (the root)
    for (;;) {
        if (auto lim = limit_in(base + rel)) best = best ? std::min(*best, *lim) : *lim;
        if (rel.empty()) break;
        auto slash = rel.rfind('/');
        rel.resize(slash == std::string::npos ? 0 : slash);
    }
    return best;
}

/// CPUs in the affinity mask, with a set sized at run time so machines with
/// more than CPU_SETSIZE (1024) CPUs are counted; nullopt if the call fails.
OFFLOAD_DECL std::optional<std::size_t> affinity_cpu_count() noexcept;

/// available_cpus() with every input injectable (see cpu_probe); never throws
/// for bad or missing files: those mean "no limit".
OFFLOAD_DECL std::size_t available_cpus_from(const cpu_probe& p);

#if OFFLOAD_DEFINE_BODIES

OFFLOAD_DECL std::vector<std::string_view> split_ws(std::string_view text) {
    std::vector<std::string_view> words;
    std::size_t i = 0;
    auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
    while (i < text.size()) {
        while (i < text.size() && is_space(text[i])) ++i;
        std::size_t start = i;
        while (i < text.size() && !is_space(text[i])) ++i;
        if (i > start) words.push_back(text.substr(start, i - start));
    }
    return words;
}

OFFLOAD_DECL std::optional<std::int64_t> parse_int(std::string_view word) {
    std::int64_t v = 0;
    auto [end, ec] = std::from_chars(word.data(), word.data() + word.size(), v);
    if (ec != std::errc{} || end != word.data() + word.size()) return std::nullopt;
    return v;
}

OFFLOAD_DECL std::optional<std::size_t> cpus_of_quota(std::int64_t quota, std::int64_t period) {
    if (quota <= 0 || period <= 0) return std::nullopt;
    // Written as q/p + (q%p != 0) rather than (q+p-1)/p, which can overflow.
    auto q = static_cast<std::uint64_t>(quota), p = static_cast<std::uint64_t>(period);
    return std::max<std::size_t>(1, static_cast<std::size_t>(q / p + (q % p != 0 ? 1 : 0)));
}

OFFLOAD_DECL std::optional<std::size_t> v2_limit_in(const std::string& dir) {
    auto text = read_small_file(dir + "/cpu.max");
    if (!text) return std::nullopt;
    auto words = split_ws(*text);
    if (words.size() != 2 || words[0] == "max") return std::nullopt;
    auto quota = parse_int(words[0]), period = parse_int(words[1]);
    if (!quota || !period) return std::nullopt;
    return cpus_of_quota(*quota, *period);
}

OFFLOAD_DECL std::optional<std::size_t> v1_limit_in(const std::string& dir) {
    auto quota_text = read_small_file(dir + "/cpu.cfs_quota_us");
    if (!quota_text) return std::nullopt;
    auto period_text = read_small_file(dir + "/cpu.cfs_period_us");
    if (!period_text) return std::nullopt;
    auto qw = split_ws(*quota_text), pw = split_ws(*period_text);
    if (qw.size() != 1 || pw.size() != 1) return std::nullopt;
    auto quota = parse_int(qw[0]), period = parse_int(pw[0]);
    if (!quota || !period) return std::nullopt;
    return cpus_of_quota(*quota, *period);
}

OFFLOAD_DECL std::optional<std::size_t> affinity_cpu_count() noexcept {
    // Grow the set while the kernel says it is too small (EINVAL); 1M CPUs is
    // far beyond any kernel's NR_CPUS, so the loop ends.
    for (int n = CPU_SETSIZE; n <= (1 << 20); n *= 2) {
        cpu_set_t* set = CPU_ALLOC(static_cast<std::size_t>(n));
        if (set == nullptr) return std::nullopt;
        std::size_t size = CPU_ALLOC_SIZE(static_cast<std::size_t>(n));
        CPU_ZERO_S(size, set);
        if (sched_getaffinity(0, size, set) == 0) {
            int count = CPU_COUNT_S(size, set);
            CPU_FREE(set);
            if (count <= 0) return std::nullopt;
            return static_cast<std::size_t>(count);
        }
        int err = errno;
        CPU_FREE(set);
        if (err != EINVAL) return std::nullopt;
    }
    return std::nullopt;
}

OFFLOAD_DECL std::size_t available_cpus_from(const cpu_probe& p) {
    std::size_t cpus = 0;
    if (p.affinity_cpus) {
        cpus = *p.affinity_cpus;
    } else if (auto n = affinity_cpu_count()) {
        cpus = *n;
    } else {
        cpus = std::thread::hardware_concurrency();
    }
    if (cpus == 0) cpus = 1;

    std::optional<std::size_t> quota;
    auto take = [&](std::optional<std::size_t> lim) {
        if (lim) quota = quota ? std::min(*quota, *lim) : *lim;
    };

    if (auto text = read_small_file(p.proc_self_cgroup)) {
        std::string_view rest = *text;
        while (!rest.empty()) {
            auto nl = rest.find('\n');
            std::string_view line = rest.substr(0, nl);
            rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
            // "hierarchy-id:controllers:path"; the path itself may contain ':'.
            auto c1 = line.find(':');
            if (c1 == std::string::npos) continue;
            auto c2 = line.find(':', c1 + 1);
            if (c2 == std::string::npos) continue;
            std::string_view id = line.substr(0, c1);
            std::string_view controllers = line.substr(c1 + 1, c2 - c1 - 1);
            std::string_view path = line.substr(c2 + 1);
            if (path.empty() || path.front() != '/') continue;

            if (id == "0" && controllers.empty()) {  // cgroup v2 (unified)
                take(tightest_limit(p.cgroup_root, path, v2_limit_in));
                continue;
            }
            // cgroup v1: only the hierarchy carrying the `cpu` controller.
            bool has_cpu = false;
            for (std::size_t i = 0; i <= controllers.size();) {
                auto comma = controllers.find(',', i);
                if (comma == std::string_view::npos) comma = controllers.size();
                if (controllers.substr(i, comma - i) == "cpu") has_cpu = true;
                i = comma + 1;
            }
            if (!has_cpu) continue;
            // The mount directory is named after the controller list, usually
            // "cpu,cpuacct", often with a "cpu" symlink beside it; try each.
            for (std::string dir : {std::string(controllers), std::string("cpu,cpuacct"), std::string("cpu")}) {
                take(tightest_limit(p.cgroup_root + "/" + dir, path, v1_limit_in));
            }
        }
    }
    if (quota) cpus = std::min(cpus, *quota);
    return std::max<std::size_t>(cpus, 1);
}

#endif // OFFLOAD_DEFINE_BODIES

}  // namespace detail

/// The number of CPUs this process may really use (always >= 1): the
/// sched_getaffinity mask (`taskset`, `docker --cpuset-cpus`), capped by the
/// cgroup CPU quota (`docker --cpus`, Kubernetes CPU limits), rounded up —
/// a quota of 1.5 CPUs gives 2. Unlike std::thread::hardware_concurrency(),
/// which counts the host's CPUs. Unreadable or malformed cgroup files count as
/// "no limit".
///
/// Nothing is cached: each call reads a few small files under /proc and
/// /sys/fs/cgroup (tens of microseconds). Call it once, when sizing a pool,
/// not per task.
///
/// Thread safety: safe to call from any thread.
OFFLOAD_DECL std::size_t available_cpus() noexcept;

#if OFFLOAD_DEFINE_BODIES

OFFLOAD_DECL std::size_t available_cpus() noexcept {
    try {
        return detail::available_cpus_from(detail::cpu_probe{});
    } catch (...) {  // only std::bad_alloc is possible; fall back to the mask alone
        if (auto n = detail::affinity_cpu_count()) return *n;
        return std::max(1u, std::thread::hardware_concurrency());
    }
}

#endif // OFFLOAD_DEFINE_BODIES

}  // namespace offload
