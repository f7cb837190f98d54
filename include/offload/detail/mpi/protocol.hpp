// offload/detail/mpi/protocol.hpp — what rank 0 and the worker ranks of an
// mpi_pool say to each other, as bytes (the same codec the process pool
// uses): the handshake (build id and the local pool's options, answered with
// the rank's host and size, or why it cannot serve), and each call's outcome.
// An outcome carries the error kinds the pool itself produces (timeout,
// crash, cancellation, a broken or closed local pool) as themselves, so they
// come back on rank 0 with their own type; a callable's own exception
// travels in the process pool's encoding (standard types as themselves,
// others as remote_error with the original type name).
#pragma once

#include <offload/detail/process/fn_ref.hpp>
#include <offload/detail/process/wire.hpp>
#include <offload/errors.hpp>
#include <offload/mpi_pool_options.hpp>
#include <offload/serialize.hpp>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <vector>

namespace offload::detail {

/// Rank 0 -> worker rank: who we are and how to build the local pool.
struct mpi_hello {
    std::uint64_t build_id = 0;
    mpi_pool_options opts;
};

/// Worker rank -> rank 0: the answer to the hello.
struct mpi_hello_reply {
    enum status : std::uint8_t { ok = 0, build_mismatch = 1, forgot_worker_main = 2, pool_failed = 3 };
    std::uint8_t st = ok;
    std::string host;
    std::uint64_t workers = 0;
    std::int64_t pid = 0;
    std::uint64_t build_id = 0;
    std::string detail; // what failed
};

/// How a call ended on its rank.
enum class mpi_outcome : std::uint8_t {
    value = 0,     // the result's bytes follow
    exception = 1, // the callable threw (process-pool exception encoding)
    timed_out = 2, // task_timeout killed it
    crashed = 3,   // its worker process died
    cancelled = 4, // cancelled as asked
    broken = 5,    // the local pool is broken (crash_policy::break_pool)
    closed = 6,    // the local pool takes no calls
};

/// The local pool's own counters, sent with every result.
struct mpi_rank_counters {
    std::uint64_t crashes = 0, respawns = 0, kills = 0;
};

inline void encode_hello(byte_writer& w, const mpi_hello& h) {
    const auto& o = h.opts;
    codec<std::uint64_t>::encode(w, h.build_id);
    codec<std::uint64_t>::encode(w, o.local_workers);
    codec<std::uint64_t>::encode(w, o.max_in_flight_per_rank);
    codec<std::uint8_t>::encode(w, static_cast<std::uint8_t>(o.start));
    codec<std::uint64_t>::encode(w, o.max_tasks_per_child);
    codec<bool>::encode(w, o.initializer != nullptr);
    if (o.initializer) encode_fn_ref(w, make_fn_ref(reinterpret_cast<const void*>(o.initializer)));
    std::optional<std::int64_t> timeout;
    if (o.task_timeout) timeout = o.task_timeout->count();
    codec<std::optional<std::int64_t>>::encode(w, timeout);
    codec<std::uint8_t>::encode(w, static_cast<std::uint8_t>(o.on_crash));
    std::optional<std::int64_t> cpu;
    if (o.limits.cpu_seconds) cpu = o.limits.cpu_seconds->count();
    codec<std::optional<std::int64_t>>::encode(w, cpu);
    std::optional<std::uint64_t> as;
    if (o.limits.address_space) as = *o.limits.address_space;
    codec<std::optional<std::uint64_t>>::encode(w, as);
    codec<std::int32_t>::encode(w, o.nice);
}

inline mpi_hello decode_hello(byte_reader& r) {
    mpi_hello h;
    auto& o = h.opts;
    h.build_id = codec<std::uint64_t>::decode(r);
    o.local_workers = codec<std::uint64_t>::decode(r);
    o.max_in_flight_per_rank = codec<std::uint64_t>::decode(r);
    o.start = static_cast<start_method>(codec<std::uint8_t>::decode(r));
    o.max_tasks_per_child = codec<std::uint64_t>::decode(r);
    if (codec<bool>::decode(r))
        o.initializer = reinterpret_cast<void (*)()>(const_cast<void*>(resolve_fn_ref(decode_fn_ref(r))));
    if (auto t = codec<std::optional<std::int64_t>>::decode(r)) o.task_timeout = std::chrono::nanoseconds(*t);
    o.on_crash = static_cast<crash_policy>(codec<std::uint8_t>::decode(r));
    if (auto c = codec<std::optional<std::int64_t>>::decode(r)) o.limits.cpu_seconds = std::chrono::seconds(*c);
    if (auto a = codec<std::optional<std::uint64_t>>::decode(r)) o.limits.address_space = static_cast<std::size_t>(*a);
    o.nice = codec<std::int32_t>::decode(r);
    return h;
}

inline void encode_hello_reply(byte_writer& w, const mpi_hello_reply& h) {
    codec<std::uint8_t>::encode(w, h.st);
    codec<std::string>::encode(w, h.host);
    codec<std::uint64_t>::encode(w, h.workers);
    codec<std::int64_t>::encode(w, h.pid);
    codec<std::uint64_t>::encode(w, h.build_id);
    codec<std::string>::encode(w, h.detail);
}

inline mpi_hello_reply decode_hello_reply(byte_reader& r) {
    mpi_hello_reply h;
    h.st = codec<std::uint8_t>::decode(r);
    h.host = codec<std::string>::decode(r);
    h.workers = codec<std::uint64_t>::decode(r);
    h.pid = codec<std::int64_t>::decode(r);
    h.build_id = codec<std::uint64_t>::decode(r);
    h.detail = codec<std::string>::decode(r);
    return h;
}

/// Worker rank: the header of a result (the payload follows).
inline void encode_result_header(byte_writer& w, std::uint64_t id, mpi_outcome o, const mpi_rank_counters& c) {
    codec<std::uint64_t>::encode(w, id);
    codec<std::uint8_t>::encode(w, static_cast<std::uint8_t>(o));
    codec<std::uint64_t>::encode(w, c.crashes);
    codec<std::uint64_t>::encode(w, c.respawns);
    codec<std::uint64_t>::encode(w, c.kills);
}

/// Worker rank: encodes the error a local call ended with (call in a catch
/// block): the pool's own errors as themselves, the rest as the process pool does.
inline mpi_outcome encode_rank_error(byte_writer& w) {
    try {
        throw;
    } catch (const cancelled_error&) {
        return mpi_outcome::cancelled;
    } catch (const timeout_error& e) {
        codec<std::string>::encode(w, e.what());
        return mpi_outcome::timed_out;
    } catch (const worker_crashed& e) {
        codec<std::string>::encode(w, e.what());
        codec<std::int32_t>::encode(w, e.signal());
        codec<std::int32_t>::encode(w, e.exit_status());
        codec<std::int64_t>::encode(w, e.pid());
        return mpi_outcome::crashed;
    } catch (const broken_executor& e) {
        codec<std::string>::encode(w, e.what());
        return mpi_outcome::broken;
    } catch (const executor_closed& e) {
        codec<std::string>::encode(w, e.what());
        return mpi_outcome::closed;
    } catch (const remote_error& e) { // keep the type name it came with
        codec<std::uint8_t>::encode(w, static_cast<std::uint8_t>(std_exception_kind::none));
        codec<std::string>::encode(w, e.type_name());
        codec<std::string>::encode(w, e.what());
        return mpi_outcome::exception;
    } catch (...) {
        encode_current_exception(w);
        return mpi_outcome::exception;
    }
}

/// Rank 0: the exception of an outcome other than value (nullptr for
/// cancelled, which the caller turns into a cancellation).
inline std::exception_ptr decode_rank_error(mpi_outcome o, byte_reader& r, int rank, const std::string& host) {
    auto where = [&] { return " (on MPI rank " + std::to_string(rank) + ", host " + host + ")"; };
    try {
        switch (o) {
        case mpi_outcome::value:
        case mpi_outcome::cancelled: return nullptr;
        case mpi_outcome::exception: throw_remote_exception(r);
        case mpi_outcome::timed_out: throw timeout_error(codec<std::string>::decode(r) + where());
        case mpi_outcome::crashed: {
            std::string what = codec<std::string>::decode(r);
            int sig = codec<std::int32_t>::decode(r);
            int code = codec<std::int32_t>::decode(r);
            auto pid = static_cast<pid_t>(codec<std::int64_t>::decode(r));
            throw worker_crashed(what + where(), sig, code, pid);
        }
        case mpi_outcome::broken: throw broken_executor(codec<std::string>::decode(r) + where());
        case mpi_outcome::closed: throw executor_closed(codec<std::string>::decode(r) + where());
        }
        throw serialization_error("offload::mpi_pool: unknown outcome " + std::to_string(int(o)) + where());
    } catch (...) {
        return std::current_exception();
    }
}

} // namespace offload::detail
