// Must not compile: a lambda with captures cannot cross the process boundary.
#include <offload/process_pool.hpp>

offload::task<int> f(offload::process_pool& pool) {
    int base = 40;
    co_return co_await offload::run_in_executor(
        pool, [base](int x) { return base + x; }, 2);
}
