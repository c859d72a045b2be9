#pragma once
// An explicit pool of worker threads. The calling thread takes part as worker 0, so a pool of
// n threads starts n-1 background threads. Workers spin briefly between jobs (a forward pass
// issues hundreds of short parallel loops per token) and then sleep on a futex.
//
//   ThreadPool pool(2);
//   pool.parallel_for(n_rows, [&](std::int64_t row, int worker) { ... });
//   pool.run([&](int worker, int n_workers) { ... static split ... });
#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace kiln {

class ThreadPool {
 public:
  // n_threads <= 0 means the number of hardware threads.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Calls fn(worker, n_workers) once on every worker, the caller included, and returns when
  // all are done. The first exception thrown by any worker is rethrown here.
  void run(const std::function<void(int worker, int n_workers)>& fn);

  // Calls fn(i, worker) for every i in [0, n), handing out chunks of `grain` indices
  // dynamically so that uneven work balances.
  template <typename Fn>
  void parallel_for(std::int64_t n, Fn&& fn, std::int64_t grain = 1) {
    if (n <= 0) return;
    if (n_threads_ == 1 || n <= grain) {
      for (std::int64_t i = 0; i < n; ++i) fn(i, 0);
      return;
    }
    std::atomic<std::int64_t> next{0};
    run([&](int worker, int) {
      for (;;) {
        std::int64_t begin = next.fetch_add(grain, std::memory_order_relaxed);
        if (begin >= n) break;
        std::int64_t end = begin + grain < n ? begin + grain : n;
        for (std::int64_t i = begin; i < end; ++i) fn(i, worker);
      }
    });
  }

 private:
  void worker_loop(int worker);
  void execute(int worker);

  int n_threads_;
  std::vector<std::thread> threads_;
  const std::function<void(int, int)>* job_ = nullptr;
  std::atomic<std::uint32_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
  std::mutex error_mutex_;
  std::exception_ptr error_;
};

// Splits [0, n) into n_parts nearly equal contiguous ranges, aligned to `align` where possible;
// returns part `part` as [begin, end).
inline void split_range(std::int64_t n, int part, int n_parts, std::int64_t align, std::int64_t* begin,
                        std::int64_t* end) {
  std::int64_t units = (n + align - 1) / align;
  std::int64_t b = units * part / n_parts * align;
  std::int64_t e = units * (part + 1) / n_parts * align;
  *begin = b < n ? b : n;
  *end = e < n ? e : n;
}

}  // namespace kiln
