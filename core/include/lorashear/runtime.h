#pragma once
// Process-wide runtime settings for LibTorch.

#include <string>

namespace lorashear {

/// Sets LibTorch's intra-op thread count (0 = number of cores; LibTorch may pick 1 otherwise).
/// Call once at start-up from the main thread.
void init_runtime(int threads = 0);

/// Number of intra-op threads LibTorch will use.
int runtime_threads();

/// Library version string, e.g. "0.1.0".
std::string version();

}  // namespace lorashear
