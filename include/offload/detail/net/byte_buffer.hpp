// offload/detail/net/byte_buffer.hpp — the read and write buffers of a stream:
// bytes appended at the back, taken from the front. Taking moves a read
// offset; the storage is compacted only when the dead front outweighs the
// live bytes, so taking is O(taken) amortized and appending reuses capacity.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>

namespace offload::detail {

class byte_buffer {
public:
    std::size_t size() const noexcept { return data_.size() - head_; }
    bool empty() const noexcept { return size() == 0; }
    /// The live bytes.
    std::string_view view() const noexcept { return std::string_view(data_).substr(head_); }
    const char* data() const noexcept { return data_.data() + head_; }

    void append(std::string_view s) {
        compact_if_worth_it();
        data_.append(s);
    }
    /// Room for `n` more bytes at the back: returns where to write them; call
    /// commit(k) with how many were written.
    char* prepare(std::size_t n) {
        compact_if_worth_it();
        tail_ = data_.size();
        data_.resize(tail_ + n);
        return data_.data() + tail_;
    }
    void commit(std::size_t k) noexcept { data_.resize(tail_ + k); }

    /// Removes and returns the first min(n, size()) bytes.
    std::string take(std::size_t n) {
        n = std::min(n, size());
        std::string out(data_, head_, n);
        drop(n);
        return out;
    }
    /// Removes the first min(n, size()) bytes.
    void drop(std::size_t n) noexcept {
        head_ += std::min(n, size());
        if (head_ == data_.size()) {
            data_.clear();
            head_ = 0;
        }
    }
    void clear() noexcept {
        data_.clear();
        head_ = 0;
    }

private:
    void compact_if_worth_it() {
        if (head_ > 0 && head_ >= size()) {
            data_.erase(0, head_);
            head_ = 0;
        }
    }

    std::string data_;
    std::size_t head_ = 0;
    std::size_t tail_ = 0;
};

} // namespace offload::detail
