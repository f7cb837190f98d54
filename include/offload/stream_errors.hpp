// offload/stream_errors.hpp — what a stream (<offload/stream.hpp>) throws:
// asyncio's IncompleteReadError, LimitOverrunError and ConnectionResetError,
// plus connection_error for a connect or name resolution that failed. Each
// says what happened and where (the peer's address).
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

namespace offload {

/// The base of every stream error: a message and, where a syscall failed, its
/// errno as an error_code (empty otherwise).
class stream_error : public std::runtime_error {
public:
    /// The message, and the errno behind it when a syscall failed.
    explicit stream_error(const std::string& what, std::error_code code = {}) : std::runtime_error(what), code_(code) {}
    /// The errno behind the error (e.g. ECONNREFUSED), or an empty code.
    std::error_code code() const noexcept { return code_; }

private:
    std::error_code code_;
};

/// open_connection / open_unix_connection could not connect: the name did not
/// resolve, or every address refused or was unreachable. what() names the
/// address: "offload: connection refused to 127.0.0.1:1".
class connection_error : public stream_error {
public:
    /// The constructors of stream_error.
    using stream_error::stream_error;
};

/// The peer reset the connection (ECONNRESET) or is gone while we wrote to it
/// (EPIPE): asyncio's ConnectionResetError. No SIGPIPE is ever raised.
class connection_reset_error : public stream_error {
public:
    /// The constructors of stream_error.
    using stream_error::stream_error;
};

/// End of file came before the bytes read_exactly() / read_until() wanted:
/// asyncio's IncompleteReadError. partial() holds what was read (it has been
/// taken from the stream); expected() is the size asked for (0 for read_until).
class incomplete_read_error : public stream_error {
public:
    /// The message, the bytes that came, and how many were asked for (0 for read_until).
    incomplete_read_error(const std::string& what, std::string partial, std::size_t expected)
        : stream_error(what), partial_(std::move(partial)), expected_(expected) {}
    /// The bytes that arrived before end of file.
    const std::string& partial() const noexcept { return partial_; }
    /// The number of bytes asked for (read_exactly), 0 when reading up to a delimiter.
    std::size_t expected() const noexcept { return expected_; }

private:
    std::string partial_;
    std::size_t expected_;
};

/// read_until() / readline() found no delimiter within the stream's limit
/// (stream_options::limit): asyncio's LimitOverrunError. The bytes stay in the
/// stream's buffer; consumed() is how many of them were searched, so that a
/// caller may read(consumed()) them to skip, or close the stream.
class limit_overrun_error : public stream_error {
public:
    /// The message, and how many buffered bytes hold no delimiter.
    limit_overrun_error(const std::string& what, std::size_t consumed) : stream_error(what), consumed_(consumed) {}
    /// Bytes in the buffer that hold no delimiter (or precede one found past the limit).
    std::size_t consumed() const noexcept { return consumed_; }

private:
    std::size_t consumed_;
};

} // namespace offload
