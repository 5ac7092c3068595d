// serve_dashboard: the embedded files of web/dashboard/, their ETags, HEAD and what it leaves alone.
#include "mgmt/dashboard.hpp"

#include <gtest/gtest.h>

namespace warren::mgmt {
namespace {

namespace bhttp = boost::beast::http;

http::request_header request(bhttp::verb verb, std::string_view target) {
  http::request_header h;
  h.method(verb);
  h.target(target);
  h.version(11);
  return h;
}

TEST(dashboard, root_is_the_page) {
  auto res = serve_dashboard(request(bhttp::verb::get, "/?x=1"));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result(), bhttp::status::ok);
  EXPECT_EQ((*res)[bhttp::field::content_type], "text/html; charset=utf-8");
  EXPECT_NE(res->body().find("dashboard/app.js"), std::string::npos);
  EXPECT_EQ((*res)[bhttp::field::cache_control], "no-cache");
  EXPECT_FALSE((*res)[bhttp::field::etag].empty());
}

TEST(dashboard, assets_by_path_with_their_type) {
  auto js = serve_dashboard(request(bhttp::verb::get, "/dashboard/views/queues.js"));
  ASSERT_TRUE(js);
  EXPECT_EQ((*js)[bhttp::field::content_type], "text/javascript; charset=utf-8");
  auto css = serve_dashboard(request(bhttp::verb::get, "/dashboard/vendor/uPlot.min.css"));
  ASSERT_TRUE(css);
  EXPECT_EQ((*css)[bhttp::field::content_type], "text/css; charset=utf-8");
}

TEST(dashboard, head_has_the_length_and_no_body) {
  auto get = serve_dashboard(request(bhttp::verb::get, "/dashboard/app.js"));
  auto head = serve_dashboard(request(bhttp::verb::head, "/dashboard/app.js"));
  ASSERT_TRUE(get && head);
  EXPECT_TRUE(head->body().empty());
  EXPECT_EQ((*head)[bhttp::field::content_length], std::to_string(get->body().size()));
}

TEST(dashboard, matching_etag_gives_304) {
  auto first = serve_dashboard(request(bhttp::verb::get, "/dashboard/app.js"));
  ASSERT_TRUE(first);
  std::string etag((*first)[bhttp::field::etag]);
  auto again = request(bhttp::verb::get, "/dashboard/app.js");
  again.set(bhttp::field::if_none_match, "\"other\", W/" + etag);
  auto res = serve_dashboard(again);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result(), bhttp::status::not_modified);
  EXPECT_TRUE(res->body().empty());
}

TEST(dashboard, leaves_other_requests_to_the_api) {
  EXPECT_FALSE(serve_dashboard(request(bhttp::verb::post, "/")));
  EXPECT_FALSE(serve_dashboard(request(bhttp::verb::delete_, "/dashboard/app.js")));
  EXPECT_FALSE(serve_dashboard(request(bhttp::verb::get, "/api/overview")));
  EXPECT_FALSE(serve_dashboard(request(bhttp::verb::get, "/dashboard/missing.js")));
  EXPECT_FALSE(serve_dashboard(request(bhttp::verb::get, "/index.html")));
}

}  // namespace
}  // namespace warren::mgmt
