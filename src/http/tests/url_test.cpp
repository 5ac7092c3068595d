// Percent-decoding and query parameters.
#include "http/url.hpp"

#include <gtest/gtest.h>

namespace warren::http {
namespace {

TEST(PercentDecode, DecodesAndRefusesBadEscapes) {
  EXPECT_EQ(percent_decode("a%2Fb%20c"), "a/b c");
  EXPECT_EQ(percent_decode("%e2%82%ac"), "\xe2\x82\xac");
  EXPECT_EQ(percent_decode("a+b"), "a+b");
  EXPECT_EQ(percent_decode("a+b", true), "a b");
  EXPECT_EQ(percent_decode(""), "");
  for (const char* bad : {"%", "%2", "%zz", "a%2", "%g0"}) EXPECT_FALSE(percent_decode(bad)) << bad;
}

TEST(QueryParam, FindsDecodesAndTellsAbsentFromEmpty) {
  std::string_view q = "token=a.b.c&since=12&callback=cb&flag&empty=&sp=x+y%21";
  EXPECT_EQ(query_param(q, "token"), "a.b.c");
  EXPECT_EQ(query_param(q, "since"), "12");
  EXPECT_EQ(query_param(q, "flag"), "");
  EXPECT_EQ(query_param(q, "empty"), "");
  EXPECT_EQ(query_param(q, "sp"), "x y!");
  EXPECT_FALSE(query_param(q, "missing"));
  EXPECT_FALSE(query_param(q, "toke"));
  EXPECT_FALSE(query_param("", "a"));
}

TEST(QueryParams, EveryValueOfARepeatedParameterInOrder) {
  std::string_view q = "family=a&vhost=%2F&family=b+c&familyx=no&family&family=d";
  EXPECT_EQ(query_params(q, "family"), (std::vector<std::string>{"a", "b c", "", "d"}));
  EXPECT_EQ(query_params(q, "vhost"), std::vector<std::string>{"/"});
  EXPECT_TRUE(query_params(q, "queue").empty());
  EXPECT_TRUE(query_params("", "family").empty());
}

}  // namespace
}  // namespace warren::http
