#pragma once
// Data parallel subcommands (prune, recover, eval ppl|tasks, analyze): the ranks from RANK /
// WORLD_SIZE / MASTER_ADDR / MASTER_PORT (torchrun, `lorashear launch`) or Slurm's SLURM_PROCID /
// SLURM_NTASKS / … under srun, set up before the model loads.
#include <sched.h>

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

/// Sets up dist::current() from the environment (a no-op with one process) and returns the
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
  // Cores for this rank: the machine's over the ranks on it (LOCAL_WORLD_SIZE; Slurm: the CPUs
  // srun bound this task to, else SLURM_NTASKS_PER_NODE).
  long cores = static_cast<long>(std::thread::hardware_concurrency());
  long on_host = o.world_size;
  const auto positive = [](const char* v) { return v != nullptr && std::atol(v) > 0; };
  if (positive(std::getenv("LOCAL_WORLD_SIZE"))) {
    on_host = std::atol(std::getenv("LOCAL_WORLD_SIZE"));
  } else if (o.source == "slurm") {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0 &&
        CPU_COUNT(&set) < cores) {
      cores = CPU_COUNT(&set);
      on_host = 1;
    } else if (positive(std::getenv("SLURM_NTASKS_PER_NODE"))) {
      on_host = std::atol(std::getenv("SLURM_NTASKS_PER_NODE"));
    }
  }
  if (global.threads == 0 && std::getenv("OMP_NUM_THREADS") == nullptr)
    torch::set_num_threads(static_cast<int>(std::max<long>(1, cores / on_host)));
  dist::set_current(std::make_unique<dist::Distributed>(o));
  return o;
}

}  // namespace lorashear::cli
