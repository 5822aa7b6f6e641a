#pragma once
// Process-wide runtime settings for LibTorch.

#include <string>

namespace lorashear {

/// Gives the engine `threads` cores (0 = all). With OpenBLAS present the matrix products get them
/// through OpenBLAS's pool and LibTorch's own OpenMP pool is kept at one thread (the two pools
/// fight for the cores otherwise; figures in runtime.cpp); without it LibTorch gets them. Call once
/// at start-up from the main thread.
void init_runtime(int threads = 0);

/// Threads given to the engine by init_runtime.
int runtime_threads();
/// One line, e.g. "2 BLAS threads (OpenBLAS), 1 LibTorch intra-op thread(s)".
std::string runtime_description();

/// While alive, the engine's work is spread over `workers` threads of its own (each running whole
/// forward passes, as task scoring does for small models, where one pass is too little work to
/// split): OpenBLAS and LibTorch run one thread each inside them. Restores init_runtime's settings.
/// Not nestable; create it on the thread that called init_runtime.
class WorkerThreadsScope {
 public:
  WorkerThreadsScope();
  ~WorkerThreadsScope();
  WorkerThreadsScope(const WorkerThreadsScope&) = delete;
  WorkerThreadsScope& operator=(const WorkerThreadsScope&) = delete;
};

/// The CPU attention kernel in use: "avx512", "avx2" or "baseline" in an x86-64 build (the best
/// this CPU runs, chosen at first use; the environment variable
/// LORASHEAR_CPU_KERNEL=baseline|avx2|avx512 forces one), "native" in a build configured with
/// -DLORASHEAR_NATIVE_KERNELS=ON, "baseline" on other architectures. Throws UsageError when
/// LORASHEAR_CPU_KERNEL names a variant this CPU or build lacks.
std::string cpu_kernel_variant();

/// Library version string, e.g. "0.1.0".
std::string version();

}  // namespace lorashear
