// seed004_batch_endpoint.cpp — seed 004, "batch processing endpoint": a request
// handler sends every item of a batch to a process pool at once and answers
// with how many succeeded and failed, without one bad item failing the batch.
// Replaces Python's `await asyncio.gather(*futures, return_exceptions=True)`.
#include <offload/offload.hpp>

#include <fmt/format.h>

#include <cstdint>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

using offload::task;

// Runs in a worker process: "decodes" an image (here: checks a header, then
// hashes the pixels, a stand-in for resizing or filtering).
std::uint32_t process_image(const std::string& image) {
    if (image.empty()) throw std::invalid_argument("empty image");
    if (image.rfind("IMG", 0) != 0) throw std::runtime_error("unknown image format");
    std::uint32_t h = 2166136261u; // FNV-1a
    for (unsigned char c : image) h = (h ^ c) * 16777619u;
    return h;
}

task<std::uint32_t> one_image(offload::process_pool& pool, std::string image) {
    co_return co_await offload::run_in_executor(pool, process_image, std::move(image));
}

struct batch_reply {
    std::size_t processed = 0;
    std::size_t failed = 0;
};

// The endpoint. gather(return_exceptions, ...) lets every call run to its end
// (none is cancelled when another fails) and gives one outcome per item, in
// input order: a value, or the exception that item ended with.
// (The tuple form is the same: `auto [a, b] = co_await gather(return_exceptions, x, y);`.)
task<batch_reply> batch_process(offload::process_pool& pool, std::vector<std::string> images) {
    std::vector<task<std::uint32_t>> calls;
    for (auto& img : images) calls.push_back(one_image(pool, img));
    auto outcomes = co_await offload::gather(offload::return_exceptions, std::move(calls));

    batch_reply reply;
    for (std::size_t i = 0; i < outcomes.size(); ++i) {
        if (outcomes[i].has_value()) {
            fmt::print("image {}: ok, hash {:08x}\n", i, outcomes[i].value());
            ++reply.processed;
        } else {
            try {
                std::rethrow_exception(outcomes[i].error()); // look at the exception, as Python's isinstance
            } catch (const std::exception& e) {
                fmt::print("image {}: failed: {}\n", i, e.what());
            }
            ++reply.failed;
        }
    }
    co_return reply;
}

task<int> amain(offload::process_pool& pool) {
    std::vector<std::string> images = {"IMG pixels-a", "", "IMG pixels-b", "GIF89a", "IMG pixels-c"};
    batch_reply reply = co_await batch_process(pool, images);
    fmt::print("reply: {{\"processed\": {}, \"failed\": {}}}\n", reply.processed, reply.failed);
    if (reply.processed != 3 || reply.failed != 2) {
        fmt::print("error: expected 3 processed and 2 failed\n");
        co_return 1;
    }
    co_return 0;
}

int main(int argc, char** argv) {
    offload::process_pool::worker_main(argc, argv);
    offload::process_pool pool({.workers = 2}); // created once at startup, reused by every request
    return offload::run(amain(pool));
}
