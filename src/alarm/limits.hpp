// The values the alarm settings accept: sizes in RabbitMQ's units and watermark fractions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace warren::alarm {

// A byte count: digits, optionally followed by a unit, as rabbitmq.conf writes them.
//   (none)                      bytes
//   k, K, kiB, KiB, kib, KIB    1024          kB, KB, kb     1000
//   M, MiB, ...                 1024^2        MB, mb, ...    1000^2
//   G, GiB, ...                 1024^3        GB, gb, ...    1000^3
//   T, TiB, ...                 1024^4        TB, tb, ...    1000^4   (T is Warren's addition)
// Spaces around the number and before the unit are ignored. nullopt for anything else (no
// fractions, no sign, no overflow).
std::optional<uint64_t> parse_size(std::string_view text);

// A watermark fraction: a decimal number from 0 to 1 inclusive. nullopt otherwise.
std::optional<double> parse_fraction(std::string_view text);

// "52.3 MiB (54840934 bytes)": for log lines.
std::string describe_size(uint64_t bytes);

}  // namespace warren::alarm
