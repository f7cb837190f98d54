#include <offload/map.hpp>

#include <offload/run.hpp>
#include <offload/task_handle.hpp>

#include "user_executor.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

using namespace offload;

TEST_CASE("map: results come back in input order for every chunk size", "[map]") {
    thread_pool pool({.workers = 2, .max_queued = 0, .name = "map"});
    std::vector<int> in(1000);
    std::iota(in.begin(), in.end(), 0);
    for (std::size_t chunk : {1u, 7u, 100u, 1000u, 5000u}) {
        auto out = run([](thread_pool& p, std::vector<int> in, std::size_t chunk) -> task<std::vector<long>> {
            co_return co_await offload::map(
                p, [](const int& x) { return long(x) * x; }, in, chunk);
        }(pool, in, chunk));
        REQUIRE(out.size() == in.size());
        for (std::size_t i = 0; i < in.size(); ++i) CHECK(out[i] == long(in[i]) * in[i]);
    }
}

TEST_CASE("map: one call per chunk", "[map]") {
    thread_pool pool({.workers = 2, .max_queued = 0, .name = "map"});
    std::vector<std::string> words{"a", "bb", "ccc", "dddd", "eeeee"};
    auto lens = run([](thread_pool& p, std::vector<std::string> w) -> task<std::vector<std::size_t>> {
        co_return co_await offload::map(
            p, [](const std::string& s) { return s.size(); }, w, 2);
    }(pool, words));
    CHECK(lens == std::vector<std::size_t>{1, 2, 3, 4, 5});
    CHECK(pool.stats().completed == 3);
}

TEST_CASE("map: an empty range gives an empty result", "[map]") {
    thread_pool pool({.workers = 1, .max_queued = 0, .name = "map"});
    auto out = run([](thread_pool& p) -> task<std::vector<int>> {
        co_return co_await offload::map(
            p, [](const int& x) { return x; }, std::vector<int>{}, 4);
    }(pool));
    CHECK(out.empty());
}

TEST_CASE("map: a chunk size of zero is a clear error", "[map]") {
    thread_pool pool({.workers = 1, .max_queued = 0, .name = "map"});
    std::vector<int> in{1, 2};
    REQUIRE_THROWS_AS(offload::map(
                          pool, [](const int& x) { return x; }, in, 0),
                      std::invalid_argument);
}

TEST_CASE("map: a failing element fails the map with its exception type", "[map]") {
    thread_pool pool({.workers = 2, .max_queued = 0, .name = "map"});
    std::vector<int> in(100);
    std::iota(in.begin(), in.end(), 0);
    run([](thread_pool& p, std::vector<int> in) -> task<> {
        REQUIRE_THROWS_AS(co_await offload::map(
                              p,
                              [](const int& x) {
                                  if (x == 42) throw std::out_of_range("42");
                                  return x;
                              },
                              in, 10),
                          std::out_of_range);
    }(pool, in));
}

TEST_CASE("map: runs over an executor of the user's, in chunks, results in input order", "[map][executor]") {
    offload_test::user_executor ex;
    std::vector<int> in(1000);
    std::iota(in.begin(), in.end(), 0);
    auto out =
        offload::run([](offload_test::user_executor& ex, std::vector<int> in) -> offload::task<std::vector<long>> {
            co_return co_await offload::map(
                ex, [](const int& x) { return long(x) * x; }, in, 64);
        }(ex, in));
    REQUIRE(out.size() == in.size());
    for (std::size_t i = 0; i < in.size(); ++i) REQUIRE(out[i] == long(in[i]) * in[i]);
    CHECK(ex.stats().submitted == 16); // ceil(1000 / 64) calls
}
