#include "lorashear/runtime.h"

#include <torch/torch.h>

#include <thread>

namespace lorashear {

void init_runtime(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(threads);
}

int runtime_threads() { return torch::get_num_threads(); }

std::string version() { return LORASHEAR_VERSION; }

}  // namespace lorashear
