#include "train/data_parallel.h"

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/error.h"

namespace kiln::train {
namespace {

bool env_set(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0';
}

// The number of processes the launcher says it started, or 0 when it does not say (PMIx alone
// publishes only the rank in the environment).
int launcher_size() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}) {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') continue;
    char* end = nullptr;
    const long n = std::strtol(v, &end, 10);
    if (*end == '\0' && n > 0 && n <= INT_MAX) return static_cast<int>(n);
  }
  return 0;
}

void check_mpi(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) len = 0;
  fail("{} failed: {}", call, std::string(text, static_cast<std::size_t>(len)));
}

// Calls fn(pointer to the chunk, items in it) over [data, data + n) in chunks of at most
// max_bytes bytes (and at most INT_MAX items: MPI counts are int).
template <typename T, typename Fn>
void for_each_chunk(T* data, std::int64_t n, std::int64_t max_bytes, Fn&& fn) {
  const std::int64_t max_items = std::clamp<std::int64_t>(max_bytes / static_cast<std::int64_t>(sizeof(T)), 1, INT_MAX);
  for (std::int64_t done = 0; done < n;) {
    const std::int64_t count = std::min(n - done, max_items);
    fn(data + done, static_cast<int>(count));
    done += count;
  }
}

void check_buffer(const void* data, std::int64_t n, const char* what) {
  KILN_CHECK(n >= 0, "data parallel: {} of {} items", what, n);
  KILN_CHECK(n == 0 || data != nullptr, "data parallel: {} of {} items from a null buffer", what, n);
}

}  // namespace

bool launched_by_mpi() { return env_set("OMPI_COMM_WORLD_SIZE") || env_set("PMIX_RANK") || env_set("PMI_SIZE"); }

DataParallel& DataParallel::instance() {
  static DataParallel dp;
  return dp;
}

DataParallel::DataParallel() {
  if (!launched_by_mpi()) return;
  int provided = 0;
  check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  mpi_ = true;
  // Errors come back as return codes and become kiln::Error, so that they reach run()'s handler
  // (which prints the rank and aborts the job) instead of MPI's default abort without context.
  check_mpi(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  check_mpi(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(MPI_COMM_WORLD, &size_), "MPI_Comm_size");
  // A launcher of another MPI (MPICH's mpiexec starting an Open MPI kiln) starts N processes
  // that each see a world of one and would train N independent models.
  const int expected = launcher_size();
  if (expected != 0 && expected != size_)
    abort_job(fmt::format(
        "the launcher started {} processes but MPI sees {}: launch kiln with the mpirun of the MPI it was built with",
        expected, size_));
  if (provided < MPI_THREAD_FUNNELED)
    abort_job(fmt::format("MPI provides thread level {}, kiln needs MPI_THREAD_FUNNELED", provided));
}

DataParallel::~DataParallel() {
  if (!mpi_) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

void DataParallel::set_max_chunk_bytes(std::int64_t bytes) {
  KILN_CHECK(bytes >= 8, "data parallel: chunks of {} bytes (expected at least 8)", bytes);
  max_chunk_bytes_ = bytes;
}

void DataParallel::average(float* data, std::int64_t n) {
  check_buffer(data, n, "average");
  if (!mpi_) return;
  const auto ranks = static_cast<float>(size_);
  for_each_chunk(data, n, max_chunk_bytes_, [ranks](float* p, int count) {
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, p, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
    // Divided while the chunk is still in cache, and divided rather than multiplied by 1/size:
    // the result is the correctly rounded quotient of the sum.
    for (int i = 0; i < count; ++i) p[i] /= ranks;
  });
}

void DataParallel::average(double* data, std::int64_t n) {
  check_buffer(data, n, "average");
  if (!mpi_) return;
  const auto ranks = static_cast<double>(size_);
  for_each_chunk(data, n, max_chunk_bytes_, [ranks](double* p, int count) {
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, p, count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
    for (int i = 0; i < count; ++i) p[i] /= ranks;
  });
}

void DataParallel::sum(double* data, std::int64_t n) {
  check_buffer(data, n, "sum");
  if (!mpi_) return;
  for_each_chunk(data, n, max_chunk_bytes_, [](double* p, int count) {
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, p, count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
  });
}

void DataParallel::broadcast(void* data, std::int64_t bytes, int root) {
  check_buffer(data, bytes, "broadcast");
  KILN_CHECK(root >= 0 && root < size_, "data parallel: broadcast from rank {} of {}", root, size_);
  if (!mpi_) return;
  for_each_chunk(static_cast<char*>(data), bytes, max_chunk_bytes_, [root](char* p, int count) {
    check_mpi(MPI_Bcast(p, count, MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
  });
}

void DataParallel::barrier() {
  if (!mpi_) return;
  check_mpi(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
}

void DataParallel::check_same(std::uint64_t value, const char* what) {
  if (!mpi_) return;
  if (what == nullptr) what = "a value";
  // Every rank gathers every value, so every rank sees the same disagreement and throws the same
  // error: none is left waiting in the next collective.
  std::vector<std::uint64_t> values(static_cast<std::size_t>(size_));
  check_mpi(MPI_Allgather(&value, 1, MPI_UINT64_T, values.data(), 1, MPI_UINT64_T, MPI_COMM_WORLD), "MPI_Allgather");
  std::string differing;
  int n_differing = 0;
  for (int r = 1; r < size_; ++r) {
    if (values[static_cast<std::size_t>(r)] == values[0]) continue;
    if (++n_differing <= 4) differing += fmt::format(", rank {} has {:#x}", r, values[static_cast<std::size_t>(r)]);
  }
  if (n_differing > 4) differing += fmt::format(" and {} more ranks differ", n_differing - 4);
  KILN_CHECK(n_differing == 0, "the ranks disagree on {}: rank 0 has {:#x}{}", what, values[0], differing);
}

void DataParallel::abort_job(std::exception_ptr error, int code) {
  std::string message = "unknown exception";
  try {
    if (error) std::rethrow_exception(error);
  } catch (const kiln::Error& e) {
    message = e.what();
  } catch (const std::exception& e) {
    message = std::string("internal error: ") + e.what();
  } catch (...) {
  }
  abort_job(message, code);
}

void DataParallel::abort_job(std::string_view message, int code) {
  std::fflush(stdout);
  if (!mpi_) {
    std::fprintf(stderr, "kiln: %.*s\n", static_cast<int>(message.size()), message.data());
    std::exit(code);
  }
  std::fprintf(stderr, "kiln: rank %d of %d: %.*s\n", rank_, size_, static_cast<int>(message.size()), message.data());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);  // MPI_Abort does not return; should it, this rank still stops
}

RankSlice rank_slice(int global_items, int rank, int size) {
  KILN_CHECK(size >= 1, "rank slice over {} ranks", size);
  KILN_CHECK(rank >= 0 && rank < size, "rank slice for rank {} of {}", rank, size);
  KILN_CHECK(global_items >= 0, "rank slice of {} items", global_items);
  const int base = global_items / size;
  const int extra = global_items % size;  // the first `extra` ranks take one more item
  return RankSlice{rank * base + std::min(rank, extra), base + (rank < extra ? 1 : 0)};
}

}  // namespace kiln::train
