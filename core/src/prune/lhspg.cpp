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

  // Bind every node group the plan prunes to the model's tensors.
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

  auto factors = lora_parameters(model);
  torch::optim::AdamW opt(factors, torch::optim::AdamWOptions(o.lr).weight_decay(o.weight_decay));
  LhspgResult result;
  result.hard_per_period.assign(static_cast<size_t>(o.periods), 0);
  std::vector<double> losses;
  const auto start = std::chrono::steady_clock::now();
  int64_t scheduled = 0, redundant = 0;
  const int64_t total = o.total_steps();

  // Scores of every group of the tracked node groups under the method's criterion (lower =
  // removed first). Gradient criteria use one calibration batch (step 0 of the sampler, which
  // training never draws).
  std::mt19937_64 random_scores(0x5EEDull + static_cast<uint64_t>(o.batch_size));
  auto scores = [&]() {
    std::vector<std::vector<double>> out(tracked.size());
    const bool needs_grad = o.method == "taylor" || o.method == "loraprune";
    std::vector<torch::Tensor> unfrozen;
    if (needs_grad) {
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
    }
    torch::NoGradGuard no_grad;
    std::vector<std::vector<double>> mag(tracked.size()), tay(tracked.size());
    double mag_norm = 0, tay_norm = 0;
    for (size_t ti = 0; ti < tracked.size(); ++ti) {
      auto& t = tracked[ti];
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
          if (sl.param.grad().defined())
            accumulate(sl, base * sl.param.grad().to(torch::kFloat64), b);
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
        if (t.selected[k]) continue;
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
  };

  // Adds the lowest-scoring unselected groups to the redundant set: `count(t)` of node group t.
  auto select = [&](const std::function<int64_t(const Tracked&)>& count) {
    const auto sc = scores();
    for (size_t ti = 0; ti < tracked.size(); ++ti) {
      auto& t = tracked[ti];
      std::vector<std::pair<double, int64_t>> cand;
      for (int64_t k = 0; k < t.group->size; ++k)
        if (!t.selected[static_cast<size_t>(k)])
          cand.push_back({sc[ti][static_cast<size_t>(k)], k});
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
  };

  // Zeroes B rows of every selected group (their LoRA update lives in W now) and, with
  // `zero_all`, their W rows and biases too.
  auto reset_rows = [&](bool zero_all, int64_t period) {
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
  };

  // ---- Checkpoints: everything the remaining steps depend on.
  // Rank 0 alone writes it (every rank holds the same state); the world size is recorded, since
  // the per-rank batches depend on it.
  auto save_checkpoint = [&](int64_t step) {
    if (!ranks.is_root()) return;
    io::StagedDirectory staged(checkpoint.dir + "/latest", /*overwrite=*/true);
    save_model_state(model, staged.path() + "/model.safetensors");
    torch::serialize::OutputArchive archive;
    opt.save(archive);
    archive.save_to(staged.path() + "/optimizer.pt");
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
    staged.commit();
  };
  int64_t first_step = 1;
  const std::string latest = checkpoint.dir + "/latest";
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

  std::vector<double> lambdas;
  const bool one_shot = o.method != "lhspg";
  const int64_t pruning_end = o.warmup_steps + o.periods * o.period_steps;
  for (int64_t step = first_step; step <= total; ++step) {
    task_check(ctx);
    torch::manual_seed(0x10AD5EEDull + static_cast<uint64_t>(step));  // dropout, resumable
    // 0: warm-up; 1..P: pruning periods; P + 1: recovery with the removed groups held at zero.
    int64_t period = 0;
    if (!one_shot && step > pruning_end)
      period = o.periods + 1;
    else if (!one_shot && step > o.warmup_steps)
      period = (step - o.warmup_steps - 1) / o.period_steps + 1;
    const bool pruning = period >= 1 && period <= o.periods;
    const int64_t in_period = pruning ? (step - o.warmup_steps - 1) % o.period_steps : 0;
    if (one_shot && step == 1) {
      // Baselines: every group chosen at once on the dense model, zeroed, then the same LoRA
      // fine-tuning budget with them held at zero.
      select([](const Tracked& t) { return t.remove; });
      reset_rows(true, 0);
    }
    if (pruning && in_period == 0)
      select([&](const Tracked& t) { return t.per_period[static_cast<size_t>(period - 1)]; });
    const auto t0 = std::chrono::steady_clock::now();

    auto batch = dist::shard_rows(data.batch(step, o.batch_size), ranks, "--batch");
    opt.zero_grad();
    auto loss = lm_loss(model, batch);
    loss.backward();
    dist::allreduce_gradients(factors, ranks);  // the mean over the ranks' rows, before clipping
    if (o.grad_clip > 0) torch::nn::utils::clip_grad_norm_(factors, o.grad_clip);

    // <grad_g, x> per shrinking group from the LoRA gradient (before the step).
    struct Active {
      size_t t;
      int64_t k;
    };
    std::vector<Active> active;
    std::vector<std::vector<int64_t>> active_id(tracked.size());
    for (size_t ti = 0; ti < tracked.size(); ++ti) {
      active_id[ti].assign(static_cast<size_t>(tracked[ti].group->size), -1);
      for (int64_t k = 0; k < tracked[ti].group->size; ++k)
        if (tracked[ti].selected[static_cast<size_t>(k)] &&
            !tracked[ti].zero[static_cast<size_t>(k)]) {
          active_id[ti][static_cast<size_t>(k)] = static_cast<int64_t>(active.size());
          active.push_back({ti, k});
        }
    }
    std::vector<double> dots(active.size(), 0.0);
    // Rows of every active group in each producing slice, with their active index.
    struct Rows {
      size_t t;
      BoundSlice* s;
      std::vector<int64_t> host;  // the rows, ascending
      torch::Tensor idx, owner;
    };
    std::vector<Rows> rows;
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
        rows.push_back(
            {ti, &s, std::move(r), idx, torch::tensor(own, torch::kLong).to(s.param.device())});
      }
    if (!active.empty()) {
      torch::NoGradGuard no_grad;
      auto acc = torch::zeros(
          {static_cast<int64_t>(active.size())},
          torch::TensorOptions().dtype(torch::kFloat64).device(model.options().device));
      for (auto& r : rows) {
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
      std::copy_n(cpu.data_ptr<double>(), active.size(), dots.begin());
    }

    opt.step();

    // Trial point on the merged weight, half-space projection, write back; B rows restart at 0.
    lambdas.clear();
    if (!active.empty()) {
      torch::NoGradGuard no_grad;
      const int64_t steps_left = o.period_steps - in_period;
      std::vector<torch::Tensor> xs(rows.size());
      auto sq = torch::zeros(
          {static_cast<int64_t>(active.size())},
          torch::TensorOptions().dtype(torch::kFloat64).device(model.options().device));
      for (size_t ri = 0; ri < rows.size(); ++ri) {
        auto& r = rows[ri];
        auto x = base_rows(*r.s, r.host, r.idx);
        if (r.s->linear != nullptr && r.s->linear->lora_A && r.s->param.dim() == 2)
          x = x + r.s->linear->lora_scaling *
                      torch::matmul(r.s->linear->lora_B->weight.index_select(0, r.idx),
                                    r.s->linear->lora_A->weight);
        auto x2 = x.dim() == 1 ? x * x : (x * x).sum(1);
        sq.index_add_(0, r.owner, x2.to(torch::kFloat64));
        xs[ri] = x;
      }
      auto norms = sq.sqrt().cpu();
      std::vector<double> keep(active.size(), 1.0);
      const auto* np = norms.data_ptr<double>();
      for (size_t a = 0; a < active.size(); ++a) {
        const double n = np[a];
        double lam = o.lambda;
        if (dots[a] < 0 && n > 0)
          lam = std::clamp(o.lambda_amp * (-dots[a]) / n, o.lambda, o.lambda * o.lambda_cmax);
        lam = std::max(lam, n / (o.lr * static_cast<double>(steps_left)));  // schedule floor
        lambdas.push_back(lam);
        // A factor of 0 (projected, or shrunk exactly to zero) makes the group zero.
        keep[a] = half_space_scale(n, o.lr, lam, o.epsilon, o.tau);
      }
      auto keep_t = torch::tensor(keep, torch::kFloat64).to(model.options().device);
      for (size_t ri = 0; ri < rows.size(); ++ri) {
        auto& r = rows[ri];
        auto scale = keep_t.index_select(0, r.owner).to(xs[ri].scalar_type());
        auto x = xs[ri] * (xs[ri].dim() == 1 ? scale : scale.unsqueeze(1));
        if (low_precision(r.s->param)) r.s->shadow = x;
        r.s->param.index_copy_(0, r.idx, x.to(r.s->param.scalar_type()));
      }
      for (size_t a = 0; a < active.size(); ++a) {
        if (keep[a] == 0.0) {
          auto& t = tracked[active[a].t];
          t.zero[static_cast<size_t>(active[a].k)] = 1;
          ++result.zeroed_by_projection;
        }
      }
    }
    // Selected groups keep no LoRA rows: their update was merged into W above (or they are zero).
    reset_rows(false, 0);
    // A group zeroed by the projection must stay exactly zero (its W rows are 0 already).
    if (pruning && in_period == o.period_steps - 1) reset_rows(true, period - 1);

    const double l = ranks.allreduce_mean(loss.item<double>());  // ranks' rows are equal in number
    losses.push_back(l);
    if (on_step) {
      LhspgMetrics m;
      m.step = step;
      m.total_steps = total;
      m.period = period;
      m.loss = l;
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
        m.lambda_mean = std::accumulate(lambdas.begin(), lambdas.end(), 0.0) /
                        static_cast<double>(lambdas.size());
        m.lambda_max = *std::max_element(lambdas.begin(), lambdas.end());
      }
      const double dt =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      m.tokens_per_second =
          dt > 0
              ? static_cast<double>(batch.size(0) * ranks.world_size() * (batch.size(1) - 1)) / dt
              : 0;
      on_step(m);
    }
    task_report(ctx, "LHSPG", step, total);
    if (!checkpoint.dir.empty() && checkpoint.every > 0 && step % checkpoint.every == 0 &&
        step < total)
      save_checkpoint(step);
  }
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

}  // namespace lorashear
