// Work sharing and scratch memory for the CPU kernels.
#pragma once

#include <ATen/Parallel.h>
#include <pthread.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>

namespace ivr {
namespace cpu {

// Estimated values a call touches below which it runs on the calling thread (about half a
// millisecond on one core): waking another thread would cost more than it saves.
constexpr int64_t kSerialWork = int64_t(1) << 20;

// Whether this process is a fork of one that ran these kernels. The helper threads (below)
// do not survive a fork: they are gone, and their lock may have been held at the fork. Such
// a process (a DataLoader worker, say) runs the kernels on its calling thread.
inline bool forked_child() {
  static std::atomic<bool> forked{false};
  static const bool watching = [] {
    pthread_atfork(nullptr, nullptr, [] { forked.store(true); });
    return true;
  }();
  (void)watching;
  return forked.load();
}

// Work that helper threads may join: run() claims and runs items until none are left.
struct Job {
  virtual ~Job() = default;
  virtual void run() = 0;
};

// ivr's helper threads (created on first use, never destroyed). A call hands its Job to up
// to `wanted` of them; after a Job a helper spins for kSpin waiting for the next one before
// it sleeps, so that back-to-back calls (a forward, then its backward) find it awake: on
// this project's 2-core VM, a sleeping thread of torch's inter-op pool started 84 to 108 us
// after at::launch, a sixth of a 0.6 ms call (bench/README.md).
class Helpers {
 public:
  static Helpers& get() {
    static Helpers* helpers = new Helpers;  // leaked: helpers may run past static destruction
    return *helpers;
  }

  void offer(std::shared_ptr<Job> job, int64_t wanted) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (; count_ < wanted; ++count_) {
        try {
          std::thread([this] { loop(); }).detach();
        } catch (const std::system_error&) {  // no more threads: the callers run alone
          break;
        }
      }
      job_ = std::move(job);
      wanted_ = wanted;
      epoch_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
  }

 private:
  static constexpr auto kSpin = std::chrono::microseconds(200);

  void loop() {
    uint64_t seen = 0;
    for (;;) {
      const auto until = std::chrono::steady_clock::now() + kSpin;
      while (epoch_.load(std::memory_order_acquire) == seen &&
             std::chrono::steady_clock::now() < until) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
      }
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return epoch_.load() != seen; });
        seen = epoch_.load();
        if (wanted_ > 0) {
          --wanted_;
          job = job_;
        }
      }
      if (job) job->run();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<uint64_t> epoch_{0};
  std::shared_ptr<Job> job_;  // the last call's (its run() returns at once when it is done)
  int64_t wanted_ = 0;
  int64_t count_ = 0;  // helper threads started
};

// f(i) for every i in [0, n), on the calling thread and up to get_num_threads() - 1 helpers
// (Helpers above), items handed out one at a time from a shared counter.
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
  struct Shared : Job {
    explicit Shared(int64_t n, const F& f) : n(n), f(&f) {}
    const int64_t n;
    const F* f;  // used only while an item is unclaimed, i.e. before the call returns
    std::atomic<int64_t> next{0}, done{0};
    std::mutex mutex;
    std::condition_variable all_done;
    std::exception_ptr error;

    void run() override {
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
  Helpers::get().offer(shared, helpers);
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
