// Sizes in RabbitMQ's units and watermark fractions: what is accepted, and what is refused.
#include <gtest/gtest.h>

#include "alarm/limits.hpp"

namespace warren::alarm {
namespace {

TEST(ParseSize, PlainBytes) {
  EXPECT_EQ(parse_size("0"), 0u);
  EXPECT_EQ(parse_size("1234"), 1234u);
  EXPECT_EQ(parse_size("  50000000 "), 50'000'000u);
  EXPECT_EQ(parse_size("18446744073709551615"), UINT64_MAX);
}

TEST(ParseSize, BinaryUnits) {
  for (const char* u : {"k", "K", "kiB", "KiB", "kib", "KIB"})
    EXPECT_EQ(parse_size(std::string("3") + u), 3u * 1024) << u;
  for (const char* u : {"M", "m", "MiB", "mib"})
    EXPECT_EQ(parse_size(std::string("200") + u), 200u << 20) << u;
  EXPECT_EQ(parse_size("2G"), 2ull << 30);
  EXPECT_EQ(parse_size("2GiB"), 2ull << 30);
  EXPECT_EQ(parse_size("1TiB"), 1ull << 40);
  EXPECT_EQ(parse_size("512 MiB"), 512ull << 20);
}

TEST(ParseSize, DecimalUnits) {
  for (const char* u : {"kB", "KB", "kb", "Kb"})
    EXPECT_EQ(parse_size(std::string("5") + u), 5000u) << u;
  EXPECT_EQ(parse_size("50MB"), 50'000'000u);  // RabbitMQ's default disk_free_limit
  EXPECT_EQ(parse_size("1GB"), 1'000'000'000u);
  EXPECT_EQ(parse_size("1000TB"), 1'000'000'000'000'000u);
}

TEST(ParseSize, Refused) {
  for (const char* bad : {"", " ", "MB", "-5", "+5", "1.5GB", "5XB", "5 M B", "5MiBs", "5iB", "5B",
                          "0x10", "ten", "5 5", "18446744073709551616", "20000000TB"})
    EXPECT_FALSE(parse_size(bad).has_value()) << '"' << bad << '"';
}

TEST(ParseFraction, Accepted) {
  EXPECT_DOUBLE_EQ(*parse_fraction("0.4"), 0.4);
  EXPECT_DOUBLE_EQ(*parse_fraction("0"), 0.0);
  EXPECT_DOUBLE_EQ(*parse_fraction("1"), 1.0);
  EXPECT_DOUBLE_EQ(*parse_fraction(".25"), 0.25);
  EXPECT_DOUBLE_EQ(*parse_fraction(" 0.6 "), 0.6);
}

TEST(ParseFraction, Refused) {
  for (const char* bad : {"", "1.01", "2", "-0.1", "+0.4", "abc", "0.4x", "inf", "nan", "40%"})
    EXPECT_FALSE(parse_fraction(bad).has_value()) << '"' << bad << '"';
}

TEST(DescribeSize, ReadableAndExact) {
  EXPECT_EQ(describe_size(512), "512 bytes");
  EXPECT_EQ(describe_size(3 << 20), "3.0 MiB (3145728 bytes)");
  EXPECT_EQ(describe_size(1536), "1.5 KiB (1536 bytes)");
}

}  // namespace
}  // namespace warren::alarm
