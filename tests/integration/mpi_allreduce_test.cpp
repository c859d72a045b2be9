// DataParallel across real MPI processes. Run plainly (by ctest), each test starts this binary
// again under `mpirun -np 2` with a filter naming itself and checks how the job ended; started by
// mpirun, the same test runs as one of the two ranks and checks the collectives' results exactly.
// Skips visibly when mpirun is not on PATH (scripts/install-deps.sh installs openmpi-bin).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "test_support.h"
#include "train/tiny_llama_config.h"
#include "train/adamw.h"
#include "train/data_parallel.h"
#include "train/llama_training_model.h"

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
  // Under AddressSanitizer the ranks do not check for leaks: Open MPI keeps allocations from
  // MPI_Init to exit in components it unloads at MPI_Finalize, which LeakSanitizer reports as
  // leaks it cannot attribute (and so no suppression can name). The parent still checks its own.
  const char* asan = std::getenv("ASAN_OPTIONS");
  const std::string rank_asan =
      "ASAN_OPTIONS=" + std::string(asan ? asan : "") + (asan && *asan ? ":" : "") + "detect_leaks=0 ";
  const std::string command = rank_asan + "timeout 60 " + find_mpirun() +
                              " -np 2 --oversubscribe --allow-run-as-root --bind-to none -x ASAN_OPTIONS " +
                              self_path() + " --gtest_brief=1 --gtest_filter=" + filter + " < /dev/null";
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

LlamaConfig tiny_config() { return test::tiny_llama_config(); }

std::uint64_t fnv1a(const float* data, std::int64_t n) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  const auto* bytes = reinterpret_cast<const unsigned char*>(data);
  for (std::int64_t i = 0; i < n * static_cast<std::int64_t>(sizeof(float)); ++i) h = (h ^ bytes[i]) * 0x100000001b3ULL;
  return h;
}

// The recipe of data-parallel training on the real training model: the parameters broadcast from
// rank 0, each rank's rank_slice of a global batch of 4 windows, the gradient buffer averaged in
// one all-reduce. The averaged gradient and loss are the whole batch's, as one process computes
// them, and after the same AdamW step every rank holds bit-identical parameters.
TEST(MpiDataParallel, TwoHalvesOfABatchGiveTheWholeBatchsGradient) {
  if (!launched_by_mpi()) {
    KILN_REQUIRE_MPIRUN();
    const JobResult r = run_as_two_ranks();
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("PASSED"), std::string::npos) << r.out;
    return;
  }
  DataParallel& dp = DataParallel::instance();
  ASSERT_EQ(dp.size(), 2);
  ThreadPool pool(1);
  LlamaTrainingModel model(tiny_config(), kernels::GemmPrecision::F32, pool);
  const std::int64_t n_params = model.table().total();
  // Each rank initialises differently; rank 0's parameters win.
  std::mt19937 rng(11 + 1000 * static_cast<std::uint32_t>(dp.rank()));
  std::normal_distribution<float> dist(0.0f, 0.35f);
  for (const ParameterInfo& p : model.table().entries())
    for (std::int64_t i = 0; i < p.size(); ++i)
      model.params()[p.offset + i] = p.decay ? dist(rng) : 1.0f + 0.2f * dist(rng);
  dp.broadcast(model.params(), n_params * static_cast<std::int64_t>(sizeof(float)));
  dp.check_same(fnv1a(model.params(), n_params), "the initial parameters");

  // The same global batch on every rank: 4 windows of 7 tokens, every position with a target.
  const int global_windows = 4, T = 7;
  std::mt19937 data_rng(5);
  std::uniform_int_distribution<int> tok(0, model.config().n_vocab - 1);
  std::vector<int> tokens(global_windows * T), targets(global_windows * T);  // (4, T)
  for (int i = 0; i < global_windows * T; ++i) {
    tokens[static_cast<std::size_t>(i)] = tok(data_rng);
    targets[static_cast<std::size_t>(i)] = tok(data_rng);
  }

  // What one process computes on the whole batch.
  LlamaTrainingModel whole(tiny_config(), kernels::GemmPrecision::F32, pool);
  std::copy(model.params(), model.params() + n_params, whole.params());
  whole.zero_grads();
  const double whole_loss = whole.forward_backward(TokenBatch{global_windows, T, tokens.data(), targets.data()}, 1.0f);

  // This rank's windows, then the average over ranks.
  const RankSlice slice = rank_slice(global_windows, dp.rank(), dp.size());
  ASSERT_EQ(slice.count, 2);
  const std::size_t first = static_cast<std::size_t>(slice.begin) * T;
  model.zero_grads();
  double loss = model.forward_backward(TokenBatch{slice.count, T, tokens.data() + first, targets.data() + first}, 1.0f);
  dp.average(model.grads(), n_params);
  dp.average(&loss, 1);
  EXPECT_NEAR(loss, whole_loss, 1e-6 * std::abs(whole_loss));
  float max_grad = 0.0f;
  for (std::int64_t i = 0; i < n_params; ++i) max_grad = std::max(max_grad, std::abs(whole.grads()[i]));
  ASSERT_GT(max_grad, 0.0f);
  for (std::int64_t i = 0; i < n_params; ++i)
    ASSERT_NEAR(model.grads()[i], whole.grads()[i], 1e-5f * max_grad) << "gradient " << i;

  // The same update on every rank keeps the ranks identical without sending parameters again.
  AdamW adamw(model.table(), AdamWOptions{});
  clip_gradient_norm(model.grads(), n_params, 1.0, pool);
  adamw.step(model.params(), model.grads(), 1e-3f, pool);
  dp.check_same(fnv1a(model.params(), n_params), "the parameters after a step");
}

}  // namespace
}  // namespace kiln::train
