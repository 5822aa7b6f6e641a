#include "lorashear/runtime.h"

#include <dlfcn.h>
#include <torch/torch.h>

#include <algorithm>
#include <thread>

namespace lorashear {

namespace {

int g_threads = 1;

// OpenBLAS (Debian's libopenblas0-pthread) runs matrix products on its own pthread pool, while
// LibTorch's OpenMP workers spin for a while after every parallel region. With both pools sized to
// the cores they fight for them: measured on this 2-core machine (eval ppl, windows-512, batch 8),
//   LibTorch 2 threads + OpenBLAS 2 threads: stories260K 11-15K tokens/s, 50M model 730-800
//   LibTorch 2 threads + OpenBLAS 1 thread:  stories260K 19.6K,            50M model 670
//   LibTorch 1 thread  + OpenBLAS 2 threads: stories260K 18-24K,           50M model 870-990
// so the cores go to OpenBLAS (the matrix products dominate) and LibTorch's pool stays at one.
using SetBlasThreads = void (*)(int);
SetBlasThreads openblas_setter() {
  return reinterpret_cast<SetBlasThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
}

}  // namespace

void init_runtime(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  g_threads = threads;
  if (auto set_blas = openblas_setter()) {
    set_blas(threads);
    torch::set_num_threads(1);
  } else {
    torch::set_num_threads(threads);
  }
}

int runtime_threads() {
  return g_threads;
}

std::string runtime_description() {
  return std::to_string(g_threads) +
         (openblas_setter() ? " BLAS threads (OpenBLAS), " : " threads, ") +
         std::to_string(torch::get_num_threads()) + " LibTorch intra-op thread(s)";
}

WorkerThreadsScope::WorkerThreadsScope() {
  if (auto set_blas = openblas_setter()) set_blas(1);
  torch::set_num_threads(1);
}

WorkerThreadsScope::~WorkerThreadsScope() {
  init_runtime(g_threads);
}

std::string version() {
  return LORASHEAR_VERSION;
}

}  // namespace lorashear
