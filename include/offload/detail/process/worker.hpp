// offload/detail/process/worker.hpp — the loop a process-pool worker runs: wait
// for a message in its mailbox (spin ~50 µs, then sleep on the futex), run
// the call through its trampoline, write the result or the exception back,
// wake the parent through its eventfd. It never returns: it _exits when told
// to, and dies with its parent (PR_SET_PDEATHSIG plus a getppid() check for
// the race where the parent died first).
#pragma once

#include <offload/detail/base/config.hpp>

#include <offload/detail/base/spin.hpp>
#include <offload/detail/process/exit_codes.hpp>
#include <offload/detail/process/fn_ref.hpp>
#include <offload/detail/process/mailbox.hpp>
#include <offload/detail/process/wire.hpp>
#include <offload/serialize.hpp>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <memory>
#include <optional>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

namespace offload::detail {

[[noreturn]] OFFLOAD_DECL void worker_fatal(const char* what);

/// Runs a worker; never returns.
[[noreturn]] OFFLOAD_DECL void run_worker(worker_fds f, pid_t parent);

#if OFFLOAD_DEFINE_BODIES

[[noreturn]] OFFLOAD_DECL void worker_fatal(const char* what) {
    std::fprintf(stderr, "offload worker %d: %s\n", static_cast<int>(::getpid()), what);
    std::fflush(stderr);
    ::_exit(exit_code::worker_fatal);
}

[[noreturn]] OFFLOAD_DECL void run_worker(worker_fds f, pid_t parent) {
    // A fresh signal state: the parent's loop blocked signals for its signalfd.
    for (int s = 1; s < NSIG; ++s)
        if (s != SIGKILL && s != SIGSTOP) ::signal(s, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    ::pthread_sigmask(SIG_SETMASK, &none, nullptr);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(exit_code::parent_gone); // died before PDEATHSIG was armed
    try {
        mailbox in, out;
        in.attach(f.to_worker);
        out.attach(f.to_parent);
        std::uint32_t seen = 0; // the init message (seq 1) may already be waiting
        // Adapts: parks at once where spinning keeps failing or loses the core.
        // Yields past the first few hundred polls: when the parent's loop shares
        // this core, a plain spin would keep it from reading the result (and
        // sending the next call) for the whole budget.
        spinner spin(spin_policy{.yield_after = 256, .park_when_busy = true});
        auto wait_message = [&]() {
            // Spin first: the next call usually follows the last result closely.
            // A yield that loses a whole slice to a CPU hog makes the spinner
            // park at once for the next waits (see spin.hpp).
            auto arrived = [&] { return in.hdr()->seq.load(std::memory_order_acquire) != seen; };
            if (!spin.spin(arrived)) {
                in.hdr()->sleeping.store(1, std::memory_order_seq_cst);
                while (in.hdr()->seq.load(std::memory_order_seq_cst) == seen)
                    shared_futex_wait(in.hdr()->seq, seen, nullptr);
                in.hdr()->sleeping.store(0, std::memory_order_relaxed);
                spin.woke();
            }
            seen = in.hdr()->seq.load(std::memory_order_acquire);
            in.refresh();
            return static_cast<msg_kind>(in.hdr()->kind);
        };

        if (wait_message() != msg_kind::init) worker_fatal("expected an init message");
        byte_reader ir(std::span<const std::byte>(in.payload(), in.hdr()->size));
        worker_init init = decode_init(ir);
        if (init.cpu_seconds) {
            rlimit rl{static_cast<rlim_t>(*init.cpu_seconds), static_cast<rlim_t>(*init.cpu_seconds + 1)};
            if (::setrlimit(RLIMIT_CPU, &rl) < 0) worker_fatal("setrlimit(RLIMIT_CPU) failed");
        }
        if (init.address_space) {
            rlimit rl{static_cast<rlim_t>(*init.address_space), static_cast<rlim_t>(*init.address_space)};
            if (::setrlimit(RLIMIT_AS, &rl) < 0) worker_fatal("setrlimit(RLIMIT_AS) failed");
        }
        if (init.nice > 0) {
            // Raising one's own niceness needs no privilege.
            errno = 0;
            int cur = ::getpriority(PRIO_PROCESS, 0);
            if (cur == -1 && errno != 0) cur = 0;
            if (::setpriority(PRIO_PROCESS, 0, std::min(19, cur + init.nice)) < 0) worker_fatal("setpriority failed");
        }
        if (init.initializer) {
            try {
                reinterpret_cast<void (*)()>(const_cast<void*>(resolve_fn_ref(*init.initializer)))();
            } catch (const std::exception& e) {
                std::fprintf(stderr, "offload worker %d: the pool's initializer threw: %s\n",
                             static_cast<int>(::getpid()), e.what());
                std::fflush(stderr);
                ::_exit(exit_code::initializer_threw);
            } catch (...) {
                worker_fatal("the pool's initializer threw a non-standard exception");
            }
        }
        {
            byte_writer hello(out);
            codec<std::int32_t>::encode(hello, static_cast<std::int32_t>(::getpid()));
            mailbox_send(out, msg_kind::hello, hello, f.sock, f.event);
        }
        for (;;) {
            msg_kind k = wait_message();
            if (k == msg_kind::exit) ::_exit(0);
            if (k != msg_kind::call) worker_fatal("unexpected message kind");
            byte_writer result(out); // encoded in place, where the parent reads it
            std::vector<int> fds;
            std::shared_ptr<void> keep; // owns the descriptors `result` records, until it is sent
            try {
                fds = mailbox_take_fds(in, f.sock);
                byte_reader r(std::span<const std::byte>(in.payload(), in.hdr()->size), fds);
                auto tramp = reinterpret_cast<trampoline_fn>(const_cast<void*>(resolve_fn_ref(decode_fn_ref(r))));
                const void* fn = nullptr;
                if (codec<bool>::decode(r)) fn = resolve_fn_ref(decode_fn_ref(r));
                codec<std::uint8_t>::encode(result, 0);
                keep = tramp(fn, r, result);
            } catch (...) {
                keep.reset();
                result.reset();
                codec<std::uint8_t>::encode(result, 1);
                encode_current_exception(result);
            }
            // The parent gives big mailbox pages back once this worker is idle (it
            // keeps them a while: back-to-back big calls then write warm memory).
            mailbox_send(out, msg_kind::result, result, f.sock, f.event);
            keep.reset();
            for (int fd : fds) ::close(fd); // the parent keeps its own copies
        }
    } catch (const std::exception& e) {
        worker_fatal(e.what());
    }
}

#endif // OFFLOAD_DEFINE_BODIES

} // namespace offload::detail
