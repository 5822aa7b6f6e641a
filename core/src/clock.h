#pragma once
// The reports' timings: seconds on the steady clock.
#include <chrono>

namespace lorashear {

/// Seconds from t0 to now.
inline double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace lorashear
