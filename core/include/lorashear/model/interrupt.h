#pragma once
// Cancel inside long forward passes. While a ForwardInterrupt lives on a thread, the model's
// forward calls its TaskContext's check() between decoder layers, so a cancel (or a pause) stops a
// 7B forward within one layer instead of after a whole batch. A forward stopped this way leaves a
// KV cache it was filling unusable. Kept out of llama.h so that only the model and the code that
// installs an interrupt depend on it.

#include "lorashear/task.h"

namespace lorashear {

class ForwardInterrupt {
 public:
  explicit ForwardInterrupt(const TaskContext* ctx);
  ~ForwardInterrupt();
  ForwardInterrupt(const ForwardInterrupt&) = delete;
  ForwardInterrupt& operator=(const ForwardInterrupt&) = delete;
  /// The context of the innermost live interrupt on this thread, or null.
  static const TaskContext* current();

 private:
  const TaskContext* previous_;
};

}  // namespace lorashear
