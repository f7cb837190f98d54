// tests/support/proc_check.hpp — process-level checks for process-pool tests:
// how many children this process has (zombies included), whether a pid is
// gone, waiting for a condition without a loop, and a wrapper that checks a
// test body leaves no fd and no child process behind.
#pragma once

#include "fd_count.hpp"

#include <catch2/catch.hpp>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace offload::test {

/// The state letter of /proc/<pid>/stat ('R', 'S', 'Z', ...), or 0 if there is no such process.
inline char proc_state(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(f, line)) return 0;
    auto close = line.rfind(')');
    if (close == std::string::npos || close + 2 >= line.size()) return 0;
    return line[close + 2];
}

/// The parent pid of `pid` from /proc/<pid>/status, or -1.
inline pid_t proc_ppid(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("PPid:", 0) == 0) return static_cast<pid_t>(std::atol(line.c_str() + 5));
    return -1;
}

/// The pids of every process whose parent is `parent` (zombies included).
inline std::vector<pid_t> children_of(pid_t parent) {
    std::vector<pid_t> out;
    DIR* d = ::opendir("/proc");
    if (!d) return out;
    while (dirent* e = ::readdir(d)) {
        pid_t pid = static_cast<pid_t>(std::atol(e->d_name));
        if (pid > 0 && proc_ppid(pid) == parent) out.push_back(pid);
    }
    ::closedir(d);
    return out;
}

inline std::size_t child_count() { return children_of(::getpid()).size(); }

/// True once `pid` no longer runs: no such process, or a zombie (dead, not yet
/// reaped by a parent that is not us).
inline bool process_gone(pid_t pid) {
    if (::kill(pid, 0) < 0 && errno == ESRCH) return true;
    char st = proc_state(pid);
    return st == 0 || st == 'Z' || st == 'X';
}

/// Polls `pred` every 5 ms for up to `limit` (no event loop needed).
template <class P>
bool wait_until(P pred, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    auto until = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > until) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
}

/// Runs `body` (which must create and destroy its pools) and checks that
/// afterwards this process has as many open fds and child processes as before.
template <class Body>
void without_leaks(Body body) {
    const std::size_t fds = fd_count();
    const std::size_t kids = child_count();
    body();
    std::size_t fds_after = fd_count();
    CHECK(fds_after == fds);
    bool no_children = wait_until([&] { return child_count() == kids; }, std::chrono::seconds(5));
    CHECK(no_children);
}

} // namespace offload::test
