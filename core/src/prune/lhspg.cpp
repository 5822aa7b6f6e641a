#include "lorashear/prune/lhspg.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "lorashear/dist/distributed.h"
#include "lorashear/errors.h"
#include "lorashear/io/archive.h"
#include "lorashear/io/checkpoint.h"
#include "lorashear/io/files.h"
#include "lorashear/io/safetensors.h"
#include "lorashear/train/state.h"

namespace lorashear {

double half_space_scale(double norm, double eta, double lambda, double epsilon, double tau,
                        bool* projected) {
  const double keep = 1.0 - eta * lambda / std::max(norm, tau);
  const bool zero = norm == 0 || keep * norm * norm < epsilon * norm * norm;
  if (projected != nullptr) *projected = zero;
  return zero ? 0.0 : keep;
}

torch::Tensor half_space_step(const torch::Tensor& x, double eta, double lambda, double epsilon,
                              double tau, bool* projected) {
  return x * half_space_scale(x.norm().item<double>(), eta, lambda, epsilon, tau, projected);
}

std::vector<int64_t> spread_over_periods(int64_t count, int64_t periods) {
  std::vector<int64_t> out(static_cast<size_t>(std::max<int64_t>(periods, 0)), 0);
  for (int64_t p = 0; p < periods; ++p)
    out[static_cast<size_t>(p)] = count / periods + (p < count % periods ? 1 : 0);
  return out;
}

void LhspgOptions::split_budget(int64_t steps) {
  if (periods < 1) throw UsageError("there must be at least one pruning period");
  period_steps = (steps * 35 / 100) / periods;
  recovery_steps = steps * 60 / 100;
  warmup_steps = steps - periods * period_steps - recovery_steps;
  if (period_steps < 1)
    throw UsageError("a budget of " + std::to_string(steps) + " steps is too small for " +
                     std::to_string(periods) +
                     " periods (35% of it goes to the periods: give at least " +
                     std::to_string((periods * 100 + 34) / 35) + " steps, or fewer periods)");
}

void LhspgOptions::validate() const {
  auto need = [](bool ok, const std::string& what) {
    if (!ok) throw UsageError(what);
  };
  need(method == "lhspg" || method == "magnitude" || method == "random" || method == "taylor" ||
           method == "loraprune",
       "method '" + method + "': expected lhspg, magnitude, random, taylor or loraprune");
  need(warmup_steps >= 0, "warm-up steps must be >= 0");
  need(recovery_steps >= 0, "recovery steps must be >= 0");
  need(periods >= 1, "there must be at least one pruning period");
  need(period_steps >= 1, "a period needs at least one step");
  need(batch_size >= 1, "batch size must be >= 1");
  need(lr > 0, "learning rate must be positive");
  need(epsilon >= 0 && epsilon < 1, "epsilon must be in [0, 1)");
  need(lambda > 0, "lambda must be positive");
  need(tau > 0, "tau must be positive");
  need(magnitude_weight >= 0 && taylor_weight >= 0 && magnitude_weight + taylor_weight > 0,
       "saliency weights must be >= 0 and not both zero");
}

namespace {

// One parameter slice of a node group, bound to the live tensors.
struct BoundSlice {
  std::string name;     // the parameter's name
  torch::Tensor param;  // base weight or bias
  int dim = 0;
  bool producing = true;
  LinearImpl* linear = nullptr;   // for weights with an adapter: A, B and the scaling
  std::vector<int64_t> group_of;  // per index along dim: variable group, or -1
  // bf16 / fp16 weights: fp32 copies of the rows under projection (`shadow_rows`, ascending).
  // The trial point shrinks a group by factors like 0.99 each step, which a 16-bit weight would
  // round away; the weight gets each step's result rounded, the next step starts from the copy.
  torch::Tensor shadow;
  std::vector<int64_t> shadow_rows;
};

bool low_precision(const torch::Tensor& t) {
  return t.scalar_type() == torch::kBFloat16 || t.scalar_type() == torch::kFloat16;
}

// Rows `rows` (ascending; `idx` on the device) of a producing slice as LHSPG's trial point starts
// from them: the weight's own rows, or for a 16-bit weight their fp32 copies (rows new to the set
// are read from the weight, rows that left it are dropped).
torch::Tensor base_rows(BoundSlice& s, const std::vector<int64_t>& rows, const torch::Tensor& idx) {
  if (!low_precision(s.param)) return s.param.index_select(0, idx);
  if (rows == s.shadow_rows) return s.shadow;
  auto fresh = s.param.index_select(0, idx).to(torch::kFloat32);
  std::vector<int64_t> dst, src;
  for (size_t i = 0, j = 0; i < rows.size() && j < s.shadow_rows.size();) {
    if (rows[i] == s.shadow_rows[j]) {
      dst.push_back(static_cast<int64_t>(i++));
      src.push_back(static_cast<int64_t>(j++));
    } else if (rows[i] < s.shadow_rows[j]) {
      ++i;
    } else {
      ++j;
    }
  }
  if (!dst.empty())
    fresh.index_copy_(
        0, torch::tensor(dst, torch::kLong).to(fresh.device()),
        s.shadow.index_select(0, torch::tensor(src, torch::kLong).to(fresh.device())));
  s.shadow = fresh;
  s.shadow_rows = rows;
  return s.shadow;
}

struct Tracked {
  size_t node_group = 0;
  const NodeGroup* group = nullptr;
  std::vector<BoundSlice> slices;
  std::vector<int64_t> per_period;  // selections per period
  std::vector<char> selected, zero;
  int64_t remove = 0;
};

// W + s·B·A for a weight slice (all of it), or the tensor itself.
torch::Tensor effective(const BoundSlice& s) {
  if (s.linear != nullptr && s.linear->lora_A && s.dim >= 0 && s.param.dim() == 2)
    return s.param + s.linear->lora_scaling *
                         torch::matmul(s.linear->lora_B->weight, s.linear->lora_A->weight);
  return s.param;
}

// Where a step falls in the schedule (LORASHEAR.md §3.1).
struct StepPhase {
  int64_t period = 0;     // 0: warm-up (and baselines); 1..P: pruning periods; P + 1: recovery
  bool pruning = false;   // one of the P periods
  int64_t in_period = 0;  // 0-based step inside the period
};

// The redundant groups still shrinking at a step (selected, not yet zero) and their rows in every
// producing slice.
struct ShrinkingGroups {
  struct Group {
    size_t t;
    int64_t k;
  };
  struct Rows {
    size_t t;
    BoundSlice* s;
    std::vector<int64_t> host;  // the rows, ascending
    torch::Tensor idx, owner;   // the rows, and the index in `groups` of each, on the device
  };
  std::vector<Group> groups;
  std::vector<Rows> rows;
};

// x = W[g] + s·(B·A)[g] of the shrinking groups: per producing slice, and ||x|| per group.
struct TrialPoints {
  std::vector<torch::Tensor> xs;  // per ShrinkingGroups::rows entry
  std::vector<double> norms;      // per ShrinkingGroups::groups entry
};

// One run of LHSPG (LORASHEAR.md §3): its state, and Algorithm 1's steps as member functions in
// the order run() takes them.
struct LhspgRun {
  LhspgRun(LlamaModelImpl& model, const DependencyGraph& deps, const ResolvedPlan& plan,
           const WindowSampler& data, const LhspgOptions& o, const TaskContext* ctx,
           const std::function<void(const LhspgMetrics&)>& on_step,
           const LhspgCheckpoint& checkpoint);

