#include "core/thread_pool.h"

#include <immintrin.h>
#include <sched.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace kiln {
namespace {
// About 0.2 ms of spinning before a worker sleeps: long enough to bridge the gap between the
// parallel loops of one forward pass, short enough not to burn a core when idle.
constexpr int kSpinIterations = 4096;
// Every so many pauses a spinning thread yields its core: when there are more runnable threads
// than cores (a busy machine, or -t above the core count) the thread it waits for may need it.
constexpr int kYieldEvery = 64;

inline void spin_pause(int iteration) {
  if ((iteration & (kYieldEvery - 1)) == kYieldEvery - 1) sched_yield();
  else _mm_pause();
}

// Raw futex calls: libstdc++ 12's std::atomic::wait can lose a wake-up under this pattern.
void futex_wait(std::atomic<std::uint32_t>* addr, std::uint32_t expected) {
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(addr), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
}
void futex_wake_all(std::atomic<std::uint32_t>* addr) {
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(addr), FUTEX_WAKE_PRIVATE, 0x7fffffff, nullptr, nullptr, 0);
}
}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads <= 0) n_threads = static_cast<int>(std::thread::hardware_concurrency());
  if (n_threads <= 0) n_threads = 1;
  n_threads_ = n_threads;
  threads_.reserve(n_threads_ - 1);
  for (int w = 1; w < n_threads_; ++w) threads_.emplace_back([this, w] { worker_loop(w); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  futex_wake_all(&generation_);
  for (std::thread& t : threads_) t.join();
}

void ThreadPool::execute(int worker) {
  try {
    (*job_)(worker, n_threads_);
  } catch (...) {
    std::lock_guard<std::mutex> lock(error_mutex_);
    if (!error_) error_ = std::current_exception();
  }
}

void ThreadPool::run(const std::function<void(int, int)>& fn) {
  if (n_threads_ == 1) {
    fn(0, 1);
    return;
  }
  job_ = &fn;
  error_ = nullptr;
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  generation_.fetch_add(1);  // seq_cst: pairs with the sleepers_ increment below
  if (sleepers_.load() > 0) futex_wake_all(&generation_);
  execute(0);
  for (int i = 0; pending_.load(std::memory_order_acquire) != 0; ++i) spin_pause(i);
  job_ = nullptr;
  if (error_) std::rethrow_exception(error_);
}

void ThreadPool::worker_loop(int worker) {
  // Jobs are counted from the pool's construction: a worker that starts late must still see
  // a job that was posted before it first looked.
  std::uint32_t seen = 0;
  for (;;) {
    std::uint32_t now = seen;
    for (int i = 0; i < kSpinIterations; ++i) {
      now = generation_.load(std::memory_order_acquire);
      if (now != seen) break;
      spin_pause(i);
    }
    while (now == seen) {
      sleepers_.fetch_add(1);
      futex_wait(&generation_, seen);
      sleepers_.fetch_sub(1, std::memory_order_acq_rel);
      now = generation_.load(std::memory_order_acquire);
    }
    seen = now;
    if (stop_.load(std::memory_order_acquire)) return;
    execute(worker);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

}  // namespace kiln
