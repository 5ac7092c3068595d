// Total memory from /proc/meminfo and cgroup v1/v2 limits, RSS from statm: each reader is fed a
// fake /proc and /sys/fs/cgroup built in a temporary directory.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "alarm/system.hpp"

namespace warren::alarm {
namespace {

namespace fs = std::filesystem;

class FakeSystem : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) /
            ("warren-alarm-" +
             std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(root_);
    fs::create_directories(root_ / "proc");
    fs::create_directories(root_ / "cgroup");
    paths_.meminfo = (root_ / "proc/meminfo").string();
    paths_.self_cgroup = (root_ / "proc/cgroup").string();
    paths_.self_statm = (root_ / "proc/statm").string();
    paths_.cgroup_root = (root_ / "cgroup").string();
  }
  void TearDown() override { fs::remove_all(root_); }

  void write(const fs::path& rel, const std::string& text) {
    fs::create_directories((root_ / rel).parent_path());
    std::ofstream(root_ / rel) << text;
  }
  void meminfo_kb(uint64_t kb) {
    write("proc/meminfo", "MemTotal:       " + std::to_string(kb) +
                              " kB\nMemFree:         1000 kB\nMemAvailable:    2000 kB\n");
  }

  fs::path root_;
  system_paths paths_;
};

TEST_F(FakeSystem, PhysicalMemoryIsMemTotal) {
  meminfo_kb(24683620);
  EXPECT_EQ(physical_memory(paths_), 24683620ull * 1024);
  write("proc/meminfo", "MemFree: 5 kB\n");
  EXPECT_FALSE(physical_memory(paths_));
  fs::remove(root_ / "proc/meminfo");
  EXPECT_FALSE(physical_memory(paths_));
}

TEST_F(FakeSystem, NoCgroupFileMeansNoLimit) {
  EXPECT_FALSE(cgroup_memory_limit(paths_));
  meminfo_kb(1024);
  auto total = available_memory(paths_);
  ASSERT_TRUE(total);
  EXPECT_EQ(total->bytes, 1024u * 1024);
  EXPECT_FALSE(total->cgroup_limited);
}

TEST_F(FakeSystem, CgroupV2LimitOfOwnGroup) {
  meminfo_kb(16 * 1024 * 1024);  // 16 GiB
  write("proc/cgroup", "0::/system.slice/warren.service\n");
  write("cgroup/system.slice/warren.service/memory.max", "536870912\n");
  write("cgroup/system.slice/memory.max", "max\n");
  EXPECT_EQ(cgroup_memory_limit(paths_), 536870912u);
  auto total = available_memory(paths_);
  ASSERT_TRUE(total);
  EXPECT_EQ(total->bytes, 536870912u);
  EXPECT_TRUE(total->cgroup_limited);
}

TEST_F(FakeSystem, CgroupV2AncestorLimitCounts) {
  write("proc/cgroup", "0::/a/b\n");
  write("cgroup/a/b/memory.max", "max\n");
  write("cgroup/a/memory.max", "1073741824\n");
  EXPECT_EQ(cgroup_memory_limit(paths_), 1073741824u);
  write("cgroup/a/b/memory.max", "2147483648\n");  // a looser child does not loosen the parent
  EXPECT_EQ(cgroup_memory_limit(paths_), 1073741824u);
}

TEST_F(FakeSystem, CgroupV2UnlimitedAndContainerRoot) {
  write("proc/cgroup", "0::/\n");
  write("cgroup/memory.max", "max\n");
  EXPECT_FALSE(cgroup_memory_limit(paths_));
  // Inside a container's cgroup namespace the group is "/" and the mount's root has the limit.
  write("cgroup/memory.max", "268435456\n");
  EXPECT_EQ(cgroup_memory_limit(paths_), 268435456u);
}

TEST_F(FakeSystem, CgroupV1MemoryHierarchy) {
  // A hybrid host, as this test's own machine: v1 memory controller, v2 without it.
  write("proc/cgroup",
        "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n2:cpu,cpuacct:/\n0::/\n");
  write("cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");  // unlimited
  write("cgroup/memory/process_api/abc/memory.limit_in_bytes", "9223372036854771712\n");
  EXPECT_FALSE(cgroup_memory_limit(paths_));
  write("cgroup/memory/process_api/abc/memory.limit_in_bytes", "2147483648\n");
  EXPECT_EQ(cgroup_memory_limit(paths_), 2147483648u);
  meminfo_kb(1024 * 1024);  // 1 GiB of RAM: smaller than the cgroup's limit
  auto total = available_memory(paths_);
  ASSERT_TRUE(total);
  EXPECT_EQ(total->bytes, 1ull << 30);
  EXPECT_FALSE(total->cgroup_limited);
}

TEST_F(FakeSystem, CgroupV1PathFromAnotherNamespace) {
  // /proc/self/cgroup names the host's path, but the container mounted its own group as root.
  write("proc/cgroup", "5:memory,hugetlb:/docker/0123abcd\n");
  write("cgroup/memory/memory.limit_in_bytes", "314572800\n");
  EXPECT_EQ(cgroup_memory_limit(paths_), 314572800u);
}

TEST_F(FakeSystem, MalformedCgroupFilesAreIgnored) {
  write("proc/cgroup", "garbage\n0::/x\n3:memory:/y\n");
  write("cgroup/x/memory.max", "lots\n");
  write("cgroup/memory/y/memory.limit_in_bytes", "-1\n");
  EXPECT_FALSE(cgroup_memory_limit(paths_));
}

TEST_F(FakeSystem, RssIsResidentPagesTimesPageSize) {
  write("proc/statm", "765 441 413 5 0 123 0\n");
  auto rss = process_rss(paths_);
  ASSERT_TRUE(rss);
  EXPECT_EQ(*rss, 441u * uint64_t(::sysconf(_SC_PAGESIZE)));
  write("proc/statm", "765\n");
  EXPECT_FALSE(process_rss(paths_));
}

TEST(RealSystem, ReadingsArePlausible) {
  auto rss = process_rss();
  ASSERT_TRUE(rss);
  EXPECT_GT(*rss, 64u * 1024);
  auto total = available_memory();
  ASSERT_TRUE(total);
  EXPECT_GT(total->bytes, *rss);
  auto free = disk_free(::testing::TempDir());
  ASSERT_TRUE(free);
  EXPECT_FALSE(disk_free("/no/such/dir/for/warren"));
}

}  // namespace
}  // namespace warren::alarm
