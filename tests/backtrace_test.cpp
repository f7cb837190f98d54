// Tests of the backtrace capture and symbolization the stall watchdog uses:
// a captured stack names the function it was taken in (the test executable
// is linked with -rdynamic so dladdr sees its functions), and demangling.
#include <offload/detail/base/backtrace.hpp>

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace offload::detail;

// Exported and never inlined, so its frame shows up under its own name.
[[gnu::noinline]] void backtrace_test_capture_here(raw_backtrace& bt) {
    capture_backtrace(bt);
    asm volatile("" ::: "memory"); // not a tail call: keep this frame
}

TEST_CASE("backtrace: a captured stack names the function it was taken in", "[backtrace]") {
    warm_backtrace();
    raw_backtrace bt;
    backtrace_test_capture_here(bt);
    REQUIRE(bt.size > 1);
    const std::vector<std::string> frames = symbolize(bt);
    REQUIRE(frames.size() == static_cast<std::size_t>(bt.size));
    bool named = false;
    for (const auto& f : frames) {
        INFO(f);
        named = named || f.find("backtrace_test_capture_here(offload::detail::raw_backtrace&)") != std::string::npos;
    }
    REQUIRE(named);
}

TEST_CASE("backtrace: symbolize skips the first frames it is told to", "[backtrace]") {
    raw_backtrace bt;
    backtrace_test_capture_here(bt);
    REQUIRE(symbolize(bt, 1).size() == static_cast<std::size_t>(bt.size - 1));
    REQUIRE(symbolize(bt, bt.size + 5).empty());
}

TEST_CASE("backtrace: demangle turns a C++ symbol into its signature and leaves other names alone", "[backtrace]") {
    REQUIRE(demangle("_Z3fooi") == "foo(int)");
    REQUIRE(demangle("main") == "main");
    REQUIRE(demangle(nullptr).empty());
}
