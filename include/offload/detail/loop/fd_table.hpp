// offload/detail/loop/fd_table.hpp — the loop's fd registrations, mirrored
// into the loop's epoll set. Two kinds:
//  - callbacks (add_reader / add_writer / a raw readable(fd) wait): one reader
//    and one writer per fd, level-triggered, the epoll set follows what is
//    registered (an epoll_ctl whenever that changes). A callback runs out of
//    its slot (it may remove or replace itself, or grow the table) and goes
//    back only if nobody touched that slot meanwhile.
//  - owned fds (an io_source, the machinery of offload::async_fd): added once,
//    edge-triggered for both directions, removed when the owner lets go; every
//    epoll event goes to the owner. Waiting again costs no epoll_ctl.
#pragma once

#include <offload/detail/base/config.hpp>
#include <offload/detail/base/small_function.hpp>

#if OFFLOAD_DEFINE_BODIES
#include <fmt/core.h> // messages of the function bodies below
#endif

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <sys/epoll.h>
#include <system_error>
#include <utility>
#include <vector>

namespace offload::detail {

/// The owner of a persistent, edge-triggered registration (see attach()).
struct io_source {
    /// Epoll reported `events` (EPOLLIN, EPOLLOUT, EPOLLRDHUP, EPOLLHUP, EPOLLERR) for the fd.
    virtual void on_events(std::uint32_t events) = 0;
    /// The loop is being destroyed: forget it (its epoll fd goes away with it).
    virtual void loop_closing() noexcept = 0;

protected:
    ~io_source() = default;
};

class fd_table {
public:
    /// Registrations go into `epfd` (owned by the loop).
    explicit fd_table(int epfd) noexcept : epfd_(epfd) {}

    /// Calls `fn` whenever `fd` is ready for `write` (or reading). Replaces an
    /// earlier callback, unless `exclusive`: then a second one is an error.
    void set(int fd, bool write, small_function fn, bool exclusive);

    /// Removes the callback of `fd` for `write`; true if there was one.
    bool clear(int fd, bool write) noexcept;

    /// Registers `fd` once for EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET; its
    /// events go to `src` until detach(). Throws std::logic_error if the fd
    /// already has callbacks or an owner, std::system_error if epoll refuses it.
    void attach(int fd, io_source* src);
    /// Removes the registration of attach() (EPOLL_CTL_DEL; call it before closing the fd).
    void detach(int fd) noexcept;
    /// Tells every owner that the loop is going away (and forgets them).
    void close_owned() noexcept;

    /// How many epoll_ctl calls this table made (a counter for tests and benchmarks).
    std::uint64_t ctl_calls() const noexcept { return ctl_calls_; }

