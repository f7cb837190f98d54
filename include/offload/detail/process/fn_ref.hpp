// offload/detail/process/fn_ref.hpp — names a function so that another process of
// the same program can find it: (module index, offset from the module's load
// base). Under fork and forkserver the layout is identical; under spawn the
// worker is a fresh exec of /proc/self/exe with its own ASLR bases, so a raw
// address would be wrong there, but module + offset is right in both. Works
// for the main executable and for shared libraries loaded at start (the
// worker loads the same ones, in the same order).
#pragma once

#include <offload/detail/base/config.hpp>

#include <offload/errors.hpp>

#if OFFLOAD_DEFINE_BODIES
#include <fmt/core.h> // messages of the function bodies below
#endif

#include <cstdint>
#include <cstring>
#include <dlfcn.h>
#include <link.h>
#include <string>

namespace offload::detail {

struct fn_ref {
    std::uint32_t module = 0; // index in dl_iterate_phdr order
    std::uint64_t offset = 0; // address - module load base
};

namespace fn_ref_impl {
struct lookup {
    std::uintptr_t addr = 0;
    std::uint32_t index = 0;
    bool found = false;
    fn_ref ref{};
};
struct resolve {
    std::uint32_t want = 0;
    std::uint32_t index = 0;
    std::uintptr_t base = 0;
    bool found = false;
};
} // namespace fn_ref_impl

/// The module and offset of a code address in this process.
OFFLOAD_DECL fn_ref make_fn_ref(const void* fn);

/// The address in this process of a function named by make_fn_ref.
OFFLOAD_DECL const void* resolve_fn_ref(fn_ref r);

#if OFFLOAD_DEFINE_BODIES

OFFLOAD_DECL fn_ref make_fn_ref(const void* fn) {
    fn_ref_impl::lookup l;
    l.addr = reinterpret_cast<std::uintptr_t>(fn);
    ::dl_iterate_phdr(
        [](dl_phdr_info* info, std::size_t, void* data) -> int {
            auto* l = static_cast<fn_ref_impl::lookup*>(data);
            for (int i = 0; i < info->dlpi_phnum; ++i) {
                const auto& ph = info->dlpi_phdr[i];
                if (ph.p_type != PT_LOAD) continue;
                std::uintptr_t start = info->dlpi_addr + ph.p_vaddr;
                if (l->addr >= start && l->addr < start + ph.p_memsz) {
                    l->ref = {l->index, static_cast<std::uint64_t>(l->addr - info->dlpi_addr)};
                    l->found = true;
                    return 1;
                }
            }
            ++l->index;
            return 0;
        },
        &l);
    if (!l.found)
        throw std::invalid_argument("offload: the callable sent to a process pool is not in a loaded module "
                                    "(JIT code?); use a function of the program or of a shared library");
    return l.ref;
}

OFFLOAD_DECL const void* resolve_fn_ref(fn_ref r) {
    fn_ref_impl::resolve q;
    q.want = r.module;
    ::dl_iterate_phdr(
        [](dl_phdr_info* info, std::size_t, void* data) -> int {
            auto* q = static_cast<fn_ref_impl::resolve*>(data);
            if (q->index++ == q->want) {
                q->base = info->dlpi_addr;
                q->found = true;
                return 1;
            }
            return 0;
        },
        &q);
    if (!q.found)
        throw serialization_error(fmt::format("offload: worker cannot find module #{} of the parent; load shared "
                                              "libraries that hold pool callables at start, not with dlopen later",
                                              r.module));
    return reinterpret_cast<const void*>(q.base + r.offset);
}

#endif // OFFLOAD_DEFINE_BODIES

} // namespace offload::detail
