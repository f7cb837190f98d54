// run_in_executor with something that is not an executor must not compile,
// and must say what an executor is.
#include <offload/run.hpp>
#include <offload/to_thread.hpp>

#include <string>

offload::task<int> use(std::string& not_an_executor) {
    co_return co_await offload::run_in_executor(not_an_executor, [] { return 1; });
}

int main() {
    std::string s;
    return offload::run(use(s));
}
