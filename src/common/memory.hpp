// Handing memory the allocator keeps on its free lists back to the kernel.
#pragma once

namespace warren {

// Without it, a drained queue's memory would stay resident and the memory alarm would not
// clear. Under jemalloc (the broker's allocator in normal builds, docs/architecture.md) every
// arena is purged; under glibc's malloc (unit tests, tools) malloc_trim; under AddressSanitizer
// its allocator is asked directly.
void release_free_memory();

// Whether jemalloc is this process's allocator (the broker's log says which).
bool using_jemalloc();

}  // namespace warren
