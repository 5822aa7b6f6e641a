#pragma once
// Data parallel subcommands (prune, recover): the ranks from RANK / WORLD_SIZE / MASTER_ADDR /
// MASTER_PORT (torchrun, Slurm wrappers, `lorashear launch`), set up before the model loads.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cli_common.h"
#include "lorashear/dist/distributed.h"
#include "lorashear/errors.h"

namespace lorashear::cli {

/// Sets up dist::current() from the environment (a no-op without WORLD_SIZE > 1) and returns the
/// options read. `batches`: (option name, batch size) pairs that must split evenly over the ranks.
/// The ranks on this machine share its cores unless --threads or OMP_NUM_THREADS say otherwise.
inline dist::DistOptions init_distributed(
    double timeout_seconds, const GlobalOptions& global,
    const std::vector<std::pair<std::string, int64_t>>& batches) {
  if (!(timeout_seconds > 0)) throw UsageError("--dist-timeout must be positive (seconds)");
  const auto o =
      dist::DistOptions::from_env(std::chrono::milliseconds(std::llround(timeout_seconds * 1000)));
  if (o.world_size <= 1) return o;
  for (const auto& [name, batch] : batches)
    if (batch % o.world_size != 0)
      throw UsageError(name + " " + std::to_string(batch) +
                       " does not split evenly over WORLD_SIZE=" + std::to_string(o.world_size) +
                       " ranks (give a multiple of " + std::to_string(o.world_size) + ")");
  const char* local_world = std::getenv("LOCAL_WORLD_SIZE");
  const long on_host =
      local_world != nullptr && std::atol(local_world) > 0 ? std::atol(local_world) : o.world_size;
  if (global.threads == 0 && std::getenv("OMP_NUM_THREADS") == nullptr)
    torch::set_num_threads(static_cast<int>(
        std::max<long>(1, static_cast<long>(std::thread::hardware_concurrency()) / on_host)));
  dist::set_current(std::make_unique<dist::Distributed>(o));
  return o;
}

}  // namespace lorashear::cli