  LhspgResult run();

  StepPhase phase_of(int64_t step) const;
  std::vector<torch::Tensor> calibration_gradients();
  std::pair<std::vector<double>, std::vector<double>> criteria(const Tracked& t) const;
  std::vector<std::vector<double>> scores();
  void select(const std::function<int64_t(const Tracked&)>& count);
  void prune_at_once();
  void select_for_period(int64_t period);
  torch::Tensor backward(const torch::Tensor& batch);
  ShrinkingGroups shrinking_groups();
  std::vector<double> gradient_dots(ShrinkingGroups& shrinking);
  TrialPoints trial_points(ShrinkingGroups& shrinking);
  double adaptive_lambda(double norm, double dot, int64_t steps_left) const;
  void write_back(ShrinkingGroups& shrinking, const TrialPoints& trial,
                  const std::vector<double>& keep);
  std::vector<double> shrink_redundant_groups(ShrinkingGroups& shrinking,
                                              const std::vector<double>& dots, int64_t in_period);
  void zero_selected_rows(bool zero_all, int64_t period);
  void restart_lora_rows();
  void hard_projection(int64_t period);
  void report_step(int64_t step, const StepPhase& phase, double loss, const torch::Tensor& batch,
                   std::chrono::steady_clock::time_point t0,
                   const std::vector<double>& lambdas) const;
  void save_checkpoint(int64_t step);
  int64_t resume_from_checkpoint();
  LhspgResult finish();

  LlamaModelImpl& model;
  const DependencyGraph& deps;
  const ResolvedPlan& plan;
  const WindowSampler& data;
  const LhspgOptions& o;
  const TaskContext* ctx;
  const std::function<void(const LhspgMetrics&)>& on_step;
  const LhspgCheckpoint& checkpoint;
  dist::Distributed& ranks;

