// Chunking and quiet logging for the fuzz targets.
#include "fuzz_support.hpp"

#include <algorithm>

#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

namespace warren::fuzz {

std::vector<std::string_view> split(std::string_view in, uint8_t seed) {
  std::vector<std::string_view> out;
  uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t(seed) + 1);  // xorshift64*, never zero
  while (!in.empty()) {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    uint64_t r = x * 0x2545f4914f6cdd1dull;
    size_t len = (r & 7) == 0 ? 1 + (r >> 8) % 4096 : 1 + (r >> 8) % 16;
    len = std::min(len, in.size());
    out.push_back(in.substr(0, len));
    in.remove_prefix(len);
  }
  return out;
}

void quiet_logs() {
  static bool done = false;
  if (done) return;
  done = true;
  auto logger =
      std::make_shared<spdlog::logger>("fuzz", std::make_shared<spdlog::sinks::null_sink_mt>());
  logger->set_level(spdlog::level::trace);
  spdlog::set_default_logger(logger);
}

}  // namespace warren::fuzz
