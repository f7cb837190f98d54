// Catch2 v2 main(), compiled once and linked into every test executable.
// It calls process_pool::worker_main first, as every program using the spawn
// start method must: a spawned worker re-executes this binary.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <offload/process_pool.hpp>

int main(int argc, char** argv) {
    offload::process_pool::worker_main(argc, argv);
    return Catch::Session().run(argc, argv);
}