    /// Runs the callbacks that `ev` (epoll events of `fd`) makes ready, each
    /// through `run_step(small_function&)`.
    template <class RunStep>
    void dispatch(int fd, std::uint32_t ev, RunStep&& run_step) {
        const bool ready[2] = {(ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0,
                               (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0};
        if (static_cast<std::size_t>(fd) < fds_.size()) {
            if (io_source* owner = fds_[static_cast<std::size_t>(fd)].owner) {
                owner->on_events(ev);
                return;
            }
        }
        for (int w = 0; w < 2; ++w) {
            if (!ready[w] || static_cast<std::size_t>(fd) >= fds_.size()) continue;
            entry& e = fds_[static_cast<std::size_t>(fd)];
            if (!e.cb[w]) continue;
            unsigned gen = e.gen[w];
            small_function fn = std::move(e.cb[w]);
            e.running[w] = true; // still registered: update() keeps watching it
            run_step(fn);
            entry& again = fds_[static_cast<std::size_t>(fd)]; // the table may have grown
            again.running[w] = false;
            if (again.gen[w] == gen && !again.cb[w]) again.cb[w] = std::move(fn);
        }
    }

private:
    struct entry {
        small_function cb[2];             // reader, writer
        unsigned gen[2] = {0, 0};         // bumped on every set/clear, to spot changes made by a callback
        bool running[2] = {false, false}; // cb[i] is out of its slot, running in dispatch (still registered)
        std::uint32_t events = 0;         // what epoll watches now (callbacks)
        io_source* owner = nullptr;       // an owned, edge-triggered registration
    };

    void update(int fd, entry& e);
    entry& slot(int fd);

    int epfd_;
    std::vector<entry> fds_;
    std::uint64_t ctl_calls_ = 0;
};

#if OFFLOAD_DEFINE_BODIES

OFFLOAD_DECL fd_table::entry& fd_table::slot(int fd) {
    if (fd < 0) throw std::invalid_argument(fmt::format("offload: invalid fd {} passed to the event loop", fd));
    if (static_cast<std::size_t>(fd) >= fds_.size()) fds_.resize(static_cast<std::size_t>(fd) + 1);
    return fds_[static_cast<std::size_t>(fd)];
}

OFFLOAD_DECL void fd_table::set(int fd, bool write, small_function fn, bool exclusive) {
    entry& e = slot(fd);
    if (e.owner)
        throw std::logic_error(fmt::format("offload: fd {} is owned by an offload::async_fd; await its {}() "
                                           "instead of registering the fd with the loop again",
                                           fd, write ? "writable" : "readable"));
    if (exclusive && e.cb[write])
        throw std::logic_error(fmt::format("offload: fd {} already has a {}; only one task can wait for the same "
                                           "fd direction at a time",
                                           fd, write ? "writer" : "reader"));
    small_function old = std::move(e.cb[write]);
    const bool was_running = std::exchange(e.running[write], false);
    e.cb[write] = std::move(fn);
    ++e.gen[write];
    try {
        update(fd, e);
    } catch (...) {
        e.cb[write] = std::move(old);
        e.running[write] = was_running;
        throw;
    }
}

OFFLOAD_DECL bool fd_table::clear(int fd, bool write) noexcept {
    if (fd < 0 || static_cast<std::size_t>(fd) >= fds_.size()) return false;
    entry& e = fds_[static_cast<std::size_t>(fd)];
    // A callback that removes itself while it runs was registered, too.
    bool had = static_cast<bool>(e.cb[write]) || std::exchange(e.running[write], false);
    ++e.gen[write];
    small_function old = std::move(e.cb[write]);
    try {
        update(fd, e);
    } catch (...) {
        e.events = 0;
    }
    return had;
}

OFFLOAD_DECL void fd_table::attach(int fd, io_source* src) {
    entry& e = slot(fd);
    if (e.owner || e.cb[0] || e.cb[1] || e.running[0] || e.running[1] || e.events != 0)
        throw std::logic_error(fmt::format("offload: fd {} is already registered with the event loop ({}); one "
                                           "async_fd per fd, and no add_reader/add_writer/readable() beside it",
                                           fd, e.owner ? "by another async_fd" : "by a reader or writer"));
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.fd = fd;
    ++ctl_calls_;
    if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int err = errno;
        throw std::system_error(err, std::generic_category(),
                                fmt::format("offload: cannot watch fd {} with epoll (regular files and closed "
                                            "fds cannot be watched; use to_thread for file I/O)",
                                            fd));
    }
    e.owner = src;
}

OFFLOAD_DECL void fd_table::detach(int fd) noexcept {
    if (fd < 0 || static_cast<std::size_t>(fd) >= fds_.size()) return;
    entry& e = fds_[static_cast<std::size_t>(fd)];
    if (!e.owner) return;
    e.owner = nullptr;
    epoll_event ev{};
    ++ctl_calls_;
    ::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, &ev); // fails only if the fd was closed already: epoll forgot it then
}

OFFLOAD_DECL void fd_table::close_owned() noexcept {
    for (entry& e : fds_)
        if (io_source* src = std::exchange(e.owner, nullptr)) src->loop_closing();
}

OFFLOAD_DECL void fd_table::update(int fd, entry& e) {
    std::uint32_t want = (e.cb[0] || e.running[0] ? EPOLLIN : 0u) | (e.cb[1] || e.running[1] ? EPOLLOUT : 0u);
    if (want == e.events) return;
    epoll_event ev{};
    ev.events = want;
    ev.data.fd = fd;
    int op = e.events == 0 ? EPOLL_CTL_ADD : (want == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD);
    ++ctl_calls_;
    if (::epoll_ctl(epfd_, op, fd, &ev) < 0) {
        if (op == EPOLL_CTL_DEL) { // the fd may already be closed; epoll forgot it then
            e.events = 0;
            return;
        }
        int err = errno;
        throw std::system_error(err, std::generic_category(),
                                fmt::format("offload: cannot watch fd {} with epoll (regular files and closed "
                                            "fds cannot be watched; use to_thread for file I/O)",
                                            fd));
    }
    e.events = want;
}

#endif // OFFLOAD_DEFINE_BODIES

} // namespace offload::detail
