// offload/codec.hpp — the customization point of the process-boundary codec:
// codec<T> and the concept serializable<T>, the byte_writer and byte_reader a
// codec writes with, and the codecs of scalars (arithmetic types, bool, enums,
// monostate, durations). Include <offload/serialize.hpp> to get the codecs of
// the standard containers and of aggregates too, and the wire format.
//
// A user type's codec names only these (nothing in detail::):
//     template <> struct offload::codec<point> {
//         static void encode(offload::byte_writer& w, const point& p) { ... }
//         static point decode(offload::byte_reader& r) { ... }
//     };
#pragma once

#include <offload/detail/codec/byte_order.hpp>
#include <offload/errors.hpp>

#include <algorithm>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <variant>
#include <vector>

namespace offload {

/// Storage a byte_writer can encode into in place and grow: a process pool
/// points it at a shared-memory mailbox, so a message is written once, where
/// the other process reads it, instead of into a buffer that is then copied.
class byte_sink {
public:
    /// Makes room for at least `bytes` bytes and returns the whole writable
    /// region; its start may move (the bytes written so far move with it).
    virtual std::span<std::byte> grow(std::size_t bytes) = 0;

protected:
    ~byte_sink() = default;
};

/// Builds one encoded message: bytes plus the file descriptors that travel
/// beside it (SCM_RIGHTS; the transport sends them, the writer only records).
/// The bytes go into a vector the writer owns, or straight into a byte_sink.
/// Thread safety: none; one writer per message.
class byte_writer {
public:
    byte_writer() = default;
    /// An owning writer with room for `reserve` bytes already allocated.
    explicit byte_writer(std::size_t reserve) { grow_to(reserve); }
    /// Writes into `sink` from its start; the sink must outlive the writer.
    explicit byte_writer(byte_sink& sink) : sink_(&sink) {
        auto s = sink.grow(0);
        data_ = s.data();
        cap_ = s.size();
    }
    byte_writer(const byte_writer&) = delete;
    byte_writer& operator=(const byte_writer&) = delete;

    /// Appends n raw bytes.
    void write_bytes(const void* data, std::size_t n) {
        if (n == 0) return;
        std::memcpy(room(n), data, n);
        size_ += n;
    }

    /// Appends a fixed-width little-endian value.
    template <class T>
    void write_fixed(T value) {
        detail::store_le(room(sizeof(T)), value);
        size_ += sizeof(T);
    }

    /// Appends an unsigned LEB128 varint (1 to 10 bytes).
    void write_varint(std::uint64_t v) {
        std::byte* out = room(10);
        std::size_t n = 0;
        do {
            auto b = static_cast<std::uint8_t>(v & 0x7f);
            v >>= 7;
            if (v != 0) b |= 0x80;
            out[n++] = std::byte{b};
        } while (v != 0);
        size_ += n;
    }

    /// Records a file descriptor to send with the message; returns its index,
    /// which the value encodes so the reader can find it with fd_at().
    /// The writer does not own or close the fd.
    std::size_t add_fd(int fd) {
        fds_.push_back(fd);
        return fds_.size() - 1;
    }

    /// Forgets everything written so far (bytes and fds), keeping the storage.
    void reset() noexcept {
        size_ = 0;
        fds_.clear();
    }

    /// The file descriptors recorded so far by add_fd(), in index order.
    const std::vector<int>& fds() const noexcept { return fds_; }
    /// The bytes written so far (valid until the next write, which may move them).
    std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }
    /// The number of bytes written so far.
    std::size_t size() const noexcept { return size_; }
    /// The bytes as a vector (moved out when the writer owns them, else copied).
    std::vector<std::byte> take_bytes() {
        if (sink_) return {data_, data_ + size_};
        own_.resize(size_);
        data_ = nullptr;
        size_ = cap_ = 0;
        return std::move(own_);
    }

private:
    // A pointer to n writable bytes at the end (the fast path is one compare).
    std::byte* room(std::size_t n) {
        if (cap_ - size_ < n) grow_to(size_ + n);
        return data_ + size_;
    }

    void grow_to(std::size_t need) {
        if (need <= cap_) return;
        const std::size_t want = std::max({need, cap_ * 2, std::size_t{64}});
        if (sink_) {
            auto s = sink_->grow(want);
            data_ = s.data();
            cap_ = s.size();
        } else {
            own_.resize(want);
            data_ = own_.data();
            cap_ = own_.size();
        }
    }

    byte_sink* sink_ = nullptr;
    std::byte* data_ = nullptr;
    std::size_t size_ = 0;
    std::size_t cap_ = 0;
    std::vector<std::byte> own_;
    std::vector<int> fds_;
};

/// Reads one encoded message. Every byte is untrusted: reads are
/// bounds-checked, and any malformed or truncated input throws
/// serialization_error naming what was being read and the byte offset.
/// Thread safety: none; the spans must outlive the reader.
class byte_reader {
public:
    /// Reads `bytes`; `fds` are the descriptors that came with them (see fd_at()).
    explicit byte_reader(std::span<const std::byte> bytes, std::span<const int> fds = {}) noexcept
        : bytes_(bytes), fds_(fds) {}

