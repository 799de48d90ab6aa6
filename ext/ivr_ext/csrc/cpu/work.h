// Work sharing and scratch memory for the CPU kernels.
#pragma once

#include <ATen/Parallel.h>
#include <pthread.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>

namespace ivr {
namespace cpu {

// Estimated values a call touches below which it runs on the calling thread (about half a
// millisecond on one core): waking another thread would cost more than it saves.
constexpr int64_t kSerialWork = int64_t(1) << 20;

// Whether this process is a fork of one that ran these kernels. torch's inter-op pool does
// not survive a fork: its threads are gone and signalling its condition variable, which a
// thread was waiting on at the fork, hangs. Such a process (a DataLoader worker, say) runs
// the kernels on its calling thread.
inline bool forked_child() {
  static std::atomic<bool> forked{false};
  static const bool watching = [] {
    pthread_atfork(nullptr, nullptr, [] { forked.store(true); });
    return true;
  }();
  (void)watching;
  return forked.load();
}

// f(i) for every i in [0, n), on the calling thread and up to get_num_threads() - 1 helpers
// from torch's inter-op pool, items handed out one at a time from a shared counter.
//
// Why not at::parallel_for (OpenMP): its team joins at a barrier, so a call lasts until
// every thread has arrived; libgomp's threads spin between regions, and where other
// processes hold the cores a spinning thread waits for a time slice before it can even
// start (on this project's shared 2-core machine that made a 0.5 ms op take 25 ms).
// Here the caller never waits for a helper that has not started: it claims the remaining
// items itself and waits only for items already running. A helper that starts late finds
// nothing left and returns; the shared state outlives the call for it. `work` estimates
// the values the call touches (see kSerialWork).
template <typename F>
void parallel_items(int64_t n, int64_t work, const F& f) {
  if (n <= 0) return;
  const int64_t helpers = std::min<int64_t>(n, at::get_num_threads()) - 1;
  if (helpers <= 0 || work < kSerialWork || at::in_parallel_region() || forked_child()) {
    for (int64_t i = 0; i < n; ++i) f(i);
    return;
  }
  struct Shared {
    explicit Shared(int64_t n, const F& f) : n(n), f(&f) {}
    const int64_t n;
    const F* f;  // used only while an item is unclaimed, i.e. before the call returns
    std::atomic<int64_t> next{0}, done{0};
    std::mutex mutex;
    std::condition_variable all_done;
    std::exception_ptr error;

    void run() {
      for (int64_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) {
        try {
          (*f)(i);
        } catch (...) {
          std::lock_guard<std::mutex> lock(mutex);
          if (!error) error = std::current_exception();
        }
        if (done.fetch_add(1) + 1 == n) {
          std::lock_guard<std::mutex> lock(mutex);
          all_done.notify_all();
        }
      }
    }
  };
  auto shared = std::make_shared<Shared>(n, f);
  for (int64_t t = 0; t < helpers; ++t) at::launch([shared] { shared->run(); });
  shared->run();
  std::unique_lock<std::mutex> lock(shared->mutex);
  shared->all_done.wait(lock, [&] { return shared->done.load() == n; });
  if (shared->error) std::rethrow_exception(shared->error);
}

// f(begin, end) over [0, n) in chunks of `grain`, as parallel_items.
template <typename F>
void parallel_ranges(int64_t n, int64_t grain, int64_t work, const F& f) {
  const int64_t chunks = (n + grain - 1) / grain;
  parallel_items(chunks, work, [&](int64_t i) { f(i * grain, std::min(n, (i + 1) * grain)); });
}

// A per-thread buffer of at least n elements of T, 64-byte aligned, kept for the thread's
// next call (grown, never shrunk; its contents are not preserved across a growth).
template <typename T>
T* thread_scratch(int64_t n) {
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  static thread_local std::unique_ptr<T, Free> buffer;
  static thread_local int64_t capacity = 0;
  if (n > capacity) {
    const size_t bytes = (static_cast<size_t>(n) * sizeof(T) + 63) / 64 * 64;
    buffer.reset(static_cast<T*>(std::aligned_alloc(64, bytes)));
    TORCH_CHECK(buffer, "ivr: out of memory for a ", bytes, "-byte scratch buffer");
    capacity = n;
  }
  return buffer.get();
}

}  // namespace cpu
}  // namespace ivr
