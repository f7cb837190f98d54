// offload/shared_buffer.hpp — shared_buffer, the counterpart of Python's
// multiprocessing.shared_memory: a byte buffer in an anonymous memfd that
// crosses the process boundary as a handle (its descriptor travels beside the
// message via SCM_RIGHTS), so a worker reads and writes the very bytes the
// parent sees, with no copy. The segment has no name: the kernel frees it when
// the last descriptor is closed and the last mapping unmapped.
#pragma once

#include <offload/detail/base/config.hpp>

#include <offload/serialize.hpp>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <fcntl.h>
#include <limits>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <sys/mman.h>
#include <sys/stat.h>
#include <system_error>
#include <type_traits>
#include <unistd.h>
#include <utility>

namespace offload {
namespace detail {

// One memfd and its mapping, owned together: shared_buffer's copies share it
// through a shared_ptr (an atomic reference count), and the last one unmaps
// and closes. Size 0 has a descriptor but no mapping (mmap rejects length 0).
struct shared_segment {
    int fd = -1;
    std::byte* data = nullptr;
    std::size_t size = 0;

    shared_segment(int fd_, std::size_t size_) : fd(fd_), size(size_) {
        if (size == 0) return;
        void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "offload::shared_buffer: mmap");
        data = static_cast<std::byte*>(p);
    }
    shared_segment(const shared_segment&) = delete;
    shared_segment& operator=(const shared_segment&) = delete;
    ~shared_segment() {
        if (data) ::munmap(data, size);
        ::close(fd);
    }
};

/// Takes ownership of `fd` (closed on failure too) and maps its first `size` bytes.
OFFLOAD_DECL std::shared_ptr<shared_segment> map_segment(int fd, std::size_t size);

// The buffer's size can never change once created: a descriptor that could
// shrink under a mapping would turn a later read into SIGBUS.
inline constexpr int shared_buffer_seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;

#if OFFLOAD_DEFINE_BODIES

OFFLOAD_DECL std::shared_ptr<shared_segment> map_segment(int fd, std::size_t size) {
    try {
        return std::make_shared<shared_segment>(fd, size);
    } catch (...) {
        ::close(fd);
        throw;
    }
}

#endif // OFFLOAD_DEFINE_BODIES

} // namespace detail

/// A fixed-size byte buffer in shared memory (memfd + mmap MAP_SHARED), zero-filled
/// when created. Copies share the same bytes (like a shared_ptr to the mapping);
/// a moved-from buffer is empty (no segment, size 0). Passed to or returned from
/// a process_pool call it travels as a handle: the worker maps the same memory.
///
/// Thread safety: the handle's reference count is atomic, so copies may be made
/// and destroyed on any thread; one shared_buffer object is not to be modified
/// concurrently. The bytes are plain shared memory: concurrent writers (threads
/// or processes) must synchronise themselves; handing the buffer to a call and
/// awaiting its result is such a synchronisation.
///
/// With start_method::fork, a worker forked while a buffer exists inherits its
/// descriptor and mapping, so that segment lives until the worker exits.
///
/// Example:
///     offload::shared_buffer buf(1 << 20);
///     co_await offload::run_in_executor(pool, fill, buf); // the worker writes buf's bytes
///     auto ints = buf.as_span<std::uint32_t>();
class shared_buffer {
public:
    /// An empty buffer: no segment, size 0.
    shared_buffer() noexcept = default;

    /// Creates a zero-filled buffer of `size` bytes (0 allowed). Throws
    /// std::system_error when the kernel refuses (memfd_create, ftruncate, mmap),
    /// std::invalid_argument for a size beyond off_t.
    explicit shared_buffer(std::size_t size) {
        if (size > static_cast<std::size_t>(std::numeric_limits<off_t>::max()))
            throw std::invalid_argument("offload::shared_buffer: size " + std::to_string(size) + " is too large");
        const int fd = ::memfd_create("offload-buffer", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0) throw std::system_error(errno, std::generic_category(), "offload::shared_buffer: memfd_create");
        if (::ftruncate(fd, static_cast<off_t>(size)) < 0 ||
            ::fcntl(fd, F_ADD_SEALS, detail::shared_buffer_seals) < 0) {
            const int err = errno;
            ::close(fd);
            throw std::system_error(err, std::generic_category(), "offload::shared_buffer: ftruncate or F_ADD_SEALS");
        }
        seg_ = detail::map_segment(fd, size);
    }

