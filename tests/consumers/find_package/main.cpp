// Smallest real use of offload: run one coroutine to completion.
#include <offload/offload.hpp>

offload::task<int> answer() { co_return 42; }

int main() { return offload::run(answer()) == 42 ? 0 : 1; }
