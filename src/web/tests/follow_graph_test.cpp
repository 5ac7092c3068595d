// The follow graph: edges both ways, bulk loads, and its log across restarts and torn tails.
#include "web/follow_graph.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace fs = std::filesystem;
using warren::web::follow_graph;

namespace {

class FollowGraphTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("warren-follows-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path log() const { return dir_ / "follows.log"; }
  fs::path dir_;
};

std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

}  // namespace

TEST_F(FollowGraphTest, FollowAndUnfollowBothDirections) {
  follow_graph g;
  EXPECT_TRUE(g.follow("alice", "bob"));
  EXPECT_FALSE(g.follow("alice", "bob"));
  EXPECT_TRUE(g.follow("carol", "bob"));
  EXPECT_TRUE(g.follow("alice", "carol"));
  EXPECT_EQ(g.edge_count(), 3u);
  EXPECT_EQ(sorted(g.followers("bob")), (std::vector<std::string>{"alice", "carol"}));
  EXPECT_EQ(sorted(g.following("alice")), (std::vector<std::string>{"bob", "carol"}));
  EXPECT_TRUE(g.unfollow("alice", "bob"));
  EXPECT_FALSE(g.unfollow("alice", "bob"));
  EXPECT_FALSE(g.unfollow("nobody", "bob"));
  EXPECT_EQ(g.followers("bob"), (std::vector<std::string>{"carol"}));
  EXPECT_EQ(g.edge_count(), 2u);
}

TEST_F(FollowGraphTest, BulkLoadCountsNewAndExistingEdges) {
  follow_graph g;
  g.follow("a", "b");
  std::vector<std::pair<std::string_view, std::string_view>> edges = {
      {"a", "b"}, {"a", "c"}, {"a", "c"}, {"d", "b"}, {"e", "b"}};
  auto r = g.follow_all(edges);
  EXPECT_EQ(r.added, 3u);
  EXPECT_EQ(r.existing, 2u);
  EXPECT_EQ(g.edge_count(), 4u);
  EXPECT_EQ(sorted(g.followers("b")), (std::vector<std::string>{"a", "d", "e"}));
  size_t n = 0;
  g.for_each_follower("b", [&](std::string_view) { ++n; });
  EXPECT_EQ(n, 3u);
}

TEST_F(FollowGraphTest, EdgesSurviveARestartAndUnfollowsToo) {
  {
    follow_graph g(log());
    EXPECT_EQ(g.load(), 0u);
    g.follow("alice", "bob");
    g.follow("carol", "bob");
    std::vector<std::pair<std::string_view, std::string_view>> edges = {{"x", "y"}, {"z", "y"}};
    g.follow_all(edges);
    g.unfollow("carol", "bob");
  }
  follow_graph g(log());
  EXPECT_EQ(g.load(), 3u);
  EXPECT_EQ(g.followers("bob"), (std::vector<std::string>{"alice"}));
  EXPECT_EQ(sorted(g.followers("y")), (std::vector<std::string>{"x", "z"}));
}

TEST_F(FollowGraphTest, DroppingAFolloweesFollowersIsOneRecordAndSurvivesARestart) {
  {
    follow_graph g(log());
    g.load();
    g.follow("alice", "bob");
    g.follow("carol", "bob");
    g.follow("alice", "dan");
    EXPECT_EQ(sorted(g.followees()), (std::vector<std::string>{"bob", "dan"}));
    EXPECT_EQ(g.drop_followers("bob"), 2u);
    EXPECT_EQ(g.drop_followers("bob"), 0u);
    EXPECT_EQ(g.drop_followers("nobody"), 0u);
    EXPECT_TRUE(g.followers("bob").empty());
    EXPECT_EQ(g.following("alice"), (std::vector<std::string>{"dan"}));
    EXPECT_TRUE(g.following("carol").empty());
    EXPECT_EQ(g.followees(), (std::vector<std::string>{"dan"}));
    EXPECT_EQ(g.edge_count(), 1u);
  }
  follow_graph g(log());
  EXPECT_EQ(g.load(), 1u);
  EXPECT_TRUE(g.followers("bob").empty());
  EXPECT_EQ(g.followers("dan"), (std::vector<std::string>{"alice"}));
}

TEST_F(FollowGraphTest, TornTailIsCutAndEverythingBeforeItKept) {
  {
    follow_graph g(log());
    g.load();
    g.follow("a", "b");
    g.follow("c", "d");
  }
  // A crash in the middle of the next record: half of a record's bytes at the end.
  {
    std::ofstream f(log(), std::ios::app | std::ios::binary);
    f.write("\x00\x00\x00\x40\x12\x34", 6);
  }
  auto size_with_tail = fs::file_size(log());
  follow_graph g(log());
  EXPECT_EQ(g.load(), 2u);
  EXPECT_LT(fs::file_size(log()), size_with_tail);
  g.follow("e", "f");  // appends after the cut, readable next time
  follow_graph again(log());
  EXPECT_EQ(again.load(), 3u);
}

TEST_F(FollowGraphTest, LogIsCompactedWhenMostlyDeadAndStaysCorrect) {
  {
    follow_graph g(log());
    g.load();
    for (int round = 0; round < 3; ++round) {
      std::vector<std::string> names;
      for (int i = 0; i < 400; ++i) names.push_back(std::string("u").append(std::to_string(i)));
      std::vector<std::pair<std::string_view, std::string_view>> edges;
      for (const auto& n : names) edges.emplace_back(n, "star");
      g.follow_all(edges);
      if (round < 2)
        for (const auto& n : names) g.unfollow(n, "star");
    }
    EXPECT_EQ(g.edge_count(), 400u);
  }
  auto size = fs::file_size(log());
  follow_graph g(log());
  EXPECT_EQ(g.load(), 400u);
  EXPECT_EQ(g.followers("star").size(), 400u);
  // 2000 edge operations were written (about 27 KB uncompacted); after the last compaction the
  // file holds a snapshot and what followed it (under 10 KB here).
  EXPECT_LT(size, 16u * 1024);
}

TEST_F(FollowGraphTest, AMillionEdgesLoadQuickly) {
  std::vector<std::string> names;
  names.reserve(20000);
  for (int i = 0; i < 20000; ++i) names.push_back(std::string("user-").append(std::to_string(i)));
  std::vector<std::pair<std::string_view, std::string_view>> edges;
  edges.reserve(1'000'000);
  for (size_t i = 0; i < 1'000'000; ++i)
    edges.emplace_back(names[i % names.size()],
                       names[(i * 7919 + i / names.size()) % names.size()]);
  {
    follow_graph g(log());
    g.load();
    auto r = g.follow_all(edges);
    EXPECT_EQ(r.added + r.existing, edges.size());
    EXPECT_GT(r.added, 900'000u);
  }
  follow_graph g(log());
  auto n = g.load();
  EXPECT_GT(n, 900'000u);
}