  std::vector<Tracked> tracked;  // the node groups the plan prunes, bound to the model
  std::vector<torch::Tensor> factors;
  torch::optim::AdamW opt;
  LhspgResult result;
  std::vector<double> losses;
  const std::chrono::steady_clock::time_point start;
  int64_t scheduled = 0, redundant = 0;
  const int64_t total;
  const bool one_shot;  // a baseline: every group chosen and zeroed before the first step
  const int64_t pruning_end;
  std::mt19937_64 random_scores;
};

// Binds every node group the plan prunes to the model's tensors.
std::vector<Tracked> bind_node_groups(LlamaModelImpl& model, const DependencyGraph& deps,
                                      const ResolvedPlan& plan, const LhspgOptions& o) {
  std::map<std::string, LinearImpl*> linear_of;  // "…q_proj.weight" / ".bias" → layer
  for (const auto& item : model.named_modules("", /*include_self=*/false))
    if (auto* lin = dynamic_cast<LinearImpl*>(item.value().get()); lin && lin->kind == "linear") {
      linear_of[item.key() + ".weight"] = lin;
      linear_of[item.key() + ".bias"] = lin;
    }
  const auto params = model.all_parameters();
  std::vector<Tracked> tracked;
  for (const auto& e : plan.entries) {
    if (e.remove == 0) continue;
    Tracked t;
    t.node_group = e.node_group;
    t.group = &deps.node_groups[e.node_group];
    t.remove = e.remove;
    for (const auto& s : t.group->slices) {
      if (s.param.find(".lora_") != std::string::npos) continue;  // factors: handled with W
      if (s.role == GroupSlice::Role::Scaling) continue;
      auto it = params.find(s.param);
      if (it == params.end()) throw Error("LHSPG: the model has no parameter " + s.param);
      BoundSlice b;
      b.name = s.param;
      b.param = it->second;
      b.dim = s.dim;
      b.producing = s.role == GroupSlice::Role::Producing;
      auto lin = linear_of.find(s.param);
      b.linear = lin == linear_of.end() ? nullptr : lin->second;
      if (b.producing && b.dim != 0)
        throw Error("LHSPG: producing slice of " + s.param + " is not along rows");
      b.group_of.assign(static_cast<size_t>(s.shape[static_cast<size_t>(s.dim)]), -1);
      for (int64_t k = 0; k < t.group->size; ++k)
        for (auto i : s.indices(k))
          b.group_of[static_cast<size_t>(i)] = k;
      t.slices.push_back(std::move(b));
    }
    t.selected.assign(static_cast<size_t>(t.group->size), 0);
    t.zero.assign(static_cast<size_t>(t.group->size), 0);
    t.per_period = spread_over_periods(e.remove, o.periods);
    tracked.push_back(std::move(t));
  }
  return tracked;
}

LhspgRun::LhspgRun(LlamaModelImpl& model_, const DependencyGraph& deps_, const ResolvedPlan& plan_,
                   const WindowSampler& data_, const LhspgOptions& o_, const TaskContext* ctx_,
                   const std::function<void(const LhspgMetrics&)>& on_step_,
                   const LhspgCheckpoint& checkpoint_)
    : model(model_),
      deps(deps_),
      plan(plan_),
      data(data_),
      o(o_),
      ctx(ctx_),
      on_step(on_step_),
      checkpoint(checkpoint_),
      ranks(dist::current()),
      tracked(bind_node_groups(model_, deps_, plan_, o_)),
      factors(lora_parameters(model_)),
      opt(factors, torch::optim::AdamWOptions(o_.lr).weight_decay(o_.weight_decay)),
      start(std::chrono::steady_clock::now()),
      total(o_.total_steps()),
      one_shot(o_.method != "lhspg"),
      pruning_end(o_.warmup_steps + o_.periods * o_.period_steps),
      random_scores(0x5EEDull + static_cast<uint64_t>(o_.batch_size)) {
  result.hard_per_period.assign(static_cast<size_t>(o.periods), 0);
}

// LORASHEAR.md §3.1: the schedule: T_w warm-up steps, P periods of T steps, then recovery.
StepPhase LhspgRun::phase_of(int64_t step) const {
  StepPhase p;
  if (!one_shot && step > pruning_end)
    p.period = o.periods + 1;
  else if (!one_shot && step > o.warmup_steps)
    p.period = (step - o.warmup_steps - 1) / o.period_steps + 1;
  p.pruning = p.period >= 1 && p.period <= o.periods;
  p.in_period = p.pruning ? (step - o.warmup_steps - 1) % o.period_steps : 0;
  return p;
}

// LORASHEAR.md §3.2: the gradient criteria (taylor, loraprune) read the gradients of one
// calibration batch (step 0 of the sampler, which training never draws). Returns the base weights
// unfrozen for it (taylor), to freeze again.
std::vector<torch::Tensor> LhspgRun::calibration_gradients() {
  std::vector<torch::Tensor> unfrozen;
  if (o.method == "taylor")
    for (auto& t : tracked)
      for (auto& sl : t.slices)
        if (!sl.param.requires_grad()) {
          sl.param.set_requires_grad(true);
          unfrozen.push_back(sl.param);
        }
  opt.zero_grad();
  lm_loss(model, dist::shard_rows(data.batch(0, o.batch_size), ranks, "--batch")).backward();
  auto reduced = factors;
  reduced.insert(reduced.end(), unfrozen.begin(), unfrozen.end());
  dist::allreduce_gradients(reduced, ranks);
  return unfrozen;
}

// LORASHEAR.md §3.2: the raw criteria of node group t's groups: the magnitude ||W_eff[g]|| and the
// method's other term (LoRA-aware Taylor, full-gradient Taylor or LoRA-gradient estimate).
std::pair<std::vector<double>, std::vector<double>> LhspgRun::criteria(const Tracked& t) const {
  const auto n = static_cast<size_t>(t.group->size);
  std::vector<double> a(n, 0.0), b(n, 0.0);
  auto accumulate = [&](const BoundSlice& sl, const torch::Tensor& per_elem,
                        std::vector<double>& into) {
    auto per_index =
        (per_elem.dim() == 1 ? per_elem : per_elem.sum(1 - sl.dim)).to(torch::kFloat64).cpu();
    const auto* p = per_index.data_ptr<double>();
    for (size_t i = 0; i < sl.group_of.size(); ++i)
      if (sl.group_of[i] >= 0) into[static_cast<size_t>(sl.group_of[i])] += p[i];
  };
  for (const auto& sl : t.slices) {
    const auto eff = effective(sl).to(torch::kFloat64);
    const auto base = sl.param.to(torch::kFloat64);
    const bool adapted = sl.linear != nullptr && sl.linear->lora_A && sl.param.dim() == 2;
    if (o.method == "lhspg" || o.method == "magnitude") {
      accumulate(sl, eff * eff, a);
      if (o.method == "lhspg") accumulate(sl, base * (eff - base), b);
    } else if (o.method == "taylor") {
      if (sl.param.grad().defined()) accumulate(sl, base * sl.param.grad().to(torch::kFloat64), b);
    } else if (o.method == "loraprune" && adapted) {
      const auto& A = sl.linear->lora_A->weight;
      const auto& B = sl.linear->lora_B->weight;
      if (A.grad().defined() && B.grad().defined()) {
        auto g = torch::matmul(B.grad(), A) + torch::matmul(B, A.grad());
        accumulate(sl, (g.to(torch::kFloat64) * eff).abs(), b);
      }
    }
  }
  for (size_t k = 0; k < n; ++k) {
    a[k] = std::sqrt(a[k]);
    b[k] = std::abs(b[k]);
  }
  return {std::move(a), std::move(b)};
}

// LORASHEAR.md §3.2: the saliency of every group of the tracked node groups under the method's
// criterion (lower = removed first); lhspg's weighted sum divides each criterion by its L2 norm
// over the candidates (the groups not selected yet).
std::vector<std::vector<double>> LhspgRun::scores() {
  std::vector<std::vector<double>> out(tracked.size());
  const bool needs_grad = o.method == "taylor" || o.method == "loraprune";
  std::vector<torch::Tensor> unfrozen;
  if (needs_grad) unfrozen = calibration_gradients();
  torch::NoGradGuard no_grad;
  std::vector<std::vector<double>> mag(tracked.size()), tay(tracked.size());
  double mag_norm = 0, tay_norm = 0;
  for (size_t ti = 0; ti < tracked.size(); ++ti) {
    auto [a, b] = criteria(tracked[ti]);
    for (size_t k = 0; k < a.size(); ++k) {
      if (tracked[ti].selected[k]) continue;
      mag_norm += a[k] * a[k];
      tay_norm += b[k] * b[k];
    }
    mag[ti] = std::move(a);
    tay[ti] = std::move(b);
  }
  mag_norm = std::sqrt(mag_norm);
  tay_norm = std::sqrt(tay_norm);
  for (size_t ti = 0; ti < tracked.size(); ++ti) {
    auto& sc = out[ti];
    sc.assign(mag[ti].size(), 0.0);
    for (size_t k = 0; k < sc.size(); ++k) {
      if (o.method == "random") {
        sc[k] = std::uniform_real_distribution<double>(0, 1)(random_scores);
      } else if (o.method == "lhspg") {
        if (mag_norm > 0) sc[k] += o.magnitude_weight * mag[ti][k] / mag_norm;
        if (tay_norm > 0) sc[k] += o.taylor_weight * tay[ti][k] / tay_norm;
      } else if (o.method == "magnitude") {
        sc[k] = mag[ti][k];
      } else {
        sc[k] = tay[ti][k];
      }
    }
  }
  for (auto& p : unfrozen) {
    p.mutable_grad() = torch::Tensor();
    p.set_requires_grad(false);
  }
  if (needs_grad) opt.zero_grad();
  return out;
}

// LORASHEAR.md §3.1–3.2: adds the lowest-saliency unselected groups to the redundant set G_r:
// `count(t)` of node group t. Groups never leave G_r.
void LhspgRun::select(const std::function<int64_t(const Tracked&)>& count) {
  const auto sc = scores();
  for (size_t ti = 0; ti < tracked.size(); ++ti) {
    auto& t = tracked[ti];
    std::vector<std::pair<double, int64_t>> cand;
    for (int64_t k = 0; k < t.group->size; ++k)
      if (!t.selected[static_cast<size_t>(k)]) cand.push_back({sc[ti][static_cast<size_t>(k)], k});
    std::stable_sort(cand.begin(), cand.end());
    const int64_t n = count(t);
    for (int64_t i = 0; i < n && i < static_cast<int64_t>(cand.size()); ++i) {
      const int64_t k = cand[static_cast<size_t>(i)].second;
      t.selected[static_cast<size_t>(k)] = 1;
      result.removed.push_back(t.group->variable_group_id(k));
      ++redundant;
    }
    scheduled += n;
  }
}

// LORASHEAR.md §3.2 (baselines): every group chosen at once on the dense model and zeroed; the
// same LoRA fine-tuning budget follows with them held at zero.
void LhspgRun::prune_at_once() {
  select([](const Tracked& t) { return t.remove; });
  zero_selected_rows(true, 0);
}

// LORASHEAR.md §3.1: at the start of period p (1-based), K_p more groups join G_r.
void LhspgRun::select_for_period(int64_t period) {
  select([&](const Tracked& t) { return t.per_period[static_cast<size_t>(period - 1)]; });
}

// LORASHEAR.md §3.3 step 1 (first half): the loss of the batch and the LoRA factors' gradients,
// averaged over the ranks and clipped.
torch::Tensor LhspgRun::backward(const torch::Tensor& batch) {
  opt.zero_grad();
  auto loss = lm_loss(model, batch);
  loss.backward();
  dist::allreduce_gradients(factors, ranks);  // the mean over the ranks' rows, before clipping
  if (o.grad_clip > 0) torch::nn::utils::clip_grad_norm_(factors, o.grad_clip);
  return loss;
}

// LORASHEAR.md §3.3 step 2: the groups of G_r that are not zero yet, and their rows in each
// producing slice.
ShrinkingGroups LhspgRun::shrinking_groups() {
  ShrinkingGroups out;
  std::vector<std::vector<int64_t>> active_id(tracked.size());
  for (size_t ti = 0; ti < tracked.size(); ++ti) {
    active_id[ti].assign(static_cast<size_t>(tracked[ti].group->size), -1);
    for (int64_t k = 0; k < tracked[ti].group->size; ++k)
      if (tracked[ti].selected[static_cast<size_t>(k)] &&
          !tracked[ti].zero[static_cast<size_t>(k)]) {
        active_id[ti][static_cast<size_t>(k)] = static_cast<int64_t>(out.groups.size());
        out.groups.push_back({ti, k});
      }
  }
  for (size_t ti = 0; ti < tracked.size(); ++ti)
    for (auto& s : tracked[ti].slices) {
      if (!s.producing) continue;
      std::vector<int64_t> r, own;
      for (size_t i = 0; i < s.group_of.size(); ++i) {
        const auto k = s.group_of[i];
        if (k >= 0 && active_id[ti][static_cast<size_t>(k)] >= 0) {
          r.push_back(static_cast<int64_t>(i));
          own.push_back(active_id[ti][static_cast<size_t>(k)]);
        }
      }
      if (r.empty()) continue;
      auto idx = torch::tensor(r, torch::kLong).to(s.param.device());
      out.rows.push_back(
          {ti, &s, std::move(r), idx, torch::tensor(own, torch::kLong).to(s.param.device())});
    }
  return out;
}

// LORASHEAR.md §3.3 (lambda_g): <grad_g, x> per shrinking group, from the LoRA-estimated gradient
// (grad_B·A + B·grad_A)[g], taken before the AdamW step moves x.
std::vector<double> LhspgRun::gradient_dots(ShrinkingGroups& shrinking) {
  std::vector<double> dots(shrinking.groups.size(), 0.0);
  if (shrinking.groups.empty()) return dots;
  torch::NoGradGuard no_grad;
  auto acc =
      torch::zeros({static_cast<int64_t>(shrinking.groups.size())},
                   torch::TensorOptions().dtype(torch::kFloat64).device(model.options().device));
  for (auto& r : shrinking.rows) {
    auto* lin = r.s->linear;
    if (lin == nullptr || !lin->lora_A || r.s->param.dim() != 2) continue;
    const auto& A = lin->lora_A->weight;
    const auto& B = lin->lora_B->weight;
    if (!A.grad().defined() || !B.grad().defined()) continue;
    auto Br = B.index_select(0, r.idx);
    auto x = base_rows(*r.s, r.host, r.idx) + lin->lora_scaling * torch::matmul(Br, A);
    auto g = torch::matmul(B.grad().index_select(0, r.idx), A) + torch::matmul(Br, A.grad());
    acc.index_add_(0, r.owner, (g * x).sum(1).to(torch::kFloat64));
  }
  auto cpu = acc.cpu();
  std::copy_n(cpu.data_ptr<double>(), shrinking.groups.size(), dots.begin());
  return dots;
}

// LORASHEAR.md §3.3 step 2: the point on the merged weight, x = W[g] + s·(B·A)[g] (base and LoRA
// of the producing slices; biases as they are), after the AdamW step, and ||x|| per group.
TrialPoints LhspgRun::trial_points(ShrinkingGroups& shrinking) {
  TrialPoints out;
  out.xs.resize(shrinking.rows.size());
  auto sq =
      torch::zeros({static_cast<int64_t>(shrinking.groups.size())},
                   torch::TensorOptions().dtype(torch::kFloat64).device(model.options().device));
  for (size_t ri = 0; ri < shrinking.rows.size(); ++ri) {
    auto& r = shrinking.rows[ri];
    auto x = base_rows(*r.s, r.host, r.idx);
    if (r.s->linear != nullptr && r.s->linear->lora_A && r.s->param.dim() == 2)
      x = x + r.s->linear->lora_scaling *
                  torch::matmul(r.s->linear->lora_B->weight.index_select(0, r.idx),
                                r.s->linear->lora_A->weight);
    auto x2 = x.dim() == 1 ? x * x : (x * x).sum(1);
    sq.index_add_(0, r.owner, x2.to(torch::kFloat64));
    out.xs[ri] = x;
  }
  auto norms = sq.sqrt().cpu();
  const auto* np = norms.data_ptr<double>();
  out.norms.assign(np, np + shrinking.groups.size());
  return out;
}

// LORASHEAR.md §3.3 (lambda_g): lambda, raised to clip(amp·(−<grad_g, x>)/||x||, lambda,
// lambda·c_max) when the loss pulls the group away from zero, and floored by the schedule so the
// group reaches the half-space boundary within the `steps_left` steps of its period.
double LhspgRun::adaptive_lambda(double norm, double dot, int64_t steps_left) const {
  double lam = o.lambda;
  if (dot < 0 && norm > 0)
    lam = std::clamp(o.lambda_amp * (-dot) / norm, o.lambda, o.lambda * o.lambda_cmax);
  return std::max(lam, norm / (o.lr * static_cast<double>(steps_left)));  // schedule floor
}

// LORASHEAR.md §3.3 step 4: W[g] = x_tilde (x scaled by its factor `keep`); a factor of 0
// (projected, or shrunk exactly to zero) makes the group zero. B rows restart at 0 in
// restart_lora_rows.
void LhspgRun::write_back(ShrinkingGroups& shrinking, const TrialPoints& trial,
                          const std::vector<double>& keep) {
  auto keep_t = torch::tensor(keep, torch::kFloat64).to(model.options().device);
  for (size_t ri = 0; ri < shrinking.rows.size(); ++ri) {
    auto& r = shrinking.rows[ri];
    const auto& xs = trial.xs[ri];
    auto scale = keep_t.index_select(0, r.owner).to(xs.scalar_type());
    auto x = xs * (xs.dim() == 1 ? scale : scale.unsqueeze(1));
    if (low_precision(r.s->param)) r.s->shadow = x;
    r.s->param.index_copy_(0, r.idx, x.to(r.s->param.scalar_type()));
  }
  for (size_t a = 0; a < shrinking.groups.size(); ++a) {
    if (keep[a] == 0.0) {
      auto& t = tracked[shrinking.groups[a].t];
      t.zero[static_cast<size_t>(shrinking.groups[a].k)] = 1;
      ++result.zeroed_by_projection;
    }
  }
}

// LORASHEAR.md §3.3 steps 2–4 on every shrinking group: the trial point
// x_tilde = x − eta·lambda_g·x / max(||x||, tau), its half-space projection (zero when
// <x_tilde, x> < epsilon·||x||²), written into W. Returns the lambda_g used.
std::vector<double> LhspgRun::shrink_redundant_groups(ShrinkingGroups& shrinking,
                                                      const std::vector<double>& dots,
                                                      int64_t in_period) {
  std::vector<double> lambdas;
  if (shrinking.groups.empty()) return lambdas;
  torch::NoGradGuard no_grad;
  const int64_t steps_left = o.period_steps - in_period;
  const auto trial = trial_points(shrinking);
  std::vector<double> keep(shrinking.groups.size(), 1.0);
  for (size_t a = 0; a < shrinking.groups.size(); ++a) {
    const double lam = adaptive_lambda(trial.norms[a], dots[a], steps_left);
    lambdas.push_back(lam);
    keep[a] = half_space_scale(trial.norms[a], o.lr, lam, o.epsilon, o.tau);
  }
  write_back(shrinking, trial, keep);
  return lambdas;
}

// Zeroes B rows of every selected group (their LoRA update lives in W now) and, with
// `zero_all`, their W rows and biases too (counted as period `period`'s hard projections).
void LhspgRun::zero_selected_rows(bool zero_all, int64_t period) {
  torch::NoGradGuard no_grad;
  for (auto& t : tracked) {
    for (auto& s : t.slices) {
      if (!s.producing) continue;
      std::vector<int64_t> rows, hard_rows;
      for (size_t i = 0; i < s.group_of.size(); ++i) {
        const auto k = s.group_of[i];
        if (k >= 0 && t.selected[static_cast<size_t>(k)]) {
          rows.push_back(static_cast<int64_t>(i));
          if (zero_all) hard_rows.push_back(static_cast<int64_t>(i));
        }
      }
      if (rows.empty()) continue;
      auto idx = torch::tensor(rows, torch::kLong).to(s.param.device());
      if (s.linear != nullptr && s.linear->lora_B && s.param.dim() == 2)
        s.linear->lora_B->weight.index_fill_(0, idx, 0.0);
      if (zero_all) s.param.index_fill_(0, idx, 0.0);
    }
    if (zero_all) {
      for (int64_t k = 0; k < t.group->size; ++k) {
        if (t.selected[static_cast<size_t>(k)] && !t.zero[static_cast<size_t>(k)]) {
          t.zero[static_cast<size_t>(k)] = 1;
          ++result.zeroed_by_hard_projection;
          ++result.hard_per_period[static_cast<size_t>(period)];
        }
      }
    }
  }
}

// LORASHEAR.md §3.3 step 4 (second half): B[g] = 0 for every group of G_r: their LoRA update was
// merged into W (or they are zero), their LoRA rows restart from zero.
void LhspgRun::restart_lora_rows() {
  zero_selected_rows(false, 0);
}

// LORASHEAR.md §3.3 step 5: at the end of period `period` (0-based), every selected group still
// nonzero is set to zero, so the target is met exactly and on time. A group zeroed by the
// projection stays exactly zero (its W rows are 0 already).
void LhspgRun::hard_projection(int64_t period) {
  zero_selected_rows(true, period);
}

// The step's metrics to `on_step`.
void LhspgRun::report_step(int64_t step, const StepPhase& phase, double loss,
                           const torch::Tensor& batch, std::chrono::steady_clock::time_point t0,
                           const std::vector<double>& lambdas) const {
  if (!on_step) return;
  LhspgMetrics m;
  m.step = step;
  m.total_steps = total;
  m.period = phase.period;
  m.loss = loss;
  m.lr = o.lr;
  m.redundant = redundant;
  m.target = plan.total_groups;
  m.scheduled = scheduled;
  for (const auto& t : tracked) {
    const auto z = std::count(t.zero.begin(), t.zero.end(), char{1});
    m.zeroed += z;
    m.sparsity[t.group->id] = static_cast<double>(z) / static_cast<double>(t.group->size);
  }
  if (!lambdas.empty()) {
    m.lambda_mean =
        std::accumulate(lambdas.begin(), lambdas.end(), 0.0) / static_cast<double>(lambdas.size());
    m.lambda_max = *std::max_element(lambdas.begin(), lambdas.end());
  }
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  m.tokens_per_second =
      dt > 0 ? static_cast<double>(batch.size(0) * ranks.world_size() * (batch.size(1) - 1)) / dt
             : 0;
  on_step(m);
}

// ---- Checkpoints: everything the remaining steps depend on.
// Rank 0 alone writes it (every rank holds the same state); the world size is recorded, since
// the per-rank batches depend on it.
void LhspgRun::save_checkpoint(int64_t step) {
  if (!ranks.is_root()) return;
  io::StagedDirectory staged(checkpoint.dir + "/latest", /*overwrite=*/true);
  save_model_state(model, staged.path() + "/model.safetensors");
  torch::serialize::OutputArchive archive;
  opt.save(archive);
  io::save_archive_atomic(archive, staged.path() + "/optimizer.pt");  // save_to aborts when full
  nlohmann::json groups = nlohmann::json::object();
  for (const auto& t : tracked) {
    std::vector<int64_t> sel, zero;
    for (int64_t k = 0; k < t.group->size; ++k) {
      if (t.selected[static_cast<size_t>(k)]) sel.push_back(k);
      if (t.zero[static_cast<size_t>(k)]) zero.push_back(k);
    }
    groups[t.group->id] = {{"selected", sel}, {"zero", zero}};
  }
  nlohmann::json state = {{"step", step},
                          {"settings", checkpoint.settings},
                          {"world_size", ranks.world_size()},
                          {"groups", groups},
                          {"removed", result.removed},
                          {"zeroed_by_projection", result.zeroed_by_projection},
                          {"zeroed_by_hard_projection", result.zeroed_by_hard_projection},
                          {"hard_per_period", result.hard_per_period},
                          {"losses", losses},
                          {"scheduled", scheduled},
                          {"redundant", redundant}};
  io::write_file_atomic(staged.path() + "/state.json", state.dump() + "\n");
  // The fp32 rows of 16-bit weights under projection: resuming from the rounded weight would
  // not continue the same run.
  std::vector<std::pair<std::string, torch::Tensor>> shadows;
  for (const auto& t : tracked)
    for (const auto& sl : t.slices)
      if (sl.shadow.defined() && !sl.shadow_rows.empty()) {
        shadows.emplace_back(sl.name, sl.shadow);
        shadows.emplace_back(sl.name + "#rows", torch::tensor(sl.shadow_rows, torch::kLong));
      }
  if (!shadows.empty()) write_safetensors(staged.path() + "/shadow_rows.safetensors", shadows);
  io::write_checkpoint_manifest(staged.path());
  staged.commit();
}

// Continues from checkpoint.dir/latest when asked to and it is there; returns the first step to
// take.
int64_t LhspgRun::resume_from_checkpoint() {
  int64_t first_step = 1;
  const std::string latest = checkpoint.dir + "/latest";
  if (checkpoint.resume && !checkpoint.dir.empty()) io::verify_checkpoint(latest);
  if (checkpoint.resume && !checkpoint.dir.empty() &&
      std::filesystem::exists(latest + "/state.json")) {
    nlohmann::json state;
    try {
      std::ifstream in(latest + "/state.json");
      in >> state;
    } catch (const nlohmann::json::exception& e) {
      throw InputError(latest + "/state.json: not valid JSON: " + e.what());
    }
    if (state.value("settings", std::string()) != checkpoint.settings)
      throw UsageError(latest +
                       " was written by a run with other settings (model, text, plan or "
                       "options differ); start a new run or use the same settings");
    ranks.require_world_size(state.value("world_size", int64_t{1}), latest);
    load_model_state(model, latest + "/model.safetensors");
    if (std::filesystem::exists(latest + "/shadow_rows.safetensors")) {
      SafetensorsFile shadows(latest + "/shadow_rows.safetensors");
      for (auto& t : tracked)
        for (auto& sl : t.slices) {
          const auto* rows = shadows.find(sl.name + "#rows");
          const auto* values = shadows.find(sl.name);
          if (rows == nullptr || values == nullptr) continue;
          auto r = shadows.view(*rows).contiguous();
          sl.shadow_rows.assign(r.data_ptr<int64_t>(), r.data_ptr<int64_t>() + r.numel());
          sl.shadow = shadows.view(*values).to(sl.param.device(), torch::kFloat32, false, true);
        }
    }
    torch::serialize::InputArchive archive;
    archive.load_from(latest + "/optimizer.pt");
    opt.load(archive);
    for (auto& t : tracked) {
      const auto& g = state.at("groups").at(t.group->id);
      for (auto k : g.at("selected").get<std::vector<int64_t>>())
        t.selected[static_cast<size_t>(k)] = 1;
      for (auto k : g.at("zero").get<std::vector<int64_t>>())
        t.zero[static_cast<size_t>(k)] = 1;
    }
    result.removed = state.at("removed").get<std::vector<std::string>>();
    result.zeroed_by_projection = state.at("zeroed_by_projection").get<int64_t>();
    result.zeroed_by_hard_projection = state.at("zeroed_by_hard_projection").get<int64_t>();
    result.hard_per_period = state.at("hard_per_period").get<std::vector<int64_t>>();
    losses = state.at("losses").get<std::vector<double>>();
    scheduled = state.at("scheduled").get<int64_t>();
    redundant = state.at("redundant").get<int64_t>();
    first_step = state.at("step").get<int64_t>() + 1;
  }
  return first_step;
}

// Algorithm 1 (LORASHEAR.md §3): warm-up, P pruning periods, recovery; every step one AdamW step on
// the LoRA factors and, for the redundant groups, the half-space projected step.
LhspgResult LhspgRun::run() {
  const int64_t first_step = resume_from_checkpoint();
  for (int64_t step = first_step; step <= total; ++step) {
    task_check(ctx);
    torch::manual_seed(0x10AD5EEDull + static_cast<uint64_t>(step));  // dropout, resumable
    const auto phase = phase_of(step);  // §3.1: warm-up, period p, or recovery
    // §3.2: the baselines choose every group at once; LHSPG K_p more at each period's start.
    if (one_shot && step == 1) prune_at_once();
    if (phase.pruning && phase.in_period == 0) select_for_period(phase.period);
    const auto t0 = std::chrono::steady_clock::now();

    // §3.3 step 1: backward, then AdamW on all A, B; lambda_g reads <grad_g, x> before the step.
    auto batch = dist::shard_rows(data.batch(step, o.batch_size), ranks, "--batch");
    auto loss = backward(batch);
    auto shrinking = shrinking_groups();
    const auto dots = gradient_dots(shrinking);
    opt.step();
    // §3.3 steps 2–4: trial point, half-space projection, W[g] = x_tilde and B[g] = 0.
    const auto lambdas = shrink_redundant_groups(shrinking, dots, phase.in_period);
    restart_lora_rows();
    // §3.3 step 5: the period's end.
    if (phase.pruning && phase.in_period == o.period_steps - 1) hard_projection(phase.period - 1);

    const double l = ranks.allreduce_mean(loss.item<double>());  // ranks' rows are equal in number
    losses.push_back(l);
    report_step(step, phase, l, batch, t0, lambdas);
    task_report(ctx, "LHSPG", step, total);
    if (!checkpoint.dir.empty() && checkpoint.every > 0 && step % checkpoint.every == 0 &&
        step < total)
      save_checkpoint(step);
  }
  return finish();
}

LhspgResult LhspgRun::finish() {
  const size_t tail = std::min<size_t>(10, losses.size());
  result.final_loss =
      tail ? std::accumulate(losses.end() - static_cast<long>(tail), losses.end(), 0.0) /
                 static_cast<double>(tail)
           : 0.0;
  result.steps = total;
  result.losses = losses;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  model.eval();
  return result;
}

}  // namespace

LhspgResult run_lhspg(LlamaModelImpl& model, const DependencyGraph& deps, const ResolvedPlan& plan,
                      const WindowSampler& data, const LhspgOptions& o, const TaskContext* ctx,
                      const std::function<void(const LhspgMetrics&)>& on_step,
                      const LhspgCheckpoint& checkpoint) {
  o.validate();
  if (model.lora() == nullptr)
    throw UsageError("LHSPG trains LoRA adapters: attach them to the model first");
  // Data parallel (dist::current(), one process unless the CLI set up ranks): each rank takes its
  // rows of the same batch of step t, the LoRA gradients are averaged over the ranks before
  // clipping, so every rank takes the same step and every decision below (saliency, the redundant
  // set, lambda_g, projections) is made on the same numbers on every rank.
  auto& ranks = dist::current();
  if (ranks.active() && o.batch_size % ranks.world_size() != 0)
    throw UsageError(
        "--batch " + std::to_string(o.batch_size) +
        " does not split evenly over WORLD_SIZE=" + std::to_string(ranks.world_size()) +
        " ranks (give a multiple of " + std::to_string(ranks.world_size()) + ")");
  freeze_base_weights(model);
  model.train();
  return LhspgRun(model, deps, plan, data, o, ctx, on_step, checkpoint).run();
}

}  // namespace lorashear
