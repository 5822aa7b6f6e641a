#pragma once
// Data parallelism on LibTorch's own distributed stack (c10d): a TCPStore rendezvous and
// ProcessGroupGloo collectives on the CPU. The ranks come from the variables torchrun sets (RANK,
// WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) or, where those are absent, from Slurm's
// (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_STEP_NODELIST under srun), so the usual
// launchers work. Without any (or with a world size of 1) everything here is a no-op on one
// process. Builds without Gloo's headers (libgloo-dev) have no distributed support: a world size
// above 1 is then an error saying so.
//
// Every rank must call the collectives in the same order with tensors of the same shapes.
// A rank that dies or hangs: each rank beats a heartbeat into the store (a background thread, a few
// bytes every timeout/30 s, clamped to 0.2..2 s); when a collective fails or times out, the ranks
// still alive read the others' heartbeats and name the rank(s) that stopped in a one-line Error.
//
// CUDA tensors: with ProcessGroupNCCL (a LibTorch built with CUDA whose c10d NCCL header and nccl.h
// were found at configure time: LORASHEAR_HAVE_NCCL) they are reduced and broadcast on the device;
// otherwise through host memory (Gloo). The NCCL path compiles only against such a LibTorch and
// has never run on the machines this project is built and tested on (Debian's LibTorch has no
// CUDA); NCCL's own watchdog enforces the timeout there.

#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace lorashear::dist {

/// One environment variable by name; std::nullopt when it is not set.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;
/// The process's environment (std::getenv).
EnvLookup process_environment();

/// The first host of a Slurm host list: "node[01-04,07]" -> "node01", "a,b" -> "a",
/// "rack[1-2]-gpu[3,5]" -> "rack1-gpu3". Throws UsageError naming `variable` when the list is
/// empty or not in Slurm's compressed form (unbalanced brackets, a range that is not digits).
std::string slurm_first_host(const std::string& nodelist,
                             const std::string& variable = "SLURM_JOB_NODELIST");

/// MASTER_PORT under Slurm when it is not set: 29500 + SLURM_JOB_ID % 1000 (so that two jobs
/// sharing a node rarely meet; concurrent steps of one job must set MASTER_PORT).
constexpr int kSlurmPortBase = 29500;

struct DistOptions {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  /// Where the ranks came from: "" (one process), "env" (RANK, WORLD_SIZE, …) or "slurm".
  std::string source;
  /// Rendezvous and every collective: a rank that died or hangs stops the others after this long.
  std::chrono::milliseconds timeout{std::chrono::minutes(10)};

  /// Each of the five values from its torchrun variable when set, else from Slurm's:
  ///   WORLD_SIZE  <- SLURM_STEP_NUM_TASKS, SLURM_NTASKS (only with SLURM_PROCID: under srun)
  ///   RANK        <- SLURM_PROCID
  ///   LOCAL_RANK  <- SLURM_LOCALID (default: the rank)
  ///   MASTER_ADDR <- the first host of SLURM_STEP_NODELIST, SLURM_JOB_NODELIST or SLURM_NODELIST
  ///                  (srun places task 0 there); default 127.0.0.1
  ///   MASTER_PORT <- kSlurmPortBase + SLURM_JOB_ID % 1000
  /// No world size from either: one process. Throws UsageError (one line, naming the variable)
  /// on a non-number, a rank not below the world size, a missing port with a world size above 1,
  /// a port out of range, a host list that cannot be read. `env`: empty = the process's.
  static DistOptions from_env(std::chrono::milliseconds timeout = std::chrono::minutes(10),
                              const EnvLookup& env = {});
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
  /// In place: `tensor` becomes the sum over the ranks. Parts that each rank fills alone (zeros
  /// elsewhere) in float64 combine exactly, in the order of one process.
  void allreduce_sum(torch::Tensor& tensor);
  double allreduce_mean(double value) { return allreduce_sum(value) / world_size(); }
  /// In place: `tensor` becomes root's.
  void broadcast(torch::Tensor& tensor, int root = 0);
  void barrier();
  /// Resuming: throws UsageError naming `checkpoint` when it was written by a run on another
  /// number of processes (the data of step t is split by the world size).
  void require_world_size(int64_t written_by, const std::string& checkpoint) const;

  /// What this rank has just finished, named if it stops answering ("pruning step 25"): one
  /// small store write (cheap enough once per training step). Any thread.
  void note_progress(const std::string& what);
  /// Appended to the error of a failed collective (e.g. where the last checkpoint is).
  void set_failure_hint(std::string hint);
  /// Collectives this rank has completed.
  int64_t completed_collectives() const { return completed_.load(); }

  /// Buckets of the last allreduce_mean call, in elements.
  const std::vector<int64_t>& last_buckets() const { return last_buckets_; }
  int64_t bucket_bytes = 25 << 20;

 private:
  struct Impl;
  DistOptions options_;
  std::vector<int64_t> last_buckets_;
  std::atomic<int64_t> completed_{0};
  std::chrono::steady_clock::time_point op_started_{};
  mutable std::mutex note_mutex_;
  std::string failure_hint_;
  // Last, so that it goes first: its heartbeat thread reads completed_.
  std::unique_ptr<Impl> impl_;
  void begin_op();
  void end_op() { ++completed_; }
  /// After a failed collective: who stopped answering, from the store ("" when unknown).
  std::string diagnose();
  [[noreturn]] void fail(const std::string& op, const std::exception& e);
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