    /// Bytes consumed so far (the offset that error messages name).
    std::size_t offset() const noexcept { return pos_; }
    /// Bytes not yet consumed.
    std::size_t remaining() const noexcept { return bytes_.size() - pos_; }

    /// Throws serialization_error: "<what> at byte offset N".
    [[noreturn]] void fail(std::string_view type, std::string_view what) const {
        std::string msg = "offload::serialization_error: cannot decode ";
        msg += type;
        msg += " at byte offset ";
        msg += std::to_string(pos_);
        msg += ": ";
        msg += what;
        msg += " (the message is corrupt, truncated, or was encoded for a different type)";
        throw serialization_error(msg);
    }

    /// Returns a view of the next n bytes and skips them.
    std::span<const std::byte> read_span(std::size_t n, std::string_view type) {
        if (n > remaining())
            fail(type, "needs " + std::to_string(n) + " bytes but only " + std::to_string(remaining()) + " remain");
        auto s = bytes_.subspan(pos_, n);
        pos_ += n;
        return s;
    }

    /// Copies the next n bytes to out.
    void read_bytes(void* out, std::size_t n, std::string_view type) {
        auto s = read_span(n, type);
        if (n != 0) std::memcpy(out, s.data(), n);
    }

    /// Reads a fixed-width little-endian value.
    template <class T>
    T read_fixed(std::string_view type) {
        return detail::load_le<T>(read_span(sizeof(T), type).data());
    }

    /// Reads an unsigned LEB128 varint; rejects truncation, more than 64 bits
    /// and overlong (non-minimal) encodings, so each value has one encoding.
    std::uint64_t read_varint(std::string_view type) {
        const std::size_t start = pos_;
        std::uint64_t v = 0;
        for (unsigned i = 0;; ++i) {
            if (pos_ >= bytes_.size()) {
                pos_ = start;
                fail(type, "truncated varint");
            }
            const auto b = std::to_integer<std::uint8_t>(bytes_[pos_]);
            if (i == 9 && b > 1) {
                pos_ = start;
                fail(type, "varint does not fit in 64 bits");
            }
            v |= std::uint64_t{b & 0x7fu} << (7 * i);
            ++pos_;
            if ((b & 0x80) == 0) {
                if (b == 0 && i != 0) {
                    pos_ = start;
                    fail(type, "overlong varint (non-minimal encoding)");
                }
                return v;
            }
        }
    }

    /// Reads an element count and checks, before anything is allocated, that
    /// the remaining input can hold that many elements of at least
    /// min_element_size bytes each (min_element_size >= 1).
    std::size_t read_count(std::size_t min_element_size, std::string_view type) {
        const std::size_t start = pos_;
        const std::uint64_t n = read_varint(type);
        if (n > remaining() / min_element_size) {
            pos_ = start;
            fail(type, "count " + std::to_string(n) + " needs at least " + std::to_string(min_element_size) +
                           " bytes per element but only " + std::to_string(remaining()) + " bytes remain");
        }
        return static_cast<std::size_t>(n);
    }

    /// The received file descriptor at index (as recorded by byte_writer::add_fd).
    int fd_at(std::size_t index) const {
        if (index >= fds_.size())
            fail("file descriptor", "fd index " + std::to_string(index) + " but only " + std::to_string(fds_.size()) +
                                        " fds came with the message");
        return fds_[index];
    }

    /// Every file descriptor that came with the message.
    std::span<const int> fds() const noexcept { return fds_; }

    /// Throws unless every byte was consumed.
    void expect_end(std::string_view type) const {
        if (remaining() != 0) fail(type, std::to_string(remaining()) + " trailing bytes after the value");
    }

private:
    std::span<const std::byte> bytes_;
    std::span<const int> fds_;
    std::size_t pos_ = 0;
};

/// The customization point: a specialization provides
///     static void encode(byte_writer&, const T&);
///     static T decode(byte_reader&);
/// The primary template has neither, so T is not serializable.
template <class T, class = void>
struct codec {};

/// True exactly when codec<T> can encode and decode T (recursively). Never
/// true for pointers, references, cv-qualified types, std::function, lambdas.
template <class T>
concept serializable = std::same_as<T, std::remove_cvref_t<T>> && !std::is_pointer_v<T> &&
                       requires(byte_writer& w, byte_reader& r, const T& value) {
                           { codec<T>::encode(w, value) } -> std::same_as<void>;
                           { codec<T>::decode(r) } -> std::same_as<T>;
                       };

