// Process-wide logging: spdlog with one stderr sink. Call init_logging once from main.
#pragma once

#include <spdlog/spdlog.h>

#include <string_view>

namespace warren::common {

// level: trace, debug, info, warn, error, off. Returns false for an unknown level name.
bool init_logging(std::string_view level);

}  // namespace warren::common
