// offload/detail/process/forkserver.hpp — the forkserver start method: a
// small single-threaded process, forked when the pool is created, forks the
// workers on request, so later (re)starts never fork the threaded parent.
// Its children are its own, so only it can reap them: it reports each exit
// (with the wait status) back to the pool.
#pragma once

#include <offload/detail/base/config.hpp>

#include <offload/detail/process/exit_codes.hpp>
#include <offload/detail/process/fd_passing.hpp>
#include <offload/detail/process/worker.hpp>
#include <offload/errors.hpp>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <system_error>
#include <tuple>
#include <unistd.h>
#include <utility>
#include <vector>

namespace offload::detail {

// Protocol on a SOCK_SEQPACKET pair. Parent -> server: {spawn} with the worker's
// four fds attached, and {quit} when the pool stops (EOF alone is not enough: a
// process forked later by the parent, such as another pool's forkserver or a
// fork-method worker, holds a copy of the parent's end). Server -> parent: {spawned, pid} in reply, and {exited,
// pid, wait status} whenever a worker ends (the server is their parent, so
// only it can reap them and learn how they died).
struct forkserver_msg {
    enum type_t : std::int32_t { spawn = 1, spawned = 2, exited = 3, failed = 4, quit = 5 };
    std::int32_t type = 0;
    std::int32_t pid = 0;
    std::int32_t status = 0;
};

[[noreturn]] OFFLOAD_DECL void run_forkserver(int sock, pid_t parent);

/// Starts a forkserver; returns its pid and the parent's end of the socket.
OFFLOAD_DECL std::pair<pid_t, int> start_forkserver();

/// The pool's end of a forkserver: asks it for workers and reads its exit
/// reports. Reports that arrive while spawn() waits for its reply are kept in
/// early_exits() for the pool to handle (they are no longer in the socket).
class forkserver_client {
public:
    forkserver_client() = default;
    forkserver_client(const forkserver_client&) = delete;
    forkserver_client& operator=(const forkserver_client&) = delete;
    ~forkserver_client() { stop(); }

    void start() { std::tie(pid_, sock_) = start_forkserver(); }
    bool running() const noexcept { return sock_ >= 0; }
    /// The socket the loop watches for exit reports.
    int fd() const noexcept { return sock_; }

    /// Forks a worker running on `f`; returns its pid. Throws broken_executor
    /// if the server is gone, std::system_error if it could not fork.
    pid_t spawn(const worker_fds& f) {
        forkserver_msg m{forkserver_msg::spawn, 0, 0};
        int fds[4] = {f.to_worker, f.to_parent, f.event, f.sock};
        send_with_fds(sock_, &m, sizeof m, fds, 4);
        for (;;) { // the reply; exit reports may come first
            forkserver_msg r;
            std::vector<int> none;
            if (recv_with_fds(sock_, &r, sizeof r, none, 0) == 0)
                throw broken_executor("offload: the forkserver exited; the pool cannot start workers");
            if (r.type == forkserver_msg::exited) {
                early_exits_.emplace_back(r.pid, r.status);
                continue;
            }
            if (r.type != forkserver_msg::spawned)
                throw std::system_error(r.status, std::generic_category(), "offload: forkserver could not fork");
            return r.pid;
        }
    }

    /// Reads one exit report without blocking: 1 when `m` holds one, 0 when
    /// the server closed the socket (it died), -1 when nothing is there.
    int read_report(forkserver_msg& m) noexcept {
        ssize_t n = ::recv(sock_, &m, sizeof m, MSG_DONTWAIT);
        if (n == 0) return 0;
        return n == static_cast<ssize_t>(sizeof m) ? 1 : -1;
    }

    /// Exit reports read by spawn() and not handled yet (oldest first).
    std::vector<std::pair<pid_t, int>>& early_exits() noexcept { return early_exits_; }

    /// Tells the server to quit (it kills its workers and exits), closes the
    /// socket and reaps the server.
    void stop() noexcept {
        if (sock_ < 0) return;
        forkserver_msg m{forkserver_msg::quit, 0, 0};
        (void)::send(sock_, &m, sizeof m, MSG_NOSIGNAL | MSG_DONTWAIT); // if it is gone, waitpid returns at once
        ::close(std::exchange(sock_, -1));
        ::waitpid(pid_, nullptr, 0);
    }

private:
    pid_t pid_ = -1;
    int sock_ = -1;
    std::vector<std::pair<pid_t, int>> early_exits_;
};

#if OFFLOAD_DEFINE_BODIES

[[noreturn]] OFFLOAD_DECL void run_forkserver(int sock, pid_t parent) {
    for (int s = 1; s < NSIG; ++s)
        if (s != SIGKILL && s != SIGSTOP && s != SIGCHLD) ::signal(s, SIG_DFL);
    // Ctrl-C reaches the whole foreground process group, and systemd's SIGTERM
    // every process of the service: the server must outlive both, or its
    // workers die with it (PDEATHSIG) under calls the parent is still draining.
    // It still ends with the parent (PDEATHSIG) or when the pool stops it.
    // Python's forkserver ignores SIGINT for the same reason.
    ::signal(SIGINT, SIG_IGN);
    ::signal(SIGTERM, SIG_IGN);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    ::pthread_sigmask(SIG_SETMASK, &chld, nullptr);
    int sfd = ::signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent || sfd < 0) ::_exit(exit_code::parent_gone);
    pid_t self = ::getpid();
    std::vector<pid_t> children;
    for (;;) {
        pollfd p[2] = {{sock, POLLIN, 0}, {sfd, POLLIN, 0}};
        if (::poll(p, 2, -1) < 0) {
            if (errno == EINTR) continue;
            ::_exit(exit_code::forkserver_poll_failed);
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
            if (n == 0 || (n == sizeof m && m.type == forkserver_msg::quit)) {
                // The pool stopped, or the parent went away: take the workers with us.
                for (int fd : fds) ::close(fd);
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

OFFLOAD_DECL std::pair<pid_t, int> start_forkserver() {
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
        // Keep only the standard streams and our end: the fds the parent had open
        // (other pools' sockets, user files) are not the server's to hold open.
        const unsigned sock = static_cast<unsigned>(sv[1]);
        if (sock > 3) ::close_range(3, sock - 1, 0);
        ::close_range(std::max(sock + 1, 3u), ~0u, 0);
        run_forkserver(sv[1], parent);
    }
    ::close(sv[1]);
    return {pid, sv[0]};
}

#endif // OFFLOAD_DEFINE_BODIES

} // namespace offload::detail