    /// The first byte (nullptr when empty or of size 0).
    std::byte* data() noexcept { return seg_ ? seg_->data : nullptr; }
    /// The first byte, read-only (nullptr when empty or of size 0).
    const std::byte* data() const noexcept { return seg_ ? seg_->data : nullptr; }

    /// The size in bytes, fixed at creation.
    std::size_t size() const noexcept { return seg_ ? seg_->size : 0; }

    /// All the bytes.
    std::span<std::byte> bytes() noexcept { return {data(), size()}; }
    /// All the bytes, read-only.
    std::span<const std::byte> bytes() const noexcept { return {data(), size()}; }

    /// The bytes as an array of T (the mapping is page-aligned). Throws
    /// std::invalid_argument unless size() is a multiple of sizeof(T).
    template <class T>
        requires std::is_trivially_copyable_v<T>
    std::span<T> as_span() {
        check_divisible(sizeof(T));
        return {reinterpret_cast<T*>(data()), size() / sizeof(T)};
    }
    /// The bytes as a read-only array of T (std::invalid_argument unless
    /// size() is a multiple of sizeof(T)).
    template <class T>
        requires std::is_trivially_copyable_v<T>
    std::span<const T> as_span() const {
        check_divisible(sizeof(T));
        return {reinterpret_cast<const T*>(data()), size() / sizeof(T)};
    }

    /// True unless empty (default-constructed or moved from).
    explicit operator bool() const noexcept { return seg_ != nullptr; }

    /// The memfd (-1 when empty); it stays owned by the buffer.
    int native_handle() const noexcept { return seg_ ? seg_->fd : -1; }

private:
    friend struct codec<shared_buffer>;
    explicit shared_buffer(std::shared_ptr<detail::shared_segment> seg) noexcept : seg_(std::move(seg)) {}

    void check_divisible(std::size_t elem) const {
        if (size() % elem != 0)
            throw std::invalid_argument("offload::shared_buffer::as_span: the size (" + std::to_string(size()) +
                                        " bytes) is not a multiple of the element size (" + std::to_string(elem) +
                                        " bytes)");
    }

    std::shared_ptr<detail::shared_segment> seg_;
};

/// Wire format: 1 byte tag (0x00 empty, 0x01 a segment), then varint fd index
/// (into the fds beside the message) and varint size. Decoding trusts nothing:
/// the descriptor must be a sealed regular file (a memfd) of at least that size.
template <>
struct codec<shared_buffer> {
    /// The fewest bytes an encoding takes (optional in a codec of yours: it lets a reader
    /// reject a container count that the remaining bytes cannot hold).
    static constexpr std::size_t min_size = 1;

    /// Appends the encoding of a value to the writer.
    static void encode(byte_writer& w, const shared_buffer& b) {
        // The fd must stay open until the message is sent: the caller keeps `b` alive.
        w.write_fixed(static_cast<std::uint8_t>(b ? 1 : 0));
        if (!b) return;
        w.write_varint(w.add_fd(b.native_handle()));
        w.write_varint(b.size());
    }

    /// Reads one value (serialization_error on malformed or truncated input).
    static shared_buffer decode(byte_reader& r) {
        constexpr std::string_view type = "offload::shared_buffer";
        const auto tag = r.read_fixed<std::uint8_t>(type);
        if (tag == 0) return {};
        if (tag != 1) r.fail(type, "tag byte " + std::to_string(tag) + " is neither 0 nor 1");
        const std::uint64_t index = r.read_varint(type);
        const std::uint64_t size = r.read_varint(type);
        const int received = r.fd_at(static_cast<std::size_t>(index));
        struct stat st {};
        if (::fstat(received, &st) < 0 || !S_ISREG(st.st_mode))
            r.fail(type, "the descriptor that came with the message is not a memfd");
        if (st.st_size < 0 || size > static_cast<std::uint64_t>(st.st_size))
            r.fail(type, "size " + std::to_string(size) + " is larger than the memfd (" + std::to_string(st.st_size) +
                             " bytes)");
        const int seals = ::fcntl(received, F_GET_SEALS);
        if (seals < 0 || (seals & F_SEAL_SHRINK) == 0)
            r.fail(type, "the memfd is not sealed against shrinking (it could shrink under the mapping)");
        // The transport closes the received fds after decoding: keep a copy.
        const int fd = ::fcntl(received, F_DUPFD_CLOEXEC, 0);
        if (fd < 0) throw std::system_error(errno, std::generic_category(), "offload::shared_buffer: dup");
        return shared_buffer(detail::map_segment(fd, static_cast<std::size_t>(size)));
    }
};

} // namespace offload