namespace detail {

/// The fewest bytes an encoding of T takes (0 when the codec does not say).
template <class T>
constexpr std::size_t min_size() {
    if constexpr (requires { codec<T>::min_size; })
        return codec<T>::min_size;
    else
        return 0;
}

template <class... T>
inline constexpr std::size_t min_size_sum = (std::size_t{0} + ... + min_size<T>());

// One element of a counted container: zero-size elements carry a 0x00 byte
// (see the wire format) so that a count is always backed by input bytes.
template <class... T>
inline constexpr bool needs_pad = min_size_sum<T...> == 0;

template <class... T>
inline constexpr std::size_t element_unit = needs_pad<T...> ? 1 : min_size_sum<T...>;

template <class... T>
void write_pad(byte_writer& w) {
    if constexpr (needs_pad<T...>) w.write_fixed(std::uint8_t{0});
}

template <class Container, class... T>
void read_pad(byte_reader& r) {
    if constexpr (needs_pad<T...>)
        if (r.read_fixed<std::uint8_t>(type_name<Container>()) != 0)
            r.fail(type_name<Container>(), "element padding byte is not 0");
}

// Arithmetic types (and enums over them) whose bytes can be copied in bulk:
// every bit pattern is a valid value, so no per-element validation.
template <class T>
concept bulk_copyable = (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) ||
                        (std::is_enum_v<T> && !std::is_same_v<std::underlying_type_t<T>, bool>);

template <class Tie>
void encode_tied(byte_writer& w, const Tie& fields) {
    std::apply([&w](const auto&... f) { (codec<std::remove_cvref_t<decltype(f)>>::encode(w, f), ...); }, fields);
}

} // namespace detail

// --- scalars ----------------------------------------------------------------------

/// Arithmetic types: fixed-width little-endian.
template <class T>
    requires std::is_arithmetic_v<T>
struct codec<T> {
    /// The fewest bytes an encoding takes (optional in a codec of yours: it lets a reader
    /// reject a container count that the remaining bytes cannot hold).
    static constexpr std::size_t min_size = sizeof(T);
    /// Appends the encoding of a value to the writer.
    static void encode(byte_writer& w, const T& v) { w.write_fixed(v); }
    /// Reads one value (serialization_error on malformed or truncated input).
    static T decode(byte_reader& r) { return r.read_fixed<T>(detail::type_name<T>()); }
};

/// bool: one byte, 0 or 1.
template <>
struct codec<bool> {
    /// The fewest bytes an encoding takes (optional in a codec of yours: it lets a reader
    /// reject a container count that the remaining bytes cannot hold).
    static constexpr std::size_t min_size = 1;
    /// Appends the encoding of a value to the writer.
    static void encode(byte_writer& w, const bool& v) { w.write_fixed(static_cast<std::uint8_t>(v)); }
    /// Reads one value (serialization_error on malformed or truncated input).
    static bool decode(byte_reader& r) {
        const auto b = r.read_fixed<std::uint8_t>("bool");
        if (b > 1) r.fail("bool", "byte " + std::to_string(b) + " is neither 0 nor 1");
        return b == 1;
    }
};

/// Enums (std::byte included): the underlying integer, not range-checked.
template <class E>
    requires std::is_enum_v<E>
struct codec<E> {
    /// The integer type that goes on the wire.
    using underlying = std::underlying_type_t<E>;
    /// The fewest bytes an encoding takes (optional in a codec of yours: it lets a reader
    /// reject a container count that the remaining bytes cannot hold).
    static constexpr std::size_t min_size = sizeof(underlying);
    /// Appends the encoding of a value to the writer.
    static void encode(byte_writer& w, const E& v) { codec<underlying>::encode(w, static_cast<underlying>(v)); }
    /// Reads one value (serialization_error on malformed or truncated input).
    static E decode(byte_reader& r) { return static_cast<E>(codec<underlying>::decode(r)); }
};

/// std::monostate: nothing on the wire.
template <>
struct codec<std::monostate> {
    /// The fewest bytes an encoding takes (optional in a codec of yours: it lets a reader
    /// reject a container count that the remaining bytes cannot hold).
    static constexpr std::size_t min_size = 0;
    /// Appends the encoding of a value to the writer.
    static void encode(byte_writer&, const std::monostate&) {}
    /// Reads one value (serialization_error on malformed or truncated input).
    static std::monostate decode(byte_reader&) { return {}; }
};

/// std::chrono::duration: count() as Rep.
template <class Rep, class Period>
    requires serializable<Rep>
struct codec<std::chrono::duration<Rep, Period>> {
    /// The duration type this codec handles.
    using type = std::chrono::duration<Rep, Period>;
    /// The fewest bytes an encoding takes (optional in a codec of yours: it lets a reader
    /// reject a container count that the remaining bytes cannot hold).
    static constexpr std::size_t min_size = detail::min_size<Rep>();
    /// Appends the encoding of a value to the writer.
    static void encode(byte_writer& w, const type& v) { codec<Rep>::encode(w, v.count()); }
    /// Reads one value (serialization_error on malformed or truncated input).
    static type decode(byte_reader& r) { return type(codec<Rep>::decode(r)); }
};

} // namespace offload
