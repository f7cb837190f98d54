// Tests for offload/detail/process/fn_ref.hpp: (module, offset) round-trips for
// functions of the test program and of a shared library loaded at start, and
// the errors for an address outside every module and for a missing module.
#include <offload/detail/process/fn_ref.hpp>

#include <offload/errors.hpp>

#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <dlfcn.h>
#include <limits>
#include <link.h>
#include <memory>
#include <stdexcept>
#include <string>

using offload::detail::fn_ref;
using offload::detail::make_fn_ref;
using offload::detail::resolve_fn_ref;

namespace {

int add(int a, int b) { return a + b; }

template <class T>
T twice(T v) {
    return v + v;
}

int global_data = 5;

struct module_info {
    std::uint32_t count = 0;
    std::uint32_t want = 0;
    std::uintptr_t base = 0;
    std::string name;
};

/// How many modules dl_iterate_phdr reports, and the load base and name of module `want`.
module_info modules(std::uint32_t want = 0) {
    module_info m;
    m.want = want;
    ::dl_iterate_phdr(
        [](dl_phdr_info* info, std::size_t, void* data) -> int {
            auto* m = static_cast<module_info*>(data);
            if (m->count++ == m->want) {
                m->base = info->dlpi_addr;
                m->name = info->dlpi_name ? info->dlpi_name : "";
            }
            return 0;
        },
        &m);
    return m;
}

/// The address of `symbol` inside the already loaded library `lib` (not an
/// interceptor or PLT stub in the executable).
void* symbol_in(const char* lib, const char* symbol) {
    void* h = ::dlopen(lib, RTLD_NOW | RTLD_NOLOAD);
    if (!h) return nullptr;
    void* p = ::dlsym(h, symbol);
    ::dlclose(h);
    return p;
}

template <class F>
const void* as_ptr(F* f) {
    return reinterpret_cast<const void*>(f);
}

} // namespace

TEST_CASE("fn_ref: a function of the test program round-trips", "[fn_ref]") {
    fn_ref r = make_fn_ref(as_ptr(&add));
    REQUIRE(r.module == 0); // dl_iterate_phdr lists the main program first
    REQUIRE(r.offset == reinterpret_cast<std::uintptr_t>(&add) - modules(0).base);
    const void* back = resolve_fn_ref(r);
    REQUIRE(back == as_ptr(&add));
    auto fn = reinterpret_cast<int (*)(int, int)>(const_cast<void*>(back));
    REQUIRE(fn(2, 3) == 5);
}

TEST_CASE("fn_ref: template instances, lambdas and data of the program round-trip", "[fn_ref]") {
    int (*lambda)(int) = [](int x) { return x * 3; };
    for (const void* p :
         {as_ptr(&twice<int>), as_ptr(&twice<long>), as_ptr(lambda), static_cast<const void*>(&global_data)}) {
        fn_ref r = make_fn_ref(p);
        REQUIRE(r.module == 0);
        REQUIRE(resolve_fn_ref(r) == p);
    }
    auto fn = reinterpret_cast<int (*)(int)>(const_cast<void*>(resolve_fn_ref(make_fn_ref(as_ptr(lambda)))));
    REQUIRE(fn(4) == 12);
}

TEST_CASE("fn_ref: a function of a shared library loaded at start round-trips", "[fn_ref]") {
    // strlen as libc holds it (with ASan, ::strlen in the program would be the interceptor).
    void* p = symbol_in("libc.so.6", "strlen");
    REQUIRE(p != nullptr);
    fn_ref r = make_fn_ref(p);
    CAPTURE(r.module, r.offset);
    REQUIRE(r.module != 0);
    auto m = modules(r.module);
    CAPTURE(m.name);
    REQUIRE(m.name.find("libc.so") != std::string::npos);
    REQUIRE(r.offset == reinterpret_cast<std::uintptr_t>(p) - m.base);
    const void* back = resolve_fn_ref(r);
    REQUIRE(back == p);
    auto fn = reinterpret_cast<std::size_t (*)(const char*)>(const_cast<void*>(back));
    REQUIRE(fn("offload") == 7);

    // The program's own view of strlen (real, or a sanitizer's interceptor) round-trips too.
    auto* own = &::strlen;
    REQUIRE(resolve_fn_ref(make_fn_ref(as_ptr(own))) == as_ptr(own));
}

TEST_CASE("fn_ref: functions of different modules get different module numbers", "[fn_ref]") {
    void* in_libstdcxx = symbol_in("libstdc++.so.6", "_ZSt9terminatev"); // std::terminate
    void* in_libc = symbol_in("libc.so.6", "strlen");
    REQUIRE(in_libstdcxx != nullptr);
    REQUIRE(in_libc != nullptr);
    fn_ref a = make_fn_ref(in_libstdcxx), b = make_fn_ref(in_libc), c = make_fn_ref(as_ptr(&add));
    REQUIRE(a.module != b.module);
    REQUIRE(a.module != c.module);
    REQUIRE(b.module != c.module);
    REQUIRE(a.module < modules().count);
    REQUIRE(b.module < modules().count);
    REQUIRE(resolve_fn_ref(a) == in_libstdcxx);
}

TEST_CASE("fn_ref: an address outside every module throws invalid_argument", "[fn_ref]") {
    auto heap = std::make_unique<char[]>(1 << 20); // big: its own mapping, far from any module
    auto small_heap = std::make_unique<int>(1);
    int on_stack = 0;
    REQUIRE_THROWS_AS(make_fn_ref(heap.get()), std::invalid_argument);
    REQUIRE_THROWS_AS(make_fn_ref(small_heap.get()), std::invalid_argument);
    REQUIRE_THROWS_AS(make_fn_ref(&on_stack), std::invalid_argument);
    REQUIRE_THROWS_AS(make_fn_ref(nullptr), std::invalid_argument);
    REQUIRE_THROWS_WITH(make_fn_ref(heap.get()), Catch::Contains("not in a loaded module"));
}

TEST_CASE("fn_ref: a module number that does not exist throws serialization_error", "[fn_ref]") {
    const std::uint32_t count = modules().count;
    REQUIRE(count >= 2); // the program and at least libc
    // The last module exists (its base plus offset 0 is returned as is).
    REQUIRE(resolve_fn_ref({count - 1, 0}) == reinterpret_cast<const void*>(modules(count - 1).base));
    REQUIRE_THROWS_AS(resolve_fn_ref({count, 0}), offload::serialization_error);
    REQUIRE_THROWS_AS(resolve_fn_ref({count + 7, 16}), offload::serialization_error);
    REQUIRE_THROWS_AS(resolve_fn_ref({std::numeric_limits<std::uint32_t>::max(), 0}), offload::serialization_error);
    REQUIRE_THROWS_WITH(resolve_fn_ref({count, 0}), Catch::Contains("module #" + std::to_string(count)));
}
