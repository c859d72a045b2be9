// DataParallel in a process that no launcher started: rank 0 of 1, MPI never initialised, every
// collective an identity; rank_slice covering a batch exactly once with balanced counts. The
// ranks of a real MPI job are tested by tests/integration/mpi_allreduce_test.
#include "train/data_parallel.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/error.h"

namespace kiln::train {
namespace {

TEST(DataParallel, WithoutALauncherIsOneProcessOfRankZero) {
  if (launched_by_mpi()) GTEST_SKIP() << "started by an MPI launcher; this test is for a plain process";
  DataParallel& dp = DataParallel::instance();
  EXPECT_EQ(&dp, &DataParallel::instance());
  EXPECT_EQ(dp.rank(), 0);
  EXPECT_EQ(dp.size(), 1);
  EXPECT_TRUE(dp.is_root());
  EXPECT_FALSE(dp.multi_rank());
}

TEST(DataParallel, CollectivesOfOneProcessAreIdentities) {
  if (launched_by_mpi()) GTEST_SKIP() << "started by an MPI launcher; this test is for a plain process";
  DataParallel& dp = DataParallel::instance();
  std::vector<float> f = {1.5f, -2.25f, 3e-8f, 7e30f};
  const std::vector<float> f0 = f;
  dp.average(f.data(), static_cast<std::int64_t>(f.size()));
  EXPECT_EQ(f, f0);
  std::vector<double> d = {0.1, -1e300, 42.0};
  const std::vector<double> d0 = d;
  dp.average(d.data(), static_cast<std::int64_t>(d.size()));
  EXPECT_EQ(d, d0);
  dp.sum(d.data(), static_cast<std::int64_t>(d.size()));
  EXPECT_EQ(d, d0);
  std::vector<unsigned char> bytes = {1, 2, 3, 255};
  const std::vector<unsigned char> bytes0 = bytes;
  dp.broadcast(bytes.data(), static_cast<std::int64_t>(bytes.size()));
  EXPECT_EQ(bytes, bytes0);
  dp.barrier();
  EXPECT_NO_THROW(dp.check_same(0x1234, "the config hash"));
  // Empty buffers are allowed (a rank with nothing to add still joins the collective).
  dp.average(static_cast<float*>(nullptr), 0);
  dp.sum(nullptr, 0);
}

TEST(DataParallel, RefusesBadArguments) {
  DataParallel& dp = DataParallel::instance();
  float x = 1.0f;
  EXPECT_THROW(dp.average(&x, -1), Error);
  EXPECT_THROW(dp.average(static_cast<float*>(nullptr), 3), Error);
  EXPECT_THROW(dp.sum(nullptr, 2), Error);
  EXPECT_THROW(dp.broadcast(&x, 4, dp.size()), Error);
  EXPECT_THROW(dp.broadcast(&x, 4, -1), Error);
  EXPECT_THROW(dp.set_max_chunk_bytes(0), Error);
  EXPECT_THROW(dp.set_max_chunk_bytes(7), Error);
  EXPECT_EQ(dp.max_chunk_bytes(), 4 << 20);
}

TEST(RankSlice, CoversEveryItemOnceInOrderWithBalancedCounts) {
  for (int size = 1; size <= 9; ++size) {
    for (int items = 0; items <= 40; ++items) {
      std::vector<int> owner(static_cast<std::size_t>(items), -1);
      int next = 0, min_count = items, max_count = 0;
      for (int rank = 0; rank < size; ++rank) {
        const RankSlice s = rank_slice(items, rank, size);
        ASSERT_EQ(s.begin, next) << items << " items, rank " << rank << " of " << size;
        ASSERT_GE(s.count, 0);
        for (int i = s.begin; i < s.begin + s.count; ++i) {
          ASSERT_LT(i, items);
          ASSERT_EQ(owner[static_cast<std::size_t>(i)], -1) << "item " << i << " taken twice";
          owner[static_cast<std::size_t>(i)] = rank;
        }
        next = s.begin + s.count;
        min_count = std::min(min_count, s.count);
        max_count = std::max(max_count, s.count);
      }
      ASSERT_EQ(next, items) << items << " items over " << size << " ranks";
      ASSERT_LE(max_count - min_count, 1) << items << " items over " << size << " ranks";
      if (items % size == 0) {
        ASSERT_EQ(max_count, items / size);
      }
    }
  }
}

TEST(RankSlice, EvenBatchesSplitIntoEqualMicroBatches) {
  EXPECT_EQ(rank_slice(64, 0, 4).begin, 0);
  EXPECT_EQ(rank_slice(64, 3, 4).begin, 48);
  EXPECT_EQ(rank_slice(64, 3, 4).count, 16);
  // 10 over 4: 3, 3, 2, 2.
  EXPECT_EQ(rank_slice(10, 1, 4).begin, 3);
  EXPECT_EQ(rank_slice(10, 1, 4).count, 3);
  EXPECT_EQ(rank_slice(10, 2, 4).begin, 6);
  EXPECT_EQ(rank_slice(10, 2, 4).count, 2);
  // Large counts do not overflow.
  const RankSlice last = rank_slice(2147483647, 6, 7);
  EXPECT_EQ(last.begin + last.count, 2147483647);
}

TEST(RankSlice, RefusesBadArguments) {
  EXPECT_THROW(rank_slice(10, 0, 0), Error);
  EXPECT_THROW(rank_slice(10, 4, 4), Error);
  EXPECT_THROW(rank_slice(10, -1, 4), Error);
  EXPECT_THROW(rank_slice(-1, 0, 4), Error);
}

}  // namespace
}  // namespace kiln::train
