// offload/detail/proc_spawn.hpp — the three ways to start a process-pool
// worker. fork: fork() the caller (fast, but a child of a process that runs
// other threads inherits their locks in whatever state they were). spawn:
// fork() then exec /proc/self/exe, which re-enters the program's main, where
// process_pool::worker_main recognises the worker arguments. forkserver: a
// small single-threaded process, forked when the pool is created, forks the
// workers on request, so later (re)starts never fork the threaded parent.
#pragma once

#include <offload/detail/fd_passing.hpp>
#include <offload/detail/proc_worker.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <string>
#include <fcntl.h>
#include <poll.h>
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

inline void close_from(int first) noexcept {
#ifdef SYS_close_range
    if (::syscall(SYS_close_range, first, ~0u, 0) == 0) return;
#endif
    for (int fd = first; fd < 1024; ++fd) ::close(fd);
}

/// Names of the threads of this process other than the caller ("name (tid)").
inline std::vector<std::string> other_threads() {
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

/// Debug mode: forking a process that runs other threads copies their locks in
/// whatever state they are; say which threads, once per fork.
inline void warn_threaded_fork() {
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

/// fork start method: the child runs the worker loop at once.
inline pid_t start_forked(worker_fds f) {
    pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) throw std::system_error(errno, std::generic_category(), "offload: fork of a pool worker");
    if (pid == 0) run_worker(f, parent);
    return pid;
}

/// spawn start method: fork + exec /proc/self/exe with the worker's fds at 3..6.
inline pid_t start_spawned(worker_fds f) {
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
            if (high[i] < 0 || ::dup2(high[i], spawn_first_fd + i) < 0) ::_exit(126);
        close_from(spawn_first_fd + 4);
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(1);
        char flag[] = "--offload-worker";
        char self[] = "offload-worker";
        char* argv[] = {self, flag, parent_arg.data(), nullptr};
        ::execv("/proc/self/exe", argv);
        ::_exit(127);
    }
    return pid;
}

/// The worker side of spawn: true if argv says this process is a spawned worker.
inline bool is_spawned_worker(int argc, char** argv) noexcept {
    return argc >= 3 && argv[1] && std::strcmp(argv[1], spawn_flag) == 0;
}

// --- forkserver ----------------------------------------------------------------
// Protocol on a SOCK_SEQPACKET pair. Parent -> server: {spawn} with the worker's
// four fds attached. Server -> parent: {spawned, pid} in reply, and {exited,
// pid, wait status} whenever a worker ends (the server is their parent, so
// only it can reap them and learn how they died).
struct forkserver_msg {
    enum type_t : std::int32_t { spawn = 1, spawned = 2, exited = 3, failed = 4 };
    std::int32_t type = 0;
    std::int32_t pid = 0;
    std::int32_t status = 0;
};

[[noreturn]] inline void run_forkserver(int sock, pid_t parent) {
    for (int s = 1; s < NSIG; ++s)
        if (s != SIGKILL && s != SIGSTOP && s != SIGCHLD) ::signal(s, SIG_DFL);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    ::pthread_sigmask(SIG_SETMASK, &chld, nullptr);
    int sfd = ::signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent || sfd < 0) ::_exit(1);
    pid_t self = ::getpid();
    std::vector<pid_t> children;
    for (;;) {
        pollfd p[2] = {{sock, POLLIN, 0}, {sfd, POLLIN, 0}};
        if (::poll(p, 2, -1) < 0) {
            if (errno == EINTR) continue;
            ::_exit(2);
        }
        if (p[1].revents & POLLIN) {
            signalfd_siginfo si;
            while (::read(sfd, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
            }
            int status = 0;
            pid_t pid;
            while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
                forkserver_msg m{forkserver_msg::exited, pid, status};
                ::send(sock, &m, sizeof m, MSG_NOSIGNAL);
                std::erase(children, pid);
            }
        }
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            forkserver_msg m;
            std::vector<int> fds;
            std::size_t n = 0;
            try {
                n = recv_with_fds(sock, &m, sizeof m, fds, 4);
            } catch (...) {
                n = 0;
            }
            if (n == 0) { // the parent went away: take the workers with us
                for (pid_t c : children) ::kill(c, SIGKILL);
                ::_exit(0);
            }
            if (m.type != forkserver_msg::spawn || fds.size() != 4) {
                for (int fd : fds) ::close(fd);
                forkserver_msg r{forkserver_msg::failed, 0, EINVAL};
                ::send(sock, &r, sizeof r, MSG_NOSIGNAL);
                continue;
            }
            pid_t pid = ::fork();
            if (pid == 0) {
                ::close(sock);
                ::close(sfd);
                run_worker({fds[0], fds[1], fds[2], fds[3]}, self);
            }
            for (int fd : fds) ::close(fd);
            forkserver_msg r{pid > 0 ? forkserver_msg::spawned : forkserver_msg::failed, pid > 0 ? pid : 0,
                             pid > 0 ? 0 : errno};
            if (pid > 0) children.push_back(pid);
            ::send(sock, &r, sizeof r, MSG_NOSIGNAL);
        }
    }
}

/// Starts a forkserver; returns its pid and the parent's end of the socket.
inline std::pair<pid_t, int> start_forkserver() {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        throw std::system_error(errno, std::generic_category(), "offload: socketpair for the forkserver");
    pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) {
        int e = errno;
        ::close(sv[0]);
        ::close(sv[1]);
        throw std::system_error(e, std::generic_category(), "offload: fork of the forkserver");
    }
    if (pid == 0) {
        ::close(sv[0]);
        run_forkserver(sv[1], parent);
    }
    ::close(sv[1]);
    return {pid, sv[0]};
}

} // namespace offload::detail
