// Must not compile: a raw pointer means nothing in another process.
#include <offload/process_pool.hpp>

struct holder {
    int* p = nullptr;
};

int deref(holder h) { return *h.p; }

offload::task<int> f(offload::process_pool& pool) {
    co_return co_await offload::run_in_executor(pool, &deref, holder{});
}
