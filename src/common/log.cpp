// Logging set-up: a colour-free stderr logger with thread ids, so worker activity can be told
// apart.
#include "common/log.hpp"

#include <spdlog/sinks/stdout_sinks.h>

namespace warren::common {

bool init_logging(std::string_view level) {
  auto lvl = spdlog::level::from_str(std::string(level));
  if (lvl == spdlog::level::off && level != "off") return false;
  auto logger = spdlog::stderr_logger_mt("warren");
  logger->set_pattern("%Y-%m-%d %H:%M:%S.%e [%l] [t%t] %v");
  logger->set_level(lvl);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
  return true;
}

}  // namespace warren::common
