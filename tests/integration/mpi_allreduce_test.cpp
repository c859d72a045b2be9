// DataParallel across real MPI processes. Run plainly (by ctest), each test starts this binary
// again under `mpirun -np 2` with a filter naming itself and checks how the job ended; started by
// mpirun, the same test runs as one of the two ranks and checks the collectives' results exactly.
// Skips visibly when mpirun is not on PATH (scripts/install-deps.sh installs openmpi-bin).
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/error.h"
#include "test_support.h"
#include "train/data_parallel.h"

namespace kiln::train {
namespace {

// The mpirun on PATH, or "" when there is none.
std::string find_mpirun() {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "";
  for (std::size_t start = 0; start <= dirs.size();) {
    std::size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    const std::string candidate = dirs.substr(start, end - start) + "/mpirun";
    if (end > start && ::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return "";
}

std::string self_path() {
  std::vector<char> buf(4096);
  const ssize_t n = ::readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  return n > 0 ? std::string(buf.data(), static_cast<std::size_t>(n)) : "";
}

struct JobResult {
  int code = -1;
  std::string out;
  double seconds = 0;
};

// Runs the current test again as 2 ranks under mpirun (root may run it: this machine's CI runs
// as root; more ranks than cores are allowed). `timeout` turns a hung job into exit code 124.
JobResult run_as_two_ranks() {
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string filter = std::string(info->test_suite_name()) + "." + info->name();
  const std::string command = "timeout 60 " + find_mpirun() +
                              " -np 2 --oversubscribe --allow-run-as-root --bind-to none " + self_path() +
                              " --gtest_brief=1 --gtest_filter=" + filter + " < /dev/null";
  JobResult r;
  const auto start = std::chrono::steady_clock::now();
  r.code = test::run_command(command, &r.out, /*merge_stderr=*/true);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

#define KILN_REQUIRE_MPIRUN() \
  if (find_mpirun().empty()) GTEST_SKIP() << "mpirun not on PATH (Debian: openmpi-bin)"

TEST(MpiDataParallel, TwoRanksAverageSumBroadcastAndCheckExactly) {
  if (!launched_by_mpi()) {
    KILN_REQUIRE_MPIRUN();
    const JobResult r = run_as_two_ranks();
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("PASSED"), std::string::npos) << r.out;
    return;
  }
  DataParallel& dp = DataParallel::instance();
  ASSERT_EQ(dp.size(), 2);
  ASSERT_TRUE(dp.multi_rank());
  const int rank = dp.rank();
  double rank_sum = rank;
  dp.sum(&rank_sum, 1);
  ASSERT_EQ(rank_sum, 1.0) << "ranks 0 and 1";
  EXPECT_EQ(dp.is_root(), rank == 0);

  // Rank r holds i·(r+1): the mean over ranks is 1.5·i, exact in float for these i. Once in one
  // MPI call, once in chunks of 28 bytes (7 floats, 3 doubles: the last chunk of each is short).
  const std::int64_t default_chunk = dp.max_chunk_bytes();
  for (const std::int64_t chunk : {default_chunk, std::int64_t{28}}) {
    dp.set_max_chunk_bytes(chunk);
    std::vector<float> grads(100);
    for (std::size_t i = 0; i < grads.size(); ++i) grads[i] = static_cast<float>(i) * static_cast<float>(rank + 1);
    dp.average(grads.data(), static_cast<std::int64_t>(grads.size()));
    for (std::size_t i = 0; i < grads.size(); ++i)
      ASSERT_EQ(grads[i], 1.5f * static_cast<float>(i)) << "item " << i << ", chunks of " << chunk << " bytes";

    std::vector<double> stats = {static_cast<double>(rank + 1), 1000.0 * rank, -0.25};
    dp.average(stats.data(), 3);
    EXPECT_EQ(stats, (std::vector<double>{1.5, 500.0, -0.25}));
    dp.sum(stats.data(), 3);
    EXPECT_EQ(stats, (std::vector<double>{3.0, 1000.0, -0.5}));

    // Rank 0's bytes reach rank 1, then rank 1's come back.
    std::vector<unsigned char> bytes(1000, 0);
    if (rank == 0)
      for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<unsigned char>(i * 7 + 3);
    dp.broadcast(bytes.data(), static_cast<std::int64_t>(bytes.size()), 0);
    for (std::size_t i = 0; i < bytes.size(); ++i) ASSERT_EQ(bytes[i], static_cast<unsigned char>(i * 7 + 3)) << i;
    std::vector<std::int32_t> step = {rank == 1 ? 12345 : -1};
    dp.broadcast(step.data(), 4, 1);
    EXPECT_EQ(step[0], 12345);
  }
  dp.set_max_chunk_bytes(default_chunk);

  EXPECT_NO_THROW(dp.check_same(0xfeedULL, "the config hash"));
  try {
    dp.check_same(100 + static_cast<std::uint64_t>(rank), "the data hash");
    ADD_FAILURE() << "rank " << rank << ": differing values were accepted";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "the ranks disagree on the data hash: rank 0 has 0x64, rank 1 has 0x65");
  }
  dp.barrier();
}

TEST(MpiDataParallel, AnErrorOnOneRankEndsTheWholeJob) {
  if (!launched_by_mpi()) {
    KILN_REQUIRE_MPIRUN();
    const JobResult r = run_as_two_ranks();
    EXPECT_NE(r.code, 0) << r.out;
    EXPECT_NE(r.code, 124) << "the job hung until timeout killed it:\n" << r.out;
    EXPECT_NE(r.out.find("kiln: rank 1 of 2: shard 3 is damaged"), std::string::npos) << r.out;
    EXPECT_LT(r.seconds, 30.0) << r.out;
    return;
  }
  DataParallel& dp = DataParallel::instance();
  ASSERT_EQ(dp.size(), 2);
  dp.run([&] {
    if (dp.rank() == 1) fail("shard {} is damaged", 3);
    // Rank 0 goes on to the next all-reduce, which rank 1 never joins: only MPI_Abort ends it.
    std::vector<float> grads(16, 1.0f);
    dp.average(grads.data(), 16);
  });
  ADD_FAILURE() << "rank " << dp.rank() << " went on after rank 1 failed";
}

}  // namespace
}  // namespace kiln::train
