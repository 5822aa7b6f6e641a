#pragma once
// Data parallelism on LibTorch's own distributed stack (c10d): a TCPStore rendezvous and
// ProcessGroupGloo collectives on the CPU. The ranks come from the variables torchrun and the
// Slurm wrappers set (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), so the usual
// launchers work. Without WORLD_SIZE (or with WORLD_SIZE=1) everything here is a no-op on one
// process. Builds without Gloo's headers (libgloo-dev) have no distributed support: a WORLD_SIZE
// above 1 is then an error saying so.
//
// Every rank must call the collectives in the same order with tensors of the same shapes.
// Tensors on a CUDA device are reduced through host memory (Gloo); a ProcessGroupNCCL path is not
// wired (Debian's LibTorch has none to test it with).

#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lorashear::dist {

struct DistOptions {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  /// Rendezvous and every collective: a rank that died or hangs stops the others after this long.
  std::chrono::milliseconds timeout{std::chrono::minutes(10)};

  /// From RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT (torchrun, Slurm wrappers).
  /// WORLD_SIZE absent: one process. Throws UsageError (one line) on a non-number, a rank not
  /// below the world size, a missing MASTER_PORT with WORLD_SIZE > 1, a port out of range.
  static DistOptions from_env(std::chrono::milliseconds timeout = std::chrono::minutes(10));
};

/// Whether this build has distributed support (Gloo's headers were found at configure time).
bool available();

class Distributed {
 public:
  /// One process: every collective is a no-op.
  Distributed();
  /// Rendezvous with the other ranks (rank 0 serves the TCPStore on MASTER_PORT). Throws Error
  /// (one line) when the port is busy, the master cannot be reached within the timeout, or this
  /// build has no distributed support.
  explicit Distributed(const DistOptions& options);
  ~Distributed();
  Distributed(const Distributed&) = delete;
  Distributed& operator=(const Distributed&) = delete;

  int rank() const { return options_.rank; }
  int world_size() const { return options_.world_size; }
  int local_rank() const { return options_.local_rank; }
  bool active() const { return options_.world_size > 1; }
  bool is_root() const { return options_.rank == 0; }
  const DistOptions& options() const { return options_; }

  /// In place: each tensor becomes the mean over the ranks. Undefined tensors are skipped (every
  /// rank must have the same ones defined). The tensors are flattened into buckets of at most
  /// `bucket_bytes` (one tensor larger than that is a bucket of its own), one all-reduce each.
  void allreduce_mean(std::vector<torch::Tensor>& tensors);
  double allreduce_sum(double value);
  double allreduce_mean(double value) { return allreduce_sum(value) / world_size(); }
  /// In place: `tensor` becomes root's.
  void broadcast(torch::Tensor& tensor, int root = 0);
  void barrier();
  /// Resuming: throws UsageError naming `checkpoint` when it was written by a run on another
  /// number of processes (the data of step t is split by the world size).
  void require_world_size(int64_t written_by, const std::string& checkpoint) const;

  /// Buckets of the last allreduce_mean call, in elements.
  const std::vector<int64_t>& last_buckets() const { return last_buckets_; }
  int64_t bucket_bytes = 25 << 20;

 private:
  struct Impl;
  DistOptions options_;
  std::unique_ptr<Impl> impl_;
  std::vector<int64_t> last_buckets_;
  [[noreturn]] void fail(const std::string& op, const std::exception& e) const;
};

/// The process's context: one process unless `set_current` installed another. The engine's data
/// parallel code (run_lhspg, …) reads it.
Distributed& current();
void set_current(std::unique_ptr<Distributed> context);

/// Rows [rank·B/W, (rank+1)·B/W) of a batch of B rows. Throws UsageError naming both numbers when
/// W does not divide B (`what` names the option, e.g. "--batch").
torch::Tensor shard_rows(const torch::Tensor& batch, const Distributed& d,
                         const std::string& what = "the batch size");

/// Averages the gradients of `params` over the ranks (no-op on one process).
void allreduce_gradients(const std::vector<torch::Tensor>& params, Distributed& d);

}  // namespace lorashear::dist
