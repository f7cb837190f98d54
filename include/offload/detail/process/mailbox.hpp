// offload/detail/process/mailbox.hpp — the one-slot shared-memory mailbox that
// carries a process-pool call to a worker and its result back. Each direction
// of each worker is a memfd mapped by both processes: a 64-byte header (a
// sequence number that doubles as a futex word, a "reader is asleep" flag,
// the message size) followed by the payload. A worker runs one call at a
// time, so one slot per direction suffices: no ring, no locks. No byte goes
// through a socket: the sender encodes its message in place into the mailbox
// (the mailbox is a byte_sink) and the receiver decodes straight out of it,
// so a payload is copied once into shared memory and once out into the
// receiver's value. The writer grows the memfd (ftruncate) when a message
// does not fit, and the reader remaps when it sees a larger capacity.
// shared_buffer skips both copies: only a handle crosses.
#pragma once

#include <offload/codec.hpp>
#include <offload/errors.hpp>

#include <fmt/core.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <system_error>
#include <unistd.h>

namespace offload::detail {

struct mailbox_header {
    std::atomic<std::uint32_t> seq;      // bumped by the writer once the message is complete (futex word)
    std::atomic<std::uint32_t> sleeping; // the reader is (about to be) asleep: the writer must wake it
    std::atomic<std::uint64_t> capacity; // payload bytes the memfd holds now (grown by the writer)
    std::uint32_t kind;
    std::uint32_t nfds; // descriptors sent alongside on the worker's socket
    std::uint64_t size; // payload bytes of the current message
};
static_assert(std::atomic<std::uint32_t>::is_always_lock_free && std::atomic<std::uint64_t>::is_always_lock_free,
              "process-shared atomics must be lock-free (address-free)");

inline constexpr std::size_t mailbox_payload_offset = 64;

/// One side's mapping of one mailbox. As a byte_sink, a byte_writer encodes
/// a message straight into its payload.
class mailbox final : public byte_sink {
public:
    mailbox() = default;
    mailbox(const mailbox&) = delete;
    mailbox& operator=(const mailbox&) = delete;
    ~mailbox() { unmap(); }

    /// Creates the memfd (parent side) with `initial` payload bytes.
    static int create_fd(std::size_t initial, const char* name) {
        int fd = ::memfd_create(name, MFD_CLOEXEC);
        if (fd < 0) throw std::system_error(errno, std::generic_category(), "offload: memfd_create");
        if (::ftruncate(fd, static_cast<off_t>(mailbox_payload_offset + initial)) < 0) {
            int e = errno;
            ::close(fd);
            throw std::system_error(e, std::generic_category(), "offload: ftruncate of a worker mailbox");
        }
        return fd;
    }

    /// Maps the mailbox held by `fd` (the fd stays owned by the caller).
    void attach(int fd) {
        unmap(); // a respawned worker's slot attaches its new mailbox
        fd_ = fd;
        struct stat_size {
            static std::size_t of(int f) {
                off_t end = ::lseek(f, 0, SEEK_END);
                if (end < 0) throw std::system_error(errno, std::generic_category(), "offload: lseek mailbox");
                return static_cast<std::size_t>(end);
            }
        };
        map(stat_size::of(fd));
        if (hdr()->capacity.load(std::memory_order_acquire) == 0)
            hdr()->capacity.store(mapped_ - mailbox_payload_offset, std::memory_order_release);
    }

    mailbox_header* hdr() const noexcept { return reinterpret_cast<mailbox_header*>(base_); }
    std::byte* payload() const noexcept { return base_ + mailbox_payload_offset; }
    std::size_t capacity() const noexcept { return mapped_ - mailbox_payload_offset; }

    /// Writer: makes room for `n` payload bytes (grows the memfd and both mappings).
    void reserve(std::size_t n) {
        if (n <= capacity()) return;
        std::size_t want = mailbox_payload_offset + std::max(n, capacity() * 2);
        if (::ftruncate(fd_, static_cast<off_t>(want)) < 0)
            throw std::system_error(errno, std::generic_category(),
                                    fmt::format("offload: cannot grow a worker mailbox to {} bytes", want));
        remap(want);
        hdr()->capacity.store(want - mailbox_payload_offset, std::memory_order_release);
    }

    std::span<std::byte> grow(std::size_t bytes) override {
        reserve(bytes);
        return {payload(), capacity()};
    }

    /// Reader: after consuming a message larger than `keep` bytes, gives its
    /// pages back to the kernel (the memfd would otherwise hold them forever).
    void release_payload(std::size_t size, std::size_t keep) noexcept {
        if (size <= keep) return;
        std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
        std::size_t from = (mailbox_payload_offset + keep + page - 1) / page * page;
        std::size_t to = std::min(mapped_, mailbox_payload_offset + size);
        if (to > from) ::madvise(base_ + from, to - from, MADV_REMOVE);
    }

    /// Reader: follows a capacity the writer grew.
    void refresh() {
        std::size_t cap = hdr()->capacity.load(std::memory_order_acquire);
        if (cap > capacity()) remap(cap + mailbox_payload_offset);
    }

private:
    void map(std::size_t bytes) {
        void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
        if (p == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "offload: mmap worker mailbox");
        base_ = static_cast<std::byte*>(p);
        mapped_ = bytes;
    }
    void remap(std::size_t bytes) {
        void* p = ::mremap(base_, mapped_, bytes, MREMAP_MAYMOVE);
        if (p == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "offload: mremap worker mailbox");
        base_ = static_cast<std::byte*>(p);
        mapped_ = bytes;
    }
    void unmap() noexcept {
        if (base_) ::munmap(base_, mapped_);
        base_ = nullptr;
        mapped_ = 0;
    }

    int fd_ = -1;
    std::byte* base_ = nullptr;
    std::size_t mapped_ = 0;
};

// Process-shared futex (no _PRIVATE flag: the word lives in a shared mapping).
inline void shared_futex_wait(std::atomic<std::uint32_t>& w, std::uint32_t expected, const timespec* timeout) noexcept {
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&w), FUTEX_WAIT, expected, timeout, nullptr, 0);
}
inline void shared_futex_wake(std::atomic<std::uint32_t>& w) noexcept {
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&w), FUTEX_WAKE, 1, nullptr, nullptr, 0);
}

} // namespace offload::detail
