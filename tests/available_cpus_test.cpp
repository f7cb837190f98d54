// Tests for offload/available_cpus.hpp: fake cgroup v1/v2 trees in a temp dir.
#include <offload/available_cpus.hpp>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

namespace {

namespace fs = std::filesystem;

/// A temp directory (mkdtemp) holding a fake cgroup root and /proc/self/cgroup,
/// removed on destruction.
struct fake_cgroup {
    fs::path dir;

    fake_cgroup() {
        std::string tmpl = (fs::temp_directory_path() / "offload_cpus_XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        dir = tmpl;
        fs::create_directories(dir / "root");
    }
    ~fake_cgroup() {
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
    fake_cgroup(const fake_cgroup&) = delete;
    fake_cgroup& operator=(const fake_cgroup&) = delete;

    /// Writes `content` to <root>/<rel>, creating directories.
    void write(const std::string& rel, const std::string& content) const {
        fs::path p = dir / "root" / rel;
        fs::create_directories(p.parent_path());
        std::ofstream(p) << content;
    }
    /// Writes the fake /proc/self/cgroup.
    void proc_cgroup(const std::string& content) const { std::ofstream(dir / "cgroup") << content; }

    offload::detail::cpu_probe probe(std::size_t affinity) const {
        return {.cgroup_root = (dir / "root").string(),
                .proc_self_cgroup = (dir / "cgroup").string(),
                .affinity_cpus = affinity};
    }
};

}  // namespace

TEST_CASE("available_cpus: a cgroup v2 quota of 1.5 CPUs rounds up to 2", "[available_cpus]") {
    fake_cgroup cg;
    cg.proc_cgroup("0::/app.slice/job\n");
    cg.write("app.slice/job/cpu.max", "150000 100000\n");
    REQUIRE(offload::detail::available_cpus_from(cg.probe(16)) == 2);
}

TEST_CASE("available_cpus: a whole cgroup v2 quota gives that many CPUs", "[available_cpus]") {
    fake_cgroup cg;
    cg.proc_cgroup("0::/job\n");
    cg.write("job/cpu.max", "200000 100000\n");
    REQUIRE(offload::detail::available_cpus_from(cg.probe(16)) == 2);
}

TEST_CASE("available_cpus: cgroup v2 \"max\" means no limit", "[available_cpus]") {
    fake_cgroup cg;
    cg.proc_cgroup("0::/job\n");
    cg.write("job/cpu.max", "max 100000\n");
    REQUIRE(offload::detail::available_cpus_from(cg.probe(12)) == 12);
}

TEST_CASE("available_cpus: a tighter parent cgroup v2 limit wins over the child's", "[available_cpus]") {
    fake_cgroup cg;
    cg.proc_cgroup("0::/parent/child\n");
    cg.write("parent/cpu.max", "300000 100000\n");
    cg.write("parent/child/cpu.max", "800000 100000\n");
    REQUIRE(offload::detail::available_cpus_from(cg.probe(16)) == 3);
}

TEST_CASE("available_cpus: a tighter child cgroup v2 limit wins over the parent's", "[available_cpus]") {
    fake_cgroup cg;
    cg.proc_cgroup("0::/parent/child\n");
    cg.write("parent/cpu.max", "800000 100000\n");
    cg.write("parent/child/cpu.max", "250000 100000\n");
    REQUIRE(offload::detail::available_cpus_from(cg.probe(16)) == 3);
}

TEST_CASE("available_cpus: a limit at the namespaced root applies when the cgroup path is absent", "[available_cpus]") {
    fake_cgroup cg;
    cg.proc_cgroup("0::/docker/abc123\n");  // no such directory under the fake mount
    cg.write("cpu.max", "100000 100000\n");
    REQUIRE(offload::detail::available_cpus_from(cg.probe(16)) == 1);
}

TEST_CASE("available_cpus: a cgroup v1 quota rounds up", "[available_cpus]") {
    fake_cgroup cg;
    cg.proc_cgroup("12:memory:/job\n4:cpu,cpuacct:/job\n1:name=systemd:/job\n");
    cg.write("cpu,cpuacct/job/cpu.cfs_quota_us", "250000\n");
    cg.write("cpu,cpuacct/job/cpu.cfs_period_us", "100000\n");
    REQUIRE(offload::detail::available_cpus_from(cg.probe(16)) == 3);
}

TEST_CASE("available_cpus: a cgroup v1 quota under a plain cpu mount is found", "[available_cpus]") {
    fake_cgroup cg;
    cg.proc_cgroup("4:cpuacct,cpu:/job\n");
    cg.write("cpu/job/cpu.cfs_quota_us", "50000\n");
    cg.write("cpu/job/cpu.cfs_period_us", "100000\n");
    REQUIRE(offload::detail::available_cpus_from(cg.probe(16)) == 1);
}

TEST_CASE("available_cpus: a cgroup v1 quota of -1 means no limit", "[available_cpus]") {
    fake_cgroup cg;
    cg.proc_cgroup("4:cpu,cpuacct:/job\n");
    cg.write("cpu,cpuacct/job/cpu.cfs_quota_us", "-1\n");
    cg.write("cpu,cpuacct/job/cpu.cfs_period_us", "100000\n");
    REQUIRE(offload::detail::available_cpus_from(cg.probe(7)) == 7);
}

TEST_CASE("available_cpus: malformed cgroup files mean no limit", "[available_cpus]") {
    const char* bad_cpu_max[] = {"",           "garbage",    "150000",
                                 "abc 100000", "150000 xyz", "150000 0",
                                 "-5 100000",  "1 2 3",      "99999999999999999999999 100000"};
    for (const char* content : bad_cpu_max) {
        CAPTURE(content);
        fake_cgroup cg;
        cg.proc_cgroup("0::/job\n");
        cg.write("job/cpu.max", content);
        REQUIRE(offload::detail::available_cpus_from(cg.probe(6)) == 6);
    }
    SECTION("a malformed v1 quota") {
        fake_cgroup cg;
        cg.proc_cgroup("4:cpu,cpuacct:/job\n");
        cg.write("cpu,cpuacct/job/cpu.cfs_quota_us", "12x\n");
        cg.write("cpu,cpuacct/job/cpu.cfs_period_us", "100000\n");
        REQUIRE(offload::detail::available_cpus_from(cg.probe(6)) == 6);
    }
    SECTION("a malformed /proc/self/cgroup") {
        fake_cgroup cg;
        cg.proc_cgroup("nonsense\n::\n0:\n0::relative\n\n");
        cg.write("cpu.max", "100000 100000\n");
        REQUIRE(offload::detail::available_cpus_from(cg.probe(6)) == 6);
    }
}

TEST_CASE("available_cpus: missing cgroup files mean no limit", "[available_cpus]") {
    SECTION("no /proc/self/cgroup") {
        fake_cgroup cg;
        REQUIRE(offload::detail::available_cpus_from(cg.probe(5)) == 5);
    }
    SECTION("no cpu.max anywhere") {
        fake_cgroup cg;
        cg.proc_cgroup("0::/a/b\n");
        cg.write("a/b/cgroup.procs", "1\n");
        REQUIRE(offload::detail::available_cpus_from(cg.probe(5)) == 5);
    }
    SECTION("a v1 quota without its period") {
        fake_cgroup cg;
        cg.proc_cgroup("4:cpu,cpuacct:/job\n");
        cg.write("cpu,cpuacct/job/cpu.cfs_quota_us", "100000\n");
        REQUIRE(offload::detail::available_cpus_from(cg.probe(5)) == 5);
    }
    SECTION("a cgroup root that does not exist") {
        offload::detail::cpu_probe p{.cgroup_root = "/nonexistent/offload/cgroup",
                                     .proc_self_cgroup = "/nonexistent/offload/proc",
                                     .affinity_cpus = 3};
        REQUIRE(offload::detail::available_cpus_from(p) == 3);
    }
}

TEST_CASE("available_cpus: an affinity mask smaller than the quota wins", "[available_cpus]") {
    fake_cgroup cg;
    cg.proc_cgroup("0::/job\n");
    cg.write("job/cpu.max", "800000 100000\n");
    REQUIRE(offload::detail::available_cpus_from(cg.probe(2)) == 2);
}

TEST_CASE("available_cpus: a quota smaller than the affinity mask wins", "[available_cpus]") {
    fake_cgroup cg;
    cg.proc_cgroup("0::/job\n");
    cg.write("job/cpu.max", "300000 100000\n");
    REQUIRE(offload::detail::available_cpus_from(cg.probe(64)) == 3);
}

TEST_CASE("available_cpus: the result is at least 1 even with a zero affinity count", "[available_cpus]") {
    fake_cgroup cg;
    cg.proc_cgroup("0::/job\n");
    cg.write("job/cpu.max", "1000 100000\n");  // 0.01 CPU
    REQUIRE(offload::detail::available_cpus_from(cg.probe(0)) == 1);
    REQUIRE(offload::detail::available_cpus_from(cg.probe(8)) == 1);
}

TEST_CASE("available_cpus: the real call gives between 1 and hardware_concurrency", "[available_cpus]") {
    std::size_t n = offload::available_cpus();
    REQUIRE(n >= 1);
    if (unsigned hw = std::thread::hardware_concurrency(); hw != 0) REQUIRE(n <= hw);
    // The injectable form with default paths and the real mask agrees.
    REQUIRE(offload::detail::available_cpus_from({}) == n);
}
