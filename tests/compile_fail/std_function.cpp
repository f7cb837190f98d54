// Must not compile: a std::function carries state that cannot cross the process boundary.
#include <offload/process_pool.hpp>

#include <functional>

int twice(int x) { return 2 * x; }

offload::task<int> f(offload::process_pool& pool) {
    std::function<int(int)> fn = twice;
    co_return co_await offload::run_in_executor(pool, fn, 2);
}
