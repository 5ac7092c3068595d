// What the fuzz targets share: a check that holds in every build type, the chunking of an input
// into the pieces a socket might deliver (derived from the fuzz data, so the fuzzer explores
// chunkings too), and logging that runs every log statement but prints nothing.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

// Checked in every build type (RelWithDebInfo defines NDEBUG, which would silence assert).
#define FUZZ_CHECK(x)       \
  do {                      \
    if (!(x)) std::abort(); \
  } while (0)

namespace warren::fuzz {

// Cuts `in` into consecutive non-empty pieces. `seed` (usually the first input byte) picks the
// pattern: a pseudo-random sequence of lengths, mostly short (1 to 16 bytes) with some long ones,
// so splits land inside headers, length fields and multi-byte characters alike.
std::vector<std::string_view> split(std::string_view in, uint8_t seed);

// Sends every logger's output to a null sink at level trace: log statements still run (and
// format their arguments, which may be hostile bytes) without flooding the fuzzer's output.
void quiet_logs();

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace warren::fuzz
