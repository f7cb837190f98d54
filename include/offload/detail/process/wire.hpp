// offload/detail/process/wire.hpp — what travels between a process pool and its
// workers, shared by both sides: message kinds, the call trampoline (a
// function instantiated per callable type that decodes the arguments, calls,
// and encodes the result), and exceptions turned into bytes and back: a
// standard exception type comes back as itself, anything else as remote_error
// with its original (demangled) type name. Also how a message is published in
// a mailbox (mailbox_send: descriptors first, then the sequence number, then
// a wake-up if the reader sleeps) and the init message every worker reads first.
#pragma once

#include <offload/detail/base/backtrace.hpp> // demangle
#include <offload/detail/base/config.hpp>

#include <offload/detail/process/fd_passing.hpp>
#include <offload/detail/process/fn_ref.hpp>
#include <offload/detail/process/mailbox.hpp>
#include <offload/errors.hpp>
#include <offload/serialize.hpp>

#include <cassert>
#include <optional>
#include <vector>

#include <cstdint>
#include <cstdlib>
#include <cxxabi.h>
#include <exception>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>

namespace offload::detail {

enum class msg_kind : std::uint32_t { init = 1, hello = 2, call = 3, result = 4, exit = 5 };

/// Decodes the arguments from `in`, calls, and encodes the result into `out`.
/// Returns the result object when its encoding recorded file descriptors
/// (a shared_buffer): they belong to it, so the caller keeps it alive until
/// `out` has been sent.
using trampoline_fn = std::shared_ptr<void> (*)(const void* fn, byte_reader& in, byte_writer& out);

template <class F, class R, class... A>
std::shared_ptr<void> trampoline(const void* fn, byte_reader& in, byte_writer& out) {
    auto args = decode_args<A...>(in);
    auto call = [&](auto&... a) -> R {
        if constexpr (std::is_pointer_v<F>)
            return reinterpret_cast<F>(const_cast<void*>(fn))(std::move(a)...);
        else
            return F{}(std::move(a)...);
    };
    if constexpr (std::is_void_v<R>) {
        std::apply(call, args);
        return {};
    } else {
        R r = std::apply(call, args);
        const std::size_t fds_before = out.fds().size();
        codec<R>::encode(out, r);
        if (out.fds().size() == fds_before) return {};
        return std::make_shared<R>(std::move(r)); // a move keeps the descriptors open
    }
}

// Standard exception types that cross the boundary as themselves.
enum class std_exception_kind : std::uint8_t {
    none = 0, // not standard: remote_error
    exception,
    logic_error,
    invalid_argument,
    domain_error,
    length_error,
    out_of_range,
    runtime_error,
    range_error,
    overflow_error,
    underflow_error,
    bad_alloc,
    serialization_error,
};

/// Encodes the exception being handled (call inside a catch block).
OFFLOAD_DECL void encode_current_exception(byte_writer& out);

/// Rebuilds and throws an exception encoded by encode_current_exception.
[[noreturn]] OFFLOAD_DECL void throw_remote_exception(byte_reader& in);

inline void encode_fn_ref(byte_writer& w, fn_ref r) {
    codec<std::uint32_t>::encode(w, r.module);
    codec<std::uint64_t>::encode(w, r.offset);
}
inline fn_ref decode_fn_ref(byte_reader& r) {
    fn_ref f;
    f.module = codec<std::uint32_t>::decode(r);
    f.offset = codec<std::uint64_t>::decode(r);
    return f;
}

/// The descriptors a worker is started with.
struct worker_fds {
    int to_worker = -1; // mailbox memfd: calls
    int to_parent = -1; // mailbox memfd: results
    int event = -1;     // eventfd that wakes the parent's loop
    int sock = -1;      // unix socket for descriptors (shared_buffer)
};

/// Everything a worker needs before its first call (sent as the init message).
struct worker_init {
    std::optional<std::int64_t> cpu_seconds;
    std::optional<std::uint64_t> address_space;
    std::optional<fn_ref> initializer;
    std::int32_t nice = 0; // niceness increment, 0 to 19
};

OFFLOAD_DECL void encode_init(byte_writer& w, const worker_init& i);
OFFLOAD_DECL worker_init decode_init(byte_reader& r);

/// Publishes one message that `w`, built on `box`, encoded in place: its
/// descriptors, then the sequence number, then a wake-up if the reader
/// sleeps. Used by both sides.
OFFLOAD_DECL void mailbox_send(mailbox& box, msg_kind kind, const byte_writer& w, int sock, int wake_eventfd);

/// Receives the descriptors announced by a message header.
OFFLOAD_DECL std::vector<int> mailbox_take_fds(const mailbox& box, int sock);

#if OFFLOAD_DEFINE_BODIES

OFFLOAD_DECL void encode_current_exception(byte_writer& out) {
    std::type_info* t = abi::__cxa_current_exception_type();
    std::string type = t ? demangle(t->name()) : std::string("<unknown>");
    std::string what = "non-standard exception (not derived from std::exception)";
    std_exception_kind kind = std_exception_kind::none;
    try {
        throw;
    } catch (const std::exception& e) {
        what = e.what();
        const std::type_info& exact = typeid(e);
        struct entry {
            const std::type_info& ti;
            std_exception_kind k;
        };
        const entry table[] = {
            {typeid(std::exception), std_exception_kind::exception},
            {typeid(std::logic_error), std_exception_kind::logic_error},
            {typeid(std::invalid_argument), std_exception_kind::invalid_argument},
            {typeid(std::domain_error), std_exception_kind::domain_error},
            {typeid(std::length_error), std_exception_kind::length_error},
            {typeid(std::out_of_range), std_exception_kind::out_of_range},
            {typeid(std::runtime_error), std_exception_kind::runtime_error},
            {typeid(std::range_error), std_exception_kind::range_error},
            {typeid(std::overflow_error), std_exception_kind::overflow_error},
            {typeid(std::underflow_error), std_exception_kind::underflow_error},
            {typeid(std::bad_alloc), std_exception_kind::bad_alloc},
            {typeid(serialization_error), std_exception_kind::serialization_error},
        };
        for (const auto& en : table)
            if (exact == en.ti) kind = en.k;
    } catch (...) {
    }
    codec<std::uint8_t>::encode(out, static_cast<std::uint8_t>(kind));
    codec<std::string>::encode(out, type);
    codec<std::string>::encode(out, what);
}

[[noreturn]] OFFLOAD_DECL void throw_remote_exception(byte_reader& in) {
    auto kind = static_cast<std_exception_kind>(codec<std::uint8_t>::decode(in));
    std::string type = codec<std::string>::decode(in);
    std::string what = codec<std::string>::decode(in);
    switch (kind) {
    case std_exception_kind::exception: throw remote_error(type, what);
    case std_exception_kind::logic_error: throw std::logic_error(what);
    case std_exception_kind::invalid_argument: throw std::invalid_argument(what);
    case std_exception_kind::domain_error: throw std::domain_error(what);
    case std_exception_kind::length_error: throw std::length_error(what);
    case std_exception_kind::out_of_range: throw std::out_of_range(what);
    case std_exception_kind::runtime_error: throw std::runtime_error(what);
    case std_exception_kind::range_error: throw std::range_error(what);
    case std_exception_kind::overflow_error: throw std::overflow_error(what);
    case std_exception_kind::underflow_error: throw std::underflow_error(what);
    case std_exception_kind::bad_alloc: throw std::bad_alloc();
    case std_exception_kind::serialization_error: throw serialization_error(what);
    case std_exception_kind::none: break;
    }
    throw remote_error(type, what);
}

OFFLOAD_DECL void encode_init(byte_writer& w, const worker_init& i) {
    codec<std::optional<std::int64_t>>::encode(w, i.cpu_seconds);
    codec<std::optional<std::uint64_t>>::encode(w, i.address_space);
    codec<bool>::encode(w, i.initializer.has_value());
    if (i.initializer) encode_fn_ref(w, *i.initializer);
    codec<std::int32_t>::encode(w, i.nice);
}

OFFLOAD_DECL worker_init decode_init(byte_reader& r) {
    worker_init i;
    i.cpu_seconds = codec<std::optional<std::int64_t>>::decode(r);
    i.address_space = codec<std::optional<std::uint64_t>>::decode(r);
    if (codec<bool>::decode(r)) i.initializer = decode_fn_ref(r);
    i.nice = codec<std::int32_t>::decode(r);
    return i;
}

OFFLOAD_DECL void mailbox_send(mailbox& box, msg_kind kind, const byte_writer& w, int sock, int wake_eventfd) {
    assert(w.size() == 0 || w.bytes().data() == box.payload());
    if (!w.fds().empty()) {
        char mark = 'F';
        send_with_fds(sock, &mark, 1, w.fds().data(), w.fds().size());
    }
    mailbox_header* h = box.hdr();
    h->kind = static_cast<std::uint32_t>(kind);
    h->nfds = static_cast<std::uint32_t>(w.fds().size());
    h->size = w.size();
    h->seq.fetch_add(1, std::memory_order_seq_cst); // publishes the payload (release) and pairs with `sleeping`
    if (h->sleeping.load(std::memory_order_seq_cst)) {
        if (wake_eventfd >= 0) {
            std::uint64_t one = 1;
            [[maybe_unused]] auto r = ::write(wake_eventfd, &one, sizeof one);
        } else {
            shared_futex_wake(h->seq);
        }
    }
}

OFFLOAD_DECL std::vector<int> mailbox_take_fds(const mailbox& box, int sock) {
    std::vector<int> fds;
    std::uint32_t n = box.hdr()->nfds;
    if (n == 0) return fds;
    char mark;
    recv_with_fds(sock, &mark, 1, fds, n);
    if (fds.size() != n) {
        for (int fd : fds) ::close(fd);
        throw serialization_error("offload: a message announced descriptors that did not arrive");
    }
    return fds;
}

#endif // OFFLOAD_DEFINE_BODIES

} // namespace offload::detail
