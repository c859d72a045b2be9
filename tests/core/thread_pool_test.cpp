#include "core/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <numeric>
#include <vector>

#include "core/error.h"

namespace kiln {

TEST(ThreadPool, ParallelForVisitsEveryIndexOnce) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (std::int64_t n : {0, 1, 7, 1000}) {
      std::vector<std::atomic<int>> hits(n);
      pool.parallel_for(n, [&](std::int64_t i, int worker) {
        ASSERT_LT(worker, threads);
        hits[i].fetch_add(1);
      }, 3);
      for (std::int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[i].load(), 1) << "n=" << n << " i=" << i;
    }
  }
}

TEST(ThreadPool, RunCallsEveryWorkerAndManyRoundsComplete) {
  ThreadPool pool(2);
  std::atomic<long> total{0};
  for (int round = 0; round < 20000; ++round)
    pool.run([&](int worker, int n) {
      EXPECT_EQ(n, 2);
      total.fetch_add(worker + 1);
    });
  EXPECT_EQ(total.load(), 20000L * 3);
}

TEST(ThreadPool, ExceptionsReachTheCaller) {
  ThreadPool pool(2);
  EXPECT_THROW(pool.run([&](int worker, int) {
    if (worker == 1) fail("boom {}", worker);
  }), Error);
  // The pool stays usable after an exception.
  std::atomic<int> calls{0};
  pool.run([&](int, int) { calls++; });
  EXPECT_EQ(calls.load(), 2);
}

TEST(SplitRange, CoversWithoutOverlapAndAligns) {
  for (int parts : {1, 2, 3, 5})
    for (std::int64_t n : {0, 1, 16, 100, 257}) {
      std::int64_t covered = 0, prev_end = 0;
      for (int p = 0; p < parts; ++p) {
        std::int64_t b, e;
        split_range(n, p, parts, 16, &b, &e);
        EXPECT_EQ(b, prev_end);
        if (e < n) {
          EXPECT_EQ(e % 16, 0);
        }
        covered += e - b;
        prev_end = e;
      }
      EXPECT_EQ(covered, n);
    }
}

}  // namespace kiln
