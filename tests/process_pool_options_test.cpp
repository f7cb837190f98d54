// Tests for offload/process_pool_options.hpp: the defaults DESIGN.md fixes,
// and the names of the start methods.
#include <offload/process_pool_options.hpp>

#include <catch2/catch.hpp>

#include <string>
#include <string_view>

using namespace offload;

TEST_CASE("process_pool_options: defaults are forkserver, respawn, no limits, 1 MiB mailboxes", "[process_pool]") {
    process_pool_options o;
    CHECK(o.workers == 0); // max(1, available_cpus() - 1)
    CHECK(o.start == start_method::forkserver);
    CHECK(o.max_tasks_per_child == 0);
    CHECK(o.initializer == nullptr);
    CHECK_FALSE(o.task_timeout.has_value());
    CHECK(o.on_crash == crash_policy::respawn);
    CHECK_FALSE(o.limits.cpu_seconds.has_value());
    CHECK_FALSE(o.limits.address_space.has_value());
    CHECK(o.shared_memory_threshold == std::size_t(1) << 20);
    CHECK(o.nice == 0);
}

TEST_CASE("process_pool_options: to_string names each start method", "[process_pool]") {
    STATIC_REQUIRE(std::string_view(to_string(start_method::fork)) == "fork");
    CHECK(std::string(to_string(start_method::spawn)) == "spawn");
    CHECK(std::string(to_string(start_method::forkserver)) == "forkserver");
    CHECK(std::string(to_string(static_cast<start_method>(42))) == "?");
}
