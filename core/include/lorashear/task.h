#pragma once
// Context for long operations: a cancel flag and a progress callback, Qt-free (QGIS QgsFeedback
// style).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "lorashear/errors.h"

namespace lorashear {

/// One progress report. `total` may be 0 when unknown. `message` is short and human-readable.
struct Progress {
  std::string stage;
  int64_t done = 0;
  int64_t total = 0;
  std::string message;
};

/// Passed by pointer to long operations (nullptr means "no cancel, no progress").
/// The operation calls `check()` at step boundaries; `report()` may be called from the worker
/// thread, so the callback must be thread-safe on the receiving side.
struct TaskContext {
  const std::atomic<bool>* cancel = nullptr;
  /// While raised, the operation waits at its next step boundary (cancel still works).
  const std::atomic<bool>* pause = nullptr;
  std::function<void(const Progress&)> on_progress;

  bool cancelled() const { return cancel != nullptr && cancel->load(std::memory_order_relaxed); }
  bool paused() const { return pause != nullptr && pause->load(std::memory_order_relaxed); }
  /// Waits while paused, then throws CancelledError when the cancel flag is raised.
  void check() const {
    while (paused() && !cancelled())
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (cancelled()) throw CancelledError();
  }
  void report(const std::string& stage, int64_t done, int64_t total,
              const std::string& message = {}) const {
    if (on_progress) on_progress(Progress{stage, done, total, message});
  }
};

/// Null-safe helpers for optional contexts.
inline void task_check(const TaskContext* ctx) {
  if (ctx) ctx->check();
}
inline void task_report(const TaskContext* ctx, const std::string& stage, int64_t done,
                        int64_t total, const std::string& message = {}) {
  if (ctx) ctx->report(stage, done, total, message);
}

}  // namespace lorashear
