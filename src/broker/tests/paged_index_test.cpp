// The paged index: order across blocks on disk, entries put back at the head, the RAM it holds
// whatever the depth (the bookkeeping a deep backlog costs), and a spool that cannot be created.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <vector>

#include "broker/paged_index.hpp"

namespace warren::broker {
namespace {

namespace fs = std::filesystem;

paged entry(uint32_t i) {
  return paged{i / 1000, i, 40 + i % 7, 16, i % 3 == 0, int64_t(i) * 10};
}

class PagedIndex : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("warren-paged-index-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    spool = std::make_shared<index_spool>(dir);
  }
  void TearDown() override {
    spool.reset();
    fs::remove_all(dir);
  }
  fs::path dir;
  std::shared_ptr<index_spool> spool;
};

void expect_entry(const paged& p, uint32_t i) {
  paged want = entry(i);
  ASSERT_EQ(p.segment, want.segment) << i;
  ASSERT_EQ(p.offset, want.offset) << i;
  ASSERT_EQ(p.length, want.length) << i;
  ASSERT_EQ(p.body_size, want.body_size) << i;
  ASSERT_EQ(p.redelivered, want.redelivered) << i;
  ASSERT_EQ(p.expires_at, want.expires_at) << i;
}

TEST_F(PagedIndex, KeepsOrderAcrossBlocksOnDisk) {
  paged_index ix(spool);
  const uint32_t n = 10 * paged_index::block_entries + 123;
  for (uint32_t i = 0; i < n; ++i) ix.push_back(entry(i));
  EXPECT_EQ(ix.size(), n);
  EXPECT_GE(ix.blocks_on_disk(), 8u);
  EXPECT_EQ(spool->blocks_in_use(), ix.blocks_on_disk());
  uint32_t seen = 0;
  ix.for_each([&](const paged& p) { expect_entry(p, seen++); });
  EXPECT_EQ(seen, n);
  // Drained while more arrive: still one FIFO.
  uint32_t next_in = n, next_out = 0;
  paged p;
  for (int round = 0; round < 3 * int(paged_index::block_entries); ++round) {
    ASSERT_TRUE(ix.pop_front(p));
    expect_entry(p, next_out++);
    if (round % 2 == 0) ix.push_back(entry(next_in++));
  }
  while (ix.pop_front(p)) expect_entry(p, next_out++);
  EXPECT_EQ(next_out, next_in);
  EXPECT_TRUE(ix.empty());
  EXPECT_EQ(spool->blocks_in_use(), 0u);  // every block given back
}

TEST_F(PagedIndex, EntriesPutBackAtTheHeadComeFirst) {
  paged_index ix(spool);
  const uint32_t n = 3 * paged_index::block_entries;
  for (uint32_t i = 100; i < n; ++i) ix.push_back(entry(i));
  for (uint32_t i = 100; i-- > 0;) ix.push_front(entry(i));  // as page_out does: from the back
  paged p;
  for (uint32_t i = 0; i < n; ++i) {
    ASSERT_TRUE(ix.pop_front(p));
    expect_entry(p, i);
  }
  EXPECT_FALSE(ix.pop_front(p));
}

TEST_F(PagedIndex, ADeepBacklogCostsOnlyItsBlockList) {
  // The bookkeeping per paged message: 1 million entries hold two blocks of buffers and 32 bytes
  // per block of 2048 on disk, under 0.2 bytes per message. Per-message RAM coming back (an entry
  // in memory for each) would cost 24 bytes per message here and fail this.
  paged_index ix(spool);
  const size_t n = 1'000'000;
  for (uint32_t i = 0; i < n; ++i) ix.push_back(entry(i));
  EXPECT_LT(ix.ram_bytes(), 200'000u);
  EXPECT_LT(double(ix.ram_bytes()) / double(n), 0.2);
  paged p;
  for (size_t i = 0; i < n / 2; ++i) ASSERT_TRUE(ix.pop_front(p));
  EXPECT_LT(ix.ram_bytes(), 200'000u);
  ix.clear();
  EXPECT_EQ(spool->blocks_in_use(), 0u);
  EXPECT_LT(ix.ram_bytes(), 1000u);
}

TEST_F(PagedIndex, FreedBlocksAreReusedAndTheFileShrinks) {
  paged_index a(spool), b(spool);
  const uint32_t n = 4 * paged_index::block_entries;
  for (uint32_t i = 0; i < n; ++i) {
    a.push_back(entry(i));
    b.push_back(entry(i));
  }
  size_t used = spool->blocks_in_use();
  EXPECT_EQ(used, a.blocks_on_disk() + b.blocks_on_disk());
  a.clear();
  EXPECT_EQ(spool->blocks_in_use(), b.blocks_on_disk());
  for (uint32_t i = 0; i < n; ++i) a.push_back(entry(i));
  EXPECT_EQ(spool->blocks_in_use(), used);
  paged p;
  for (uint32_t i = 0; i < n; ++i) {
    ASSERT_TRUE(a.pop_front(p));
    expect_entry(p, i);
    ASSERT_TRUE(b.pop_front(p));
    expect_entry(p, i);
  }
  EXPECT_EQ(spool->blocks_in_use(), 0u);
}

TEST(PagedIndexNoSpool, WithoutASpoolFileBlocksStayInMemory) {
  for (auto spool : {std::shared_ptr<index_spool>(),
                     std::make_shared<index_spool>("/nonexistent/warren/spool")}) {
    paged_index ix(spool);
    const uint32_t n = 3 * paged_index::block_entries + 5;
    for (uint32_t i = 0; i < n; ++i) ix.push_back(entry(i));
    EXPECT_EQ(ix.blocks_on_disk(), 0u);
    EXPECT_GT(ix.ram_bytes(), n * sizeof(paged));
    paged p;
    for (uint32_t i = 0; i < n; ++i) {
      ASSERT_TRUE(ix.pop_front(p));
      expect_entry(p, i);
    }
    EXPECT_TRUE(ix.empty());
  }
}

}  // namespace
}  // namespace warren::broker
