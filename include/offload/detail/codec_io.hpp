// offload/detail/codec_io.hpp — the byte-level half of the process-boundary
// codec: byte_writer (appends fixed-width little-endian values and LEB128
// varints to its own vector or in place into a byte_sink, and records file
// descriptors to pass with the message) and
// byte_reader (reads them back from untrusted bytes: every read is
// bounds-checked and every failure is a serialization_error with the offset).
#pragma once

#include <offload/errors.hpp>

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <sys/mman.h>

namespace offload::detail {

/// The readable name of T, for error messages ("std::vector<int>", ...).
template <class T>
constexpr std::string_view type_name() noexcept {
    // g++:   "... type_name() [with T = int; std::string_view = ...]"
    // clang: "... type_name() [T = int]"
    std::string_view p = __PRETTY_FUNCTION__;
    const auto start = p.find("T = ");
    if (start == std::string_view::npos)
        return "?";
    p.remove_prefix(start + 4);
    auto end = p.find(';');
    if (end == std::string_view::npos)
        end = p.rfind(']');
    return p.substr(0, end);
}

// Fixed-width values travel little-endian; on a little-endian host (every
// Linux target we build for) this is a plain memcpy.
template <class T>
inline void store_le(std::byte* out, T value) noexcept {
    static_assert(std::is_trivially_copyable_v<T>);
    std::memcpy(out, &value, sizeof(T));
    if constexpr (std::endian::native == std::endian::big)
        for (std::size_t i = 0; i < sizeof(T) / 2; ++i)
            std::swap(out[i], out[sizeof(T) - 1 - i]);
}

template <class T>
inline T load_le(const std::byte* in) noexcept {
    static_assert(std::is_trivially_copyable_v<T>);
    std::byte tmp[sizeof(T)];
    std::memcpy(tmp, in, sizeof(T));
    if constexpr (std::endian::native == std::endian::big)
        for (std::size_t i = 0; i < sizeof(T) / 2; ++i)
            std::swap(tmp[i], tmp[sizeof(T) - 1 - i]);
    T value;
    std::memcpy(&value, tmp, sizeof(T));
    return value;
}

/// A hint for a large buffer about to be filled for the first time: back it
/// with transparent huge pages, so the first touch faults 2 MiB at a time
/// instead of 4 KiB (on a 64 MiB decode that is most of the cost). Only the
/// whole 2 MiB pages inside [p, p + n) are advised; a no-op where THP is off.
inline void advise_huge_pages(void* p, std::size_t n) noexcept {
    constexpr std::size_t huge = std::size_t(2) << 20;
    if (n < 2 * huge)
        return;
    const auto a = reinterpret_cast<std::uintptr_t>(p);
    const std::uintptr_t first = (a + huge - 1) & ~(huge - 1);
    const std::uintptr_t last = (a + n) & ~(huge - 1);
    if (last > first)
        ::madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
}

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
        if (n == 0)
            return;
        std::memcpy(room(n), data, n);
        size_ += n;
    }

    /// Appends a fixed-width little-endian value.
    template <class T>
    void write_fixed(T value) {
        store_le(room(sizeof(T)), value);
        size_ += sizeof(T);
    }

    /// Appends an unsigned LEB128 varint (1 to 10 bytes).
    void write_varint(std::uint64_t v) {
        std::byte* out = room(10);
        std::size_t n = 0;
        do {
            auto b = static_cast<std::uint8_t>(v & 0x7f);
            v >>= 7;
            if (v != 0)
                b |= 0x80;
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

    const std::vector<int>& fds() const noexcept { return fds_; }
    std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }
    std::size_t size() const noexcept { return size_; }
    /// The bytes as a vector (moved out when the writer owns them, else copied).
    std::vector<std::byte> take_bytes() {
        if (sink_)
            return {data_, data_ + size_};
        own_.resize(size_);
        data_ = nullptr;
        size_ = cap_ = 0;
        return std::move(own_);
    }

private:
    // A pointer to n writable bytes at the end (the fast path is one compare).
    std::byte* room(std::size_t n) {
        if (cap_ - size_ < n)
            grow_to(size_ + n);
        return data_ + size_;
    }

    void grow_to(std::size_t need) {
        if (need <= cap_)
            return;
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
    explicit byte_reader(std::span<const std::byte> bytes, std::span<const int> fds = {}) noexcept
        : bytes_(bytes), fds_(fds) {}

    std::size_t offset() const noexcept { return pos_; }
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
            fail(type, "needs " + std::to_string(n) + " bytes but only " + std::to_string(remaining()) +
                           " remain");
        auto s = bytes_.subspan(pos_, n);
        pos_ += n;
        return s;
    }

    /// Copies the next n bytes to out.
    void read_bytes(void* out, std::size_t n, std::string_view type) {
        auto s = read_span(n, type);
        if (n != 0)
            std::memcpy(out, s.data(), n);
    }

    /// Reads a fixed-width little-endian value.
    template <class T>
    T read_fixed(std::string_view type) {
        return load_le<T>(read_span(sizeof(T), type).data());
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
            fail("file descriptor", "fd index " + std::to_string(index) + " but only " +
                                        std::to_string(fds_.size()) + " fds came with the message");
        return fds_[index];
    }

    std::span<const int> fds() const noexcept { return fds_; }

    /// Throws unless every byte was consumed.
    void expect_end(std::string_view type) const {
        if (remaining() != 0)
            fail(type, std::to_string(remaining()) + " trailing bytes after the value");
    }

private:
    std::span<const std::byte> bytes_;
    std::span<const int> fds_;
    std::size_t pos_ = 0;
};

} // namespace offload::detail
