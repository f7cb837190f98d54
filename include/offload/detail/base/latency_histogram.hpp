// offload/detail/base/latency_histogram.hpp — a fixed-size, lock-free log-linear
// histogram of nanosecond durations, cheap enough to stay on in production:
// one relaxed fetch_add and one relaxed load (plus a CAS only when a new
// maximum is seen) per record, no locks, no allocation. Executors use it for
// queue-wait and run-time percentiles in executor_stats. The bucket layout is
// HdrHistogram's with 3 significant bits: relative error at most 12.5%.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>

namespace offload::detail {

/// A histogram of durations in nanoseconds, from 0 ns to about an hour.
///
/// Layout: values 0..7 have a bucket each (exact). A larger value v with
/// m = floor(log2 v) falls in one of 8 equal sub-buckets of [2^m, 2^(m+1)),
/// each 2^(m-3) wide. A bucket's width is thus at most 1/8 of its lower bound,
/// so the upper bound of the bucket holding v overstates v by at most 12.5%
/// (and never understates it). Magnitudes go up to m = 41, i.e. values below
/// 2^42 ns (about 73 minutes); larger values clamp into the top bucket, whose
/// upper bound is taken to be the exact maximum.
///
/// Thread safety: record() may be called from any number of threads at once;
/// snapshot(), count(), max() and merge_into() may run concurrently with it
/// and see each counter at some recent value (not one atomic cut).
class latency_histogram {
public:
    /// Linear sub-buckets per power of two (3 significant bits).
    static constexpr unsigned sub_bucket_bits = 3;
    static constexpr std::size_t sub_buckets = std::size_t{1} << sub_bucket_bits;
    /// The highest magnitude with its own buckets: values up to 2^42 - 1 ns.
    static constexpr unsigned max_magnitude = 41;
    /// Number of buckets: 8 exact ones, then 8 per magnitude 3..41.
    static constexpr std::size_t bucket_count = sub_buckets + (max_magnitude - sub_bucket_bits + 1) * sub_buckets;
    /// The largest value that is not clamped.
    static constexpr std::uint64_t max_trackable = (std::uint64_t{1} << (max_magnitude + 1)) - 1;

    using counts = std::array<std::uint64_t, bucket_count>;

    /// The bucket a value falls in (values above max_trackable clamp to the last).
    static constexpr std::size_t bucket_of(std::uint64_t ns) noexcept {
        if (ns > max_trackable) return bucket_count - 1;
        if (ns < sub_buckets) return static_cast<std::size_t>(ns);
        unsigned m = static_cast<unsigned>(std::bit_width(ns)) - 1;  // >= 3
        unsigned shift = m - sub_bucket_bits;
        std::size_t sub = static_cast<std::size_t>(ns >> shift) & (sub_buckets - 1);
        return sub_buckets + shift * sub_buckets + sub;
    }
    /// The smallest value in bucket i.
    static constexpr std::uint64_t lower_bound_of(std::size_t i) noexcept {
        if (i < sub_buckets) return i;
        std::size_t shift = (i - sub_buckets) / sub_buckets;
        std::uint64_t sub = (i - sub_buckets) % sub_buckets;
        return (sub_buckets + sub) << shift;
    }
    /// The largest value in bucket i (before clamping).
    static constexpr std::uint64_t upper_bound_of(std::size_t i) noexcept {
        if (i + 1 >= bucket_count) return max_trackable;
        return lower_bound_of(i + 1) - 1;
    }

    /// A plain (non-atomic) copy of the counters, to query at leisure.
    class snapshot {
    public:
        snapshot() = default;
        snapshot(const counts& c, std::uint64_t max) noexcept : counts_(c), max_(max) {
            for (auto n : counts_) count_ += n;
        }

        /// Number of recorded values.
        std::uint64_t count() const noexcept { return count_; }
        /// The largest recorded value, exact (0 when empty).
        std::uint64_t max() const noexcept { return max_; }
        /// Per-bucket counts, indexed as latency_histogram::bucket_of.
        const counts& buckets() const noexcept { return counts_; }

        /// The p-th percentile (p in [0, 100]): the upper bound of the bucket
        /// holding the ceil(p% * count)-th smallest value, capped by max().
        /// For a true value v the result r satisfies v <= r <= 1.125 * v
        /// (exact below 8 ns; for clamped values, r = max()). 0 when empty.
        std::uint64_t percentile(double p) const noexcept {
            if (count_ == 0) return 0;
            if (!(p > 0)) p = 0;  // also maps NaN to 0
            if (p > 100) p = 100;
            auto rank = static_cast<std::uint64_t>(std::ceil(p / 100.0 * static_cast<double>(count_)));
            rank = std::clamp<std::uint64_t>(rank, 1, count_);
            std::uint64_t seen = 0;
            for (std::size_t i = 0; i < bucket_count; ++i) {
                seen += counts_[i];
                if (seen >= rank) {
                    if (i + 1 == bucket_count) return max_;  // open-ended top bucket
                    return std::min(upper_bound_of(i), max_);
                }
            }
            return max_;  // unreachable: counts sum to count_
        }

        /// Adds another snapshot's values to this one (e.g. across workers).
        void merge(const snapshot& other) noexcept {
            for (std::size_t i = 0; i < bucket_count; ++i) counts_[i] += other.counts_[i];
            count_ += other.count_;
            max_ = std::max(max_, other.max_);
        }

    private:
        counts counts_{};
        std::uint64_t count_ = 0;
        std::uint64_t max_ = 0;
    };

    latency_histogram() noexcept = default;
    latency_histogram(const latency_histogram&) = delete;
    latency_histogram& operator=(const latency_histogram&) = delete;

    /// Records one duration. Lock-free and allocation-free; any thread.
    void record(std::uint64_t ns) noexcept {
        // Relaxed: each counter is an independent statistic; readers need no
        // ordering with the work being measured, only eventual visibility.
        buckets_[bucket_of(ns)].fetch_add(1, std::memory_order_relaxed);
        std::uint64_t cur = max_.load(std::memory_order_relaxed);
        // CAS-max: retried only while ns is still larger than what another
        // thread stored; usually no CAS at all once the maximum has settled.
        while (ns > cur && !max_.compare_exchange_weak(cur, ns, std::memory_order_relaxed)) {
        }
    }

    /// Adds the current counts into `out` (indexed as bucket_of).
    void merge_into(counts& out) const noexcept {
        for (std::size_t i = 0; i < bucket_count; ++i) out[i] += buckets_[i].load(std::memory_order_relaxed);
    }

    /// A copy of the current counters and maximum.
    snapshot take_snapshot() const noexcept {
        counts c{};
        merge_into(c);
        return snapshot(c, max_.load(std::memory_order_relaxed));
    }

    /// Number of recorded values (sums the buckets; O(bucket_count)).
    std::uint64_t count() const noexcept {
        std::uint64_t n = 0;
        for (const auto& b : buckets_) n += b.load(std::memory_order_relaxed);
        return n;
    }
    /// The largest recorded value, exact (0 when empty).
    std::uint64_t max() const noexcept { return max_.load(std::memory_order_relaxed); }

    /// Forgets every value (not atomic with concurrent record() calls).
    void reset() noexcept {
        for (auto& b : buckets_) b.store(0, std::memory_order_relaxed);
        max_.store(0, std::memory_order_relaxed);
    }

private:
    std::array<std::atomic<std::uint64_t>, bucket_count> buckets_{};
    std::atomic<std::uint64_t> max_{0};
};

}  // namespace offload::detail
