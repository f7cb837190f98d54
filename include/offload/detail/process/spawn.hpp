// offload/detail/process/spawn.hpp — the three ways to start a process-pool
// worker. fork: fork() the caller (fast, but a child of a process that runs
// other threads inherits their locks in whatever state they were). spawn:
// fork() then exec /proc/self/exe, which re-enters the program's main, where
// process_pool::worker_main recognises the worker arguments. forkserver: a
// small single-threaded process, forked when the pool is created, forks the
// workers on request, so later (re)starts never fork the threaded parent.
#pragma once

#include <offload/detail/base/config.hpp>

#include <offload/detail/base/read_file.hpp>
#include <offload/detail/process/exit_codes.hpp>
#include <offload/detail/process/worker.hpp>

#if OFFLOAD_DEFINE_BODIES
#include <fmt/core.h> // messages of the function bodies below
#endif

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <string>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <system_error>
#include <unistd.h>
#include <vector>

namespace offload::detail {

inline constexpr const char* spawn_flag = "--offload-worker";
inline constexpr int spawn_first_fd = 3; // to_worker, to_parent, event, sock = 3, 4, 5, 6

OFFLOAD_DECL void close_from(int first) noexcept;

/// Names of the threads of this process other than the caller ("name (tid)").
OFFLOAD_DECL std::vector<std::string> other_threads();

/// Debug mode: forking a process that runs other threads copies their locks in
/// whatever state they are; say which threads, once per fork.
OFFLOAD_DECL void warn_threaded_fork();

/// fork start method: the child runs the worker loop at once.
OFFLOAD_DECL pid_t start_forked(worker_fds f);

/// spawn start method: fork + exec /proc/self/exe with the worker's fds at 3..6.
OFFLOAD_DECL pid_t start_spawned(worker_fds f);

/// The worker side of spawn: true if argv says this process is a spawned worker.
inline bool is_spawned_worker(int argc, char** argv) noexcept {
    return argc >= 3 && argv[1] && std::strcmp(argv[1], spawn_flag) == 0;
}

/// True in a process that the spawn method started: its command line carries
/// the worker flag. A program that reaches process_pool's constructor there
/// forgot worker_main; it must fail at once instead of re-running itself.
/// Read from /proc/self/cmdline when a pool is created, so a program that
/// never creates one never reads it.
OFFLOAD_DECL bool started_as_spawned_worker();

#if OFFLOAD_DEFINE_BODIES

OFFLOAD_DECL void close_from(int first) noexcept {
#ifdef SYS_close_range
    if (::syscall(SYS_close_range, first, ~0u, 0) == 0) return;
#endif
    for (int fd = first; fd < 1024; ++fd) ::close(fd);
}

OFFLOAD_DECL std::vector<std::string> other_threads() {
    std::vector<std::string> out;
    DIR* d = ::opendir("/proc/self/task");
    if (!d) return out;
    pid_t self = static_cast<pid_t>(::syscall(SYS_gettid));
    while (dirent* e = ::readdir(d)) {
        if (e->d_name[0] == '.' || std::atoi(e->d_name) == self) continue;
        std::string name;
        if (FILE* f = std::fopen((std::string("/proc/self/task/") + e->d_name + "/comm").c_str(), "r")) {
            char buf[64] = {};
            if (std::fgets(buf, sizeof buf, f)) name = buf;
            std::fclose(f);
        }
        while (!name.empty() && (name.back() == '\n')) name.pop_back();
        out.push_back(fmt::format("{} ({})", name, e->d_name));
    }
    ::closedir(d);
    return out;
}

OFFLOAD_DECL void warn_threaded_fork() {
    auto threads = other_threads();
    if (threads.empty()) return;
    std::string list;
    for (auto& t : threads) list += (list.empty() ? "" : ", ") + t;
    std::string line = fmt::format(
        "offload: start_method::fork is forking a process that runs {} other thread(s): {}. A lock one of them "
        "holds stays locked forever in the worker. Create the pool before starting threads, or use "
        "start_method::forkserver or spawn",
        threads.size(), list);
    std::fprintf(stderr, "%s\n", line.c_str());
}

OFFLOAD_DECL pid_t start_forked(worker_fds f) {
    pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) throw std::system_error(errno, std::generic_category(), "offload: fork of a pool worker");
    if (pid == 0) run_worker(f, parent);
    return pid;
}

OFFLOAD_DECL pid_t start_spawned(worker_fds f) {
    pid_t parent = ::getpid();
    std::string parent_arg = std::to_string(parent);
    pid_t pid = ::fork();
    if (pid < 0) throw std::system_error(errno, std::generic_category(), "offload: fork of a pool worker");
    if (pid == 0) {
        // Move the four fds out of the way, then into place, without clobbering one another.
        int src[4] = {f.to_worker, f.to_parent, f.event, f.sock};
        int high[4];
        for (int i = 0; i < 4; ++i) high[i] = ::fcntl(src[i], F_DUPFD, 100);
        for (int i = 0; i < 4; ++i)
            if (high[i] < 0 || ::dup2(high[i], spawn_first_fd + i) < 0) ::_exit(exit_code::spawn_setup_failed);
        close_from(spawn_first_fd + 4);
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(exit_code::parent_gone);
        char flag[] = "--offload-worker";
        char self[] = "offload-worker";
        char* argv[] = {self, flag, parent_arg.data(), nullptr};
        ::execv("/proc/self/exe", argv);
        ::_exit(exit_code::exec_failed);
    }
    return pid;
}

OFFLOAD_DECL bool started_as_spawned_worker() {
    static const bool spawned = [] {
        auto all = read_small_file("/proc/self/cmdline");
        if (!all) return false;
        std::size_t first = all->find('\0');
        return first != std::string::npos && all->compare(first + 1, std::strlen(spawn_flag), spawn_flag) == 0;
    }();
    return spawned;
}

#endif // OFFLOAD_DEFINE_BODIES

} // namespace offload::detail
