// offload/detail/loop/signal_set.hpp — the loop's signal handlers, delivered
// through one signalfd in the loop's epoll set: the signals are blocked in
// the loop thread (and in threads started later, which inherit the mask), so
// a handler runs as an ordinary step, never inside a signal context.
#pragma once

#include <offload/detail/base/config.hpp>
#include <offload/detail/base/small_function.hpp>
#include <offload/detail/base/system_error.hpp>

#if OFFLOAD_DEFINE_BODIES
#include <fmt/core.h> // messages of the function bodies below
#endif

#include <csignal>
#include <functional>
#include <pthread.h>
#include <stdexcept>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include <utility>
#include <vector>

namespace offload::detail {

class signal_set {
public:
    signal_set() noexcept { sigemptyset(&mask_); }
    signal_set(const signal_set&) = delete;
    signal_set& operator=(const signal_set&) = delete;
    /// Unblocks the handled signals and closes the signalfd.
    ~signal_set();

    /// The signalfd, or -1 before the first handler.
    int fd() const noexcept { return fd_; }

    /// Handles `sig` with `fn` (replacing an earlier handler); the signalfd
    /// joins `epfd` with the first handler.
    void add(int sig, std::function<void()> fn, int epfd);

    /// Removes the handler of `sig` and restores its mask; true if there was one.
    bool remove(int sig);

    /// Reads the pending signals and runs each handler through `run_step`.
    template <class RunStep>
    void dispatch(RunStep&& run_step) {
        signalfd_siginfo si;
        while (::read(fd_, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
            int sig = static_cast<int>(si.ssi_signo);
            if (!find(sig)) continue;
            small_function step([this, sig] {
                if (auto* h = find(sig)) {
                    auto fn = *h; // a copy: the handler may remove itself
                    fn();
                }
            });
            run_step(step);
        }
    }

private:
    static sigset_t only(int sig) noexcept {
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, sig);
        return one;
    }
    static void unblock(int sig) noexcept {
        sigset_t one = only(sig);
        ::pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
    }
    std::function<void()>* find(int sig) noexcept {
        for (auto& h : handlers_)
            if (h.first == sig) return &h.second;
        return nullptr;
    }

    int fd_ = -1;
    sigset_t mask_{};
    std::vector<std::pair<int, std::function<void()>>> handlers_;
};

#if OFFLOAD_DEFINE_BODIES

OFFLOAD_DECL signal_set::~signal_set() {
    for (auto& h : handlers_) unblock(h.first);
    if (fd_ >= 0) ::close(fd_);
}

OFFLOAD_DECL void signal_set::add(int sig, std::function<void()> fn, int epfd) {
    if (sig <= 0 || sig >= NSIG || sig == SIGKILL || sig == SIGSTOP)
        throw std::invalid_argument(
            fmt::format("offload: signal {} cannot be handled (SIGKILL and SIGSTOP never can)", sig));
    if (auto* h = find(sig)) {
        *h = std::move(fn);
        return;
    }
    sigset_t one = only(sig);
    ::pthread_sigmask(SIG_BLOCK, &one, nullptr);
    sigaddset(&mask_, sig);
    int fd = ::signalfd(fd_, &mask_, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        sigdelset(&mask_, sig);
        unblock(sig);
        throw_errno(err, "offload: signalfd");
    }
    if (fd_ < 0) {
        fd_ = fd;
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.fd = fd_;
        ::epoll_ctl(epfd, EPOLL_CTL_ADD, fd_, &ev);
    }
    handlers_.emplace_back(sig, std::move(fn));
}

OFFLOAD_DECL bool signal_set::remove(int sig) {
    for (auto it = handlers_.begin(); it != handlers_.end(); ++it) {
        if (it->first != sig) continue;
        handlers_.erase(it);
        sigdelset(&mask_, sig);
        if (fd_ >= 0) ::signalfd(fd_, &mask_, SFD_NONBLOCK | SFD_CLOEXEC);
        unblock(sig);
        return true;
    }
    return false;
}

#endif // OFFLOAD_DEFINE_BODIES

} // namespace offload::detail
