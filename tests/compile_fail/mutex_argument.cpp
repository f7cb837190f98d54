// Must not compile: an argument holding a std::mutex is not serializable.
#include <offload/process_pool.hpp>

#include <mutex>

struct guarded {
    int value = 0;
    std::mutex m;
};

int read_value(const guarded& g) { return g.value; }

offload::task<int> f(offload::process_pool& pool) {
    co_return co_await offload::run_in_executor(pool, &read_value, guarded{});
}
