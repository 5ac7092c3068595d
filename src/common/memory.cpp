#include "common/memory.hpp"

#include <malloc.h>

#include <cstddef>

// AddressSanitizer (clang's __has_feature, GCC's __SANITIZE_ADDRESS__).
#if defined(__SANITIZE_ADDRESS__)
#define WARREN_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WARREN_ASAN 1
#endif
#endif
#ifndef WARREN_ASAN
#define WARREN_ASAN 0
#endif
#if WARREN_ASAN
#include <sanitizer/allocator_interface.h>
#endif

// jemalloc's control interface, declared weak: the broker links jemalloc (WARREN_JEMALLOC in
// CMakeLists.txt), the unit tests and tools that share this library do not, and there the symbol
// is null. Declared here rather than through <jemalloc/jemalloc.h> so that this library builds
// without jemalloc's headers.
extern "C" int mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen)
    __attribute__((weak));

namespace warren {

bool using_jemalloc() {
  return mallctl != nullptr;
}

void release_free_memory() {
#if WARREN_ASAN
  // ASan's allocator keeps freed chunks resident (its quarantine and size-class regions) where
  // malloc_trim cannot reach them (test_alarms relies on RSS following the heap).
  __sanitizer_purge_allocator();
#else
  if (mallctl) {
    // "arena.<MALLCTL_ARENAS_ALL>.purge": every arena's dirty and muzzy pages to the kernel. The
    // threads' caches keep a little, as glibc's tcache does.
    mallctl("arena.4096.purge", nullptr, nullptr, nullptr, 0);
    return;
  }
  ::malloc_trim(0);
#endif
}

}  // namespace warren
