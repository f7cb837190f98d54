// tests/support/mpi_handshake.cpp — a program whose handshake must fail on
// rank 0 with a clear error, never hang (built twice, as mpi_handshake_a and
// mpi_handshake_b, which differ by OFFLOAD_HANDSHAKE_VARIANT: two builds).
//   forgot:   only rank 0 calls mpi_pool::worker_main; the others run main
//             and construct a pool themselves.
//   mismatch: every rank calls worker_main, but ranks run different builds
//             (all but rank 0, or some of them); each worker rank must leave
//             worker_main by itself, the job ending without an abort.
//   silent:   the other ranks start MPI (as a program that forgot worker_main
//             and does long work first would) but never answer. (A rank
//             that never starts MPI at all stalls MPI_Init on every rank:
//             Open MPI's MPI_Init waits for all, before mpi_pool exists.)
// Rank 0 prints "handshake check passed: <error>" when the pool refused to start.
#include <offload/mpi_pool.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>
#include <thread>

int main(int argc, char** argv) {
    std::string mode = argc > 1 ? argv[1] : "";
    const char* env = std::getenv("OMPI_COMM_WORLD_RANK");
    int rank = env ? std::atoi(env) : 0;
    // A worker rank that leaves worker_main by itself says so (one that Open
    // MPI kills after the job failed does not). A rank that cannot serve exits
    // with status 1, upon which mpiexec kills the ranks still running: it waits
    // a second first, so that the others have said it.
    if (mode == "mismatch" && rank != 0)
        std::atexit([] {
            std::fprintf(stderr, "rank %s left worker_main\n", std::getenv("OMPI_COMM_WORLD_RANK"));
            if (std::string_view(OFFLOAD_HANDSHAKE_VARIANT) == "b")
                std::this_thread::sleep_for(std::chrono::seconds(1));
        });
    if (mode == "mismatch" || rank == 0) offload::mpi_pool::worker_main(argc, argv);
    if (mode == "silent" && rank != 0) {
        offload::detail::mpi_runtime::get(); // MPI_Init, then no answer
        std::this_thread::sleep_for(std::chrono::seconds(60)); // rank 0's job abort ends this
        return 0;
    }
    try {
        offload::mpi_pool pool({.local_workers = 1, .handshake_timeout = std::chrono::seconds(3)});
        std::printf("variant %s: the handshake unexpectedly succeeded\n", OFFLOAD_HANDSHAKE_VARIANT);
        return 1;
    } catch (const std::exception& e) {
        if (rank == 0)
            std::printf("handshake check passed: %s\n", e.what());
        else
            std::fprintf(stderr, "rank %d (variant %s): %s\n", rank, OFFLOAD_HANDSHAKE_VARIANT, e.what());
        std::fflush(stdout);
    }
    return 0;
}
