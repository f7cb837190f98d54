// tests/support/counted.hpp — a type that counts its constructions and
// destructions, for lifetime checks: "was every object in the coroutine frame
// destroyed, and exactly once?". Loop-thread only (plain ints, not atomics).
// Call counted::reset() at the start of a test; then check live() == 0 and
// double_destroyed() == 0 where the objects must be gone.
#pragma once

namespace offload::test {

struct counted {
    counted() noexcept { ++constructed_; }
    counted(const counted&) noexcept { ++constructed_; }
    counted(counted&&) noexcept { ++constructed_; }
    counted& operator=(const counted&) noexcept = default;
    counted& operator=(counted&&) noexcept = default;
    ~counted() {
        if (magic_ != alive) ++double_destroyed_; // a second destructor call on this object
        magic_ = dead;
        ++destroyed_;
    }

    static void reset() noexcept { constructed_ = destroyed_ = double_destroyed_ = 0; }
    /// Objects constructed (any constructor) since reset().
    static int constructed() noexcept { return constructed_; }
    /// Destructor calls since reset().
    static int destroyed() noexcept { return destroyed_; }
    /// Objects alive now: constructed() - destroyed().
    static int live() noexcept { return constructed_ - destroyed_; }
    /// Destructor calls on an object that was already destroyed (best effort:
    /// reads the dead object's marker; ASan reports such a use-after-free too).
    static int double_destroyed() noexcept { return double_destroyed_; }

private:
    static constexpr unsigned alive = 0xC0FFEEu;
    static constexpr unsigned dead = 0xDEADu;
    unsigned magic_ = alive;

    static inline int constructed_ = 0;
    static inline int destroyed_ = 0;
    static inline int double_destroyed_ = 0;
};

} // namespace offload::test
