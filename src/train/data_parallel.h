#pragma once
// Data-parallel training: N processes hold the same parameters, each runs forward and backward
// on its own slice of the global batch, and one all-reduce averages the contiguous gradient
// buffer (parameter_table.h) before every rank takes the same optimizer step. The processes are
// started by an MPI launcher (`mpirun -np N kiln train ...`); without one, kiln is a single
// process of rank 0 and never initialises MPI, so `kiln train` and every other command run
// without a launcher and without paying for MPI.
#include <cstdint>
#include <exception>
#include <string_view>

namespace kiln::train {

// Whether this process was started by an MPI launcher: Open MPI's mpirun sets
// OMPI_COMM_WORLD_SIZE, PMIx launchers (mpirun, srun --mpi=pmix) PMIX_RANK, PMI-1/2 launchers
// PMI_SIZE.
bool launched_by_mpi();

// The processes training one model together. A run started by mpirun joins MPI_COMM_WORLD;
// any other run is one process of rank 0 that never touches MPI. Every collective (average, sum,
// broadcast, barrier, check_same) must be called by every rank, in the same order and with the
// same sizes, from the thread that first called instance() (MPI is initialised with
// MPI_THREAD_FUNNELED: kiln's worker threads never call MPI).
class DataParallel {
 public:
  // Initialises MPI on first use when launched by mpirun; MPI is finalised at exit.
  static DataParallel& instance();

  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;
  ~DataParallel();

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool is_root() const { return rank_ == 0; }
  // True when this process is one of several (MPI initialised and more than one rank).
  bool multi_rank() const { return size_ > 1; }

  // Sum over ranks, then divide by size(), in place: MPI_Allreduce (MPI_IN_PLACE) over the whole
  // buffer, in chunks of at most max_chunk_bytes().
  void average(float* data, std::int64_t n);
  void average(double* data, std::int64_t n);  // loss, token counts
  void sum(double* data, std::int64_t n);
  // Copies `bytes` bytes from rank `root` to every other rank (the initial weights, a resumed
  // checkpoint's state).
  void broadcast(void* data, std::int64_t bytes, int root = 0);
  void barrier();
  // Throws kiln::Error on every rank unless every rank passed the same value (a hash of the
  // config, the data, the parameter count); the message names `what` and the ranks that differ.
  void check_same(std::uint64_t value, const char* what);

  // Runs `body`. In a multi-rank run an exception from it must not leave the other ranks waiting
  // in a collective forever: it is printed as one line naming the rank ("kiln: rank 1 of 4:
  // ...") and the whole job is ended with MPI_Abort(1). In a single-process run the exception
  // propagates unchanged, so the front end reports it as for any other command.
  template <typename Body>
  void run(Body&& body) {
    if (!multi_rank()) {
      body();
      return;
    }
    try {
      body();
    } catch (...) {
      abort_job(std::current_exception());
    }
  }
  // Prints the exception (or `message`) with this rank and ends every rank of the job with exit
  // code `code` (MPI_Abort). In a single-process run: prints "kiln: <message>" and exits.
  [[noreturn]] void abort_job(std::exception_ptr error, int code = 1);
  [[noreturn]] void abort_job(std::string_view message, int code = 1);

  // The most bytes one MPI call carries (and never more than INT_MAX items: MPI counts are int).
  // 4 MiB by default: Open MPI's all-reduce takes scratch memory in proportion to the message, and
  // glibc maps an allocation above 32 MiB afresh each time, so one call over a whole gradient
  // buffer faults its scratch pages in on every step; chunks reuse the same scratch. With 2 ranks
  // on a 2-core VM, averaging 50M floats (bench/data_parallel_bench) took about 500 ms and 24k
  // page faults per call in one MPI call, about 60-80 ms and none in 4 MiB chunks. Tests lower it
  // to exercise the chunking on small buffers.
  std::int64_t max_chunk_bytes() const { return max_chunk_bytes_; }
  void set_max_chunk_bytes(std::int64_t bytes);

 private:
  DataParallel();

  bool mpi_ = false;  // MPI_Init ran (launched by mpirun)
  int rank_ = 0;
  int size_ = 1;
  std::int64_t max_chunk_bytes_ = std::int64_t{4} << 20;
};

// The contiguous part of `global_items` items that rank `rank` of `size` takes: ranks in order,
// counts differing by at most one (the first global_items % size ranks take one more), covering
// every item exactly once. Throws kiln::Error on a negative count, size < 1 or rank outside
// [0, size).
//
// `kiln train` requires the global batch (in windows) to divide evenly by the number of ranks:
// then every rank's micro-batch has the same size, and the average of the ranks' mean gradients
// equals the mean gradient of the whole batch that a single process would compute. (That holds
// while every rank's mean is over the same number of targets; ranks whose windows held different
// numbers of ignored positions would each scale their gradient by size × own / total targets.)
struct RankSlice {
  int begin = 0;
  int count = 0;
};
RankSlice rank_slice(int global_items, int rank, int size);

}  // namespace kiln::train
