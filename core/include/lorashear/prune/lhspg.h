#pragma once
// LHSPG — LoRA Half-Space Projected Gradient (LORASHEAR.md §3): warm-up LoRA training, then P
// periods of T steps; at each period start the lowest-saliency variable groups (per node group, as
// the plan says) join the redundant set; every step, after AdamW on the LoRA factors, each
// redundant group's merged weight takes a trial step towards zero and is projected onto zero when
// it leaves the half-space <x_tilde, x> >= epsilon·||x||²; at each period end the groups still
// nonzero are set to zero (hard projection), so exactly the scheduled number is zero on time.

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "lorashear/graph/dependency.h"
#include "lorashear/model/llama.h"
#include "lorashear/prune/plan.h"
#include "lorashear/task.h"
#include "lorashear/train/windows.h"

namespace lorashear {

/// Steps 2–3 of §3.3 on a group of norm ||x||: the trial point x_tilde = x − eta·lambda·x /
/// max(||x||, tau) is (1 − c)·x, so <x_tilde, x> = (1 − c)·||x||². Returns the factor x_tilde / x,
/// or 0 when the trial point leaves the half-space <x_tilde, x> >= epsilon·||x||² (`projected`).
/// The rule run_lhspg applies to every redundant group.
double half_space_scale(double norm, double eta, double lambda, double epsilon, double tau,
                        bool* projected = nullptr);

/// half_space_scale applied to one group's vector.
torch::Tensor half_space_step(const torch::Tensor& x, double eta, double lambda, double epsilon,
                              double tau, bool* projected = nullptr);

/// How many of a node group's `count` scheduled removals happen in each of `periods` periods: as
/// even as possible, the remainder in the earliest periods (3 over 4 periods: 1, 1, 1, 0), so the
/// groups removed last are few and get the most training after them. LORASHEAR.md §3.1 gives the
/// remainder of K / P to the last period; per node group that put every removal of a node group
/// with fewer removals than periods (e.g. 3 of 4 kv groups) into the last period — a one-shot
/// cut with the least recovery (stories260K at 50%, 200 steps: held-out ppl 22.3 → 20.5).
std::vector<int64_t> spread_over_periods(int64_t count, int64_t periods);

struct LhspgOptions {
  /// lhspg, or a baseline on the same groups and plan (LORASHEAR.md §3.2): magnitude
  /// (||W_eff[g]||), random, taylor (|<W[g], grad_W f[g]>|, full-weight gradients, LLM-Pruner
  /// style), loraprune (sum |(grad_B·A + B·grad_A) ⊙ W_eff| over g). Baselines choose every group
  /// at once before training (gradients from one calibration batch), zero them, and spend the
  /// same number of steps on LoRA fine-tuning with the groups held at zero.
  std::string method = "lhspg";
  int64_t warmup_steps = 20;  ///< T_w: plain LoRA training before the first period
  int64_t periods = 4;        ///< P
  int64_t period_steps = 20;  ///< T
  /// LoRA training after the last period with the removed groups held at zero (§3.1: "recovery
  /// continues"), so the groups zeroed last are not left without training.
  int64_t recovery_steps = 0;
  int64_t batch_size = 8;
  double lr = 1e-3;  ///< AdamW on the LoRA factors (constant)
  double weight_decay = 0.0;
  double grad_clip = 1.0;  ///< max global L2 norm of the LoRA gradient; 0 = off
  double epsilon = 0.9;    ///< half-space threshold, in [0, 1)
  double lambda = 1e-2;    ///< base shrink strength
  double lambda_amp = 20;  ///< amp in the adaptive lambda_g
  double lambda_cmax = 1e3;
  double tau = 1e-8;
  /// Saliency = magnitude_weight · ||W_eff[g]|| / norm + taylor_weight · |<W[g], s·(B·A)[g]>| /
  /// norm, each normalised by its L2 norm over the candidates. The Taylor term is off by default:
  /// B·A is the gradient seen through A's random rank-r subspace of the inputs, a noisy estimate
  /// that made worse choices in every run we measured (stories260K, 20%: held-out ppl 7.09 with
  /// magnitude only vs 7.22 with both at 1000 steps; 50%: 12.13 vs 12.68).
  double magnitude_weight = 1.0;
  double taylor_weight = 0.0;

  int64_t total_steps() const { return warmup_steps + periods * period_steps + recovery_steps; }
  /// Splits a budget of `steps` over the stages with `periods` kept: 5% warm-up, 35% over the
  /// periods, 60% recovery (more recovery measured better than longer periods at equal budgets).
  /// Throws UsageError when the budget leaves a period without a step.
  void split_budget(int64_t steps);
  /// Throws UsageError naming the option.
  void validate() const;
};

/// What the optimiser reports after every step (called on the training thread).
struct LhspgMetrics {
  int64_t step = 0;  ///< 1-based
  int64_t total_steps = 0;
  int64_t period = 0;  ///< 0 during warm-up (and for baselines), 1..P, P + 1 in recovery
  double loss = 0;
  double lr = 0;
  int64_t redundant = 0;                   ///< groups selected so far
  int64_t zeroed = 0;                      ///< of those, exactly zero now
  int64_t scheduled = 0;                   ///< groups that must be zero at the end of this period
  int64_t target = 0;                      ///< K
  double lambda_mean = 0, lambda_max = 0;  ///< over redundant groups still shrinking
  double tokens_per_second = 0;
  std::map<std::string, double> sparsity;  ///< node group id → fraction of its groups zero
};

struct LhspgResult {
  std::vector<std::string> removed;       ///< variable group ids, in selection order
  int64_t zeroed_by_projection = 0;       ///< reached zero through the half-space step
  int64_t zeroed_by_hard_projection = 0;  ///< set to zero at a period end
  std::vector<int64_t> hard_per_period;
  double final_loss = 0;       ///< mean of the last min(10, steps) losses
  std::vector<double> losses;  ///< training loss of every step
  double seconds = 0;
  int64_t steps = 0;
};

/// Where and how often run_lhspg saves its state. A checkpoint is `dir/latest/` (model and adapter
/// tensors, AdamW state, the redundant set and counters), replaced atomically, so a run killed at
/// any moment resumes from its last checkpoint and ends with the same result as an uninterrupted
/// run (the data of step t depends only on the seed and t).
struct LhspgCheckpoint {
  std::string dir;       ///< empty: no checkpoints
  int64_t every = 0;     ///< steps between checkpoints; 0: none
  bool resume = false;   ///< continue from dir/latest if present
  std::string settings;  ///< the run's settings; a checkpoint of other settings is refused
};

/// Runs LHSPG on `model`, which must carry LoRA adapters (base weights are frozen here). `deps`
/// is the model's analysis; `plan` says how many groups leave each node group. On return the
/// removed groups are exactly zero (producing slices and their B rows) and `construct_subnet`
/// with `result.removed` gives the smaller model. Cancel via `ctx` (CancelledError).
LhspgResult run_lhspg(LlamaModelImpl& model, const DependencyGraph& deps, const ResolvedPlan& plan,
                      const WindowSampler& data, const LhspgOptions& options,
                      const TaskContext* ctx = nullptr,
                      const std::function<void(const LhspgMetrics&)>& on_step = {},
                      const LhspgCheckpoint& checkpoint = {});

}  // namespace lorashear
