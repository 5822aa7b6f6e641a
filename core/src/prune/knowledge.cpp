#include "lorashear/prune/knowledge.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <set>

#include "lorashear/dist/distributed.h"
#include "lorashear/errors.h"
#include "lorashear/eval/perplexity.h"
#include "lorashear/prune/subnet.h"

namespace lorashear {

void KnowledgeOptions::validate() const {
  if (!(rho > 0 && rho <= 1)) throw UsageError("--rho must be in (0, 1]");
  if (!(gamma >= 0 && gamma < 1)) throw UsageError("--gamma must be in [0, 1)");
  if (seq_len < 2) throw UsageError("--seq-len must be at least 2");
  if (windows < 1 || batch < 1) throw UsageError("--windows and --batch must be at least 1");
}

nlohmann::json KnowledgeResult::to_json() const {
  auto list = nlohmann::json::array();
  for (const auto& g : groups)
    list.push_back({{"id", g.id},
                    {"kind", g.kind},
                    {"layer", g.layer},
                    {"zeroed", g.zeroed},
                    {"loss", g.loss},
                    {"delta", g.delta},
                    {"normalized", g.normalized},
                    {"unprunable", g.protect}});
  return {{"format", "lorashear-knowledge"},
          {"version", 1},
          {"base_loss", base_loss},
          {"protocol", protocol},
          {"node_groups", list},
          {"unprunable", protected_ids},
          {"seconds", seconds}};
}

KnowledgeResult analyze_knowledge(LlamaModelImpl& model, const DependencyGraph& deps,
                                  const std::vector<int64_t>& tokens, const KnowledgeOptions& o,
                                  const TaskContext* ctx) {
  o.validate();
  const auto t0 = std::chrono::steady_clock::now();
  PerplexityOptions popt;
  popt.seq_len = o.seq_len;
  popt.max_windows = o.windows;
  popt.batch = o.batch;
  if (static_cast<int64_t>(tokens.size()) < o.seq_len)
    throw InputError("the evaluation text has " + std::to_string(tokens.size()) +
                     " tokens, fewer than one window of " + std::to_string(o.seq_len));
  model.eval();
  KnowledgeResult r;
  auto base_opt = popt;
  base_opt.ranks = o.ranks;
  const auto base = perplexity(model, tokens, base_opt, ctx);
  r.base_loss = base.mean_nll;
  r.protocol = base.protocol();
  const auto params = model.all_parameters();
  // Data parallel: rank k measures every world-size-th node group (all windows); the losses and
  // counts are combined after the loop, each measured by one rank alone.
  const bool split = o.ranks != nullptr && o.ranks->active();
  const int64_t stride = split ? o.ranks->world_size() : 1;
  const int64_t mine = split ? o.ranks->rank() : 0;
  int64_t done = 0, total = 0, index = -1;
  for (const auto& g : deps.node_groups)
    total += g.prunable ? 1 : 0;
  for (const auto& g : deps.node_groups) {
    if (!g.prunable) continue;
    if (++index % stride != mine) {
      r.groups.push_back({g.id, g.kind, g.layer, 0, 0, 0, 0, false});
      continue;
    }
    task_check(ctx);
    task_report(ctx, "knowledge", done, total, g.id);
    done += stride;
    // Lowest magnitude first: ||W_eff[g]|| over the group's base slices.
    std::vector<double> mag(static_cast<size_t>(g.size), 0.0);
    {
      torch::NoGradGuard no_grad;
      for (const auto& s : g.slices) {
        if (s.param.find(".lora_") != std::string::npos) continue;
        auto w = params.at(s.param).to(torch::kFloat64);
        auto per = (w.dim() == 1 ? w * w : (w * w).sum(1 - s.dim)).cpu();
        const auto* p = per.data_ptr<double>();
        for (int64_t k = 0; k < g.size; ++k)
          for (auto i : s.indices(k))
            mag[static_cast<size_t>(k)] += p[i];
      }
    }
    std::vector<int64_t> order(static_cast<size_t>(g.size));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      return mag[static_cast<size_t>(a)] < mag[static_cast<size_t>(b)];
    });
    int64_t n = static_cast<int64_t>(std::ceil(o.rho * static_cast<double>(g.size)));
    if (g.kind == "attention") n = std::min(n, g.size - 1);
    std::vector<std::string> ids;
    for (int64_t i = 0; i < n; ++i)
      ids.push_back(g.variable_group_id(order[static_cast<size_t>(i)]));
    // Back up the producing tensors, zero, measure, restore.
    std::map<std::string, torch::Tensor> backup;
    for (const auto& s : g.slices)
      if (s.role == GroupSlice::Role::Producing && !backup.count(s.param))
        backup[s.param] = params.at(s.param).detach().clone();
    NodeGroupKnowledge k{g.id, g.kind, g.layer, n, 0, 0, 0, false};
    try {
      zero_groups(model, deps, ids);
      k.loss = perplexity(model, tokens, popt, ctx).mean_nll;
    } catch (...) {
      torch::NoGradGuard no_grad;
      for (auto& [name, t] : backup)
        params.at(name).copy_(t);
      throw;
    }
    {
      torch::NoGradGuard no_grad;
      for (auto& [name, t] : backup)
        params.at(name).copy_(t);
    }
    r.groups.push_back(k);
  }
  if (split) {
    auto joined = torch::zeros({static_cast<int64_t>(r.groups.size()), 2}, torch::kFloat64);
    auto v = joined.accessor<double, 2>();
    for (size_t i = 0; i < r.groups.size(); ++i) {
      v[static_cast<int64_t>(i)][0] = r.groups[i].loss;
      v[static_cast<int64_t>(i)][1] = static_cast<double>(r.groups[i].zeroed);
    }
    o.ranks->allreduce_sum(joined);
    for (size_t i = 0; i < r.groups.size(); ++i) {
      r.groups[i].loss = v[static_cast<int64_t>(i)][0];
      r.groups[i].zeroed = static_cast<int64_t>(std::llround(v[static_cast<int64_t>(i)][1]));
    }
  }
  for (auto& g : r.groups)
    g.delta = g.loss - r.base_loss;
  double max_delta = 0;
  for (const auto& g : r.groups)
    max_delta = std::max(max_delta, g.delta);
  for (auto& g : r.groups)
    g.normalized = max_delta > 0 ? g.delta / max_delta : 0.0;
  std::vector<size_t> rank(r.groups.size());
  std::iota(rank.begin(), rank.end(), 0);
  std::stable_sort(rank.begin(), rank.end(),
                   [&](size_t a, size_t b) { return r.groups[a].delta > r.groups[b].delta; });
  const auto n_protect =
      static_cast<size_t>(std::ceil(o.gamma * static_cast<double>(r.groups.size()) - 1e-9));
  for (size_t i = 0; i < n_protect && i < rank.size(); ++i) {
    r.groups[rank[i]].protect = true;
    r.protected_ids.push_back(r.groups[rank[i]].id);
  }
  task_report(ctx, "knowledge", total, total);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace lorashear
