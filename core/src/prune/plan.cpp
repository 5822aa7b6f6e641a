#include "lorashear/prune/plan.h"

#include <nlohmann/json.hpp>

#include <cmath>

#include "lorashear/errors.h"
#include "lorashear/io/files.h"
#include "lorashear/io/json.h"

namespace lorashear {

namespace {

std::string pct(double r) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100.0 * r);
  return buf;
}

// The most of node group `g` a plan may remove: attention keeps one kv group.
int64_t max_removable(const NodeGroup& g) {
  return g.kind == "attention" ? g.size - 1 : g.size;
}

}  // namespace

nlohmann::json PruningPlan::to_json() const {
  nlohmann::json layers = nlohmann::json::object();
  for (const auto& [l, r] : layer_ratios)
    layers[std::to_string(l)] = r;
  return {{"format", "lorashear-plan"},
          {"version", 1},
          {"target_ratio", target_ratio},
          {"layer_ratios", layers},
          {"node_group_ratios", node_group_ratios},
          {"unprunable", unprunable}};
}

PruningPlan PruningPlan::from_json(const nlohmann::json& j, const std::string& source) {
  auto fail = [&](const std::string& field, const std::string& what) {
    throw InputError(source + ": field '" + field + "': " + what);
  };
  if (!j.is_object()) throw InputError(source + ": expected a JSON object");
  if (j.contains("format") && j["format"] != "lorashear-plan")
    fail("format", "expected \"lorashear-plan\"");
  PruningPlan p;
  if (!j.contains("target_ratio") || !j["target_ratio"].is_number())
    fail("target_ratio", "missing or not a number");
  p.target_ratio = j["target_ratio"].get<double>();
  if (j.contains("layer_ratios")) {
    if (!j["layer_ratios"].is_object()) fail("layer_ratios", "expected an object");
    for (const auto& [k, v] : j["layer_ratios"].items()) {
      int64_t layer = -1;
      try {
        size_t used = 0;
        layer = std::stoll(k, &used);
        if (used != k.size()) layer = -1;
      } catch (const std::exception&) {
      }
      if (layer < 0) fail("layer_ratios", "'" + k + "' is not a layer number");
      if (!v.is_number()) fail("layer_ratios." + k, "expected a number");
      p.layer_ratios[layer] = v.get<double>();
    }
  }
  if (j.contains("node_group_ratios")) {
    if (!j["node_group_ratios"].is_object()) fail("node_group_ratios", "expected an object");
    for (const auto& [k, v] : j["node_group_ratios"].items()) {
      if (!v.is_number()) fail("node_group_ratios." + k, "expected a number");
      p.node_group_ratios[k] = v.get<double>();
    }
  }
  if (j.contains("unprunable")) {
    if (!j["unprunable"].is_array()) fail("unprunable", "expected a list of node group ids");
    for (const auto& v : j["unprunable"]) {
      if (!v.is_string()) fail("unprunable", "expected node group ids, found " + v.dump());
      p.unprunable.insert(v.get<std::string>());
    }
  }
  return p;
}

void PruningPlan::save(const std::string& path) const {
  io::write_file_atomic(path, to_json().dump(2) + "\n");
}

PruningPlan PruningPlan::load(const std::string& path) {
  return from_json(io::read_json_file(path), path);
}

int64_t ResolvedPlan::count(size_t node_group) const {
  for (const auto& e : entries)
    if (e.node_group == node_group) return e.remove;
  return 0;
}

ResolvedPlan resolve_plan(const PruningPlan& plan, const DependencyGraph& deps) {
  if (!(plan.target_ratio > 0 && plan.target_ratio < 1))
    throw UsageError("target ratio " + std::to_string(plan.target_ratio) +
                     " is outside (0, 1): it is the fraction of parameters to remove");
  const int64_t n_layers = static_cast<int64_t>(deps.layers.size());
  for (const auto& [layer, r] : plan.layer_ratios) {
    if (layer >= n_layers)
      throw UsageError("the plan names layer " + std::to_string(layer) +
                       "; the model has layers 0 to " + std::to_string(n_layers - 1));
    if (!(r >= 0 && r < 1))
      throw UsageError("layer " + std::to_string(layer) + ": ratio " + std::to_string(r) +
                       " is outside [0, 1)");
  }
  auto check_group = [&](const std::string& id, const char* what) {
    const auto i = deps.find_node_group(id);
    if (i < 0)
      throw UsageError("the plan's " + std::string(what) + " name node group '" + id +
                       "', which the model does not have (ids look like L0.attn, L0.mlp)");
    return static_cast<size_t>(i);
  };
  for (const auto& id : plan.unprunable)
    check_group(id, "unprunable marks");
  std::map<size_t, double> fixed_ratio;
  for (const auto& [id, r] : plan.node_group_ratios) {
    const auto i = check_group(id, "node group ratios");
    if (!deps.node_groups[i].prunable)
      throw UsageError("the plan sets a ratio for " + id +
                       ", which is not prunable: " + deps.node_groups[i].reason);
    if (!(r >= 0 && r <= 1))
      throw UsageError(id + ": ratio " + std::to_string(r) + " is outside [0, 1]");
    fixed_ratio[i] = r;
  }

  ResolvedPlan out;
  const double total = static_cast<double>(deps.total.params);
  double needed = plan.target_ratio * total;
  std::vector<size_t> free;
  for (size_t i = 0; i < deps.node_groups.size(); ++i) {
    const auto& g = deps.node_groups[i];
    if (!g.prunable) continue;
    ResolvedPlan::Entry e{i, 0, 0, true};
    auto fr = fixed_ratio.find(i);
    auto lr = plan.layer_ratios.find(g.layer);
    if (plan.unprunable.count(g.id)) {
      e.remove = 0;
    } else if (fr != fixed_ratio.end() || lr != plan.layer_ratios.end()) {
      const double r = fr != fixed_ratio.end() ? fr->second : lr->second;
      e.remove = std::llround(r * static_cast<double>(g.size));
      if (e.remove > max_removable(g))
        throw UsageError(
            g.id + ": ratio " + std::to_string(r) + " would remove every kv group; at most " +
            std::to_string(max_removable(g)) + " of " + std::to_string(g.size) + " can go (ratio " +
            std::to_string(double(max_removable(g)) / g.size) + ")");
    } else {
      e.fixed = false;
      free.push_back(out.entries.size());
    }
    needed -= static_cast<double>(e.remove * g.per_group.params);
    out.entries.push_back(e);
  }
  if (needed < 0)
    throw UsageError("the plan's fixed ratios already remove " +
                     pct(plan.target_ratio - needed / total) +
                     " of the parameters, more than the "
                     "target " +
                     pct(plan.target_ratio) + "; lower them or raise the target");

  if (out.entries.empty() && plan.target_ratio > 0)
    throw UsageError(
        "nothing can be removed: no node group is prunable (a node group needs a "
        "LoRA target on a layer producing its channels: q/k/v_proj for attention, "
        "gate/up_proj for MLP channels)");

  // Water-filling: one common ratio over the free node groups, those that hit their cap fixed
  // at it and the rest raised.
  auto free_params = [&](size_t e) {
    const auto& g = deps.node_groups[out.entries[e].node_group];
    return static_cast<double>(g.size * g.per_group.params);
  };
  auto cap = [&](size_t e) {
    const auto& g = deps.node_groups[out.entries[e].node_group];
    return static_cast<double>(max_removable(g)) / static_cast<double>(g.size);
  };
  std::vector<size_t> open = free;
  double ratio = 0;
  while (true) {
    double pool = 0;
    for (auto e : open)
      pool += free_params(e);
    ratio = pool > 0 ? needed / pool : (needed > 0 ? INFINITY : 0);
    std::vector<size_t> still;
    bool capped = false;
    for (auto e : open) {
      if (ratio > cap(e)) {
        auto& entry = out.entries[e];
        const auto& g = deps.node_groups[entry.node_group];
        entry.remove = max_removable(g);
        needed -= static_cast<double>(entry.remove * g.per_group.params);
        capped = true;
      } else {
        still.push_back(e);
      }
    }
    open = std::move(still);
    if (!capped) break;
    if (open.empty()) {
      if (needed > 0.5) {
        double possible = 0;
        for (const auto& e : out.entries)
          possible +=
              static_cast<double>(e.remove * deps.node_groups[e.node_group].per_group.params);
        throw UsageError("target " + pct(plan.target_ratio) +
                         " is more than this plan can remove: at most " + pct(possible / total) +
                         " (unprunable groups stay whole and every layer keeps one kv group)");
      }
      break;
    }
  }
  // Counts: floor of the common ratio, then single groups where they bring the total closest.
  std::vector<std::pair<double, size_t>> remainders;
  for (auto e : open) {
    auto& entry = out.entries[e];
    const auto& g = deps.node_groups[entry.node_group];
    const double exact = ratio * static_cast<double>(g.size);
    entry.remove = std::min<int64_t>(static_cast<int64_t>(std::floor(exact)), max_removable(g));
    needed -= static_cast<double>(entry.remove * g.per_group.params);
    remainders.push_back({exact - std::floor(exact), e});
  }
  std::sort(remainders.begin(), remainders.end(), std::greater<>());
  for (const auto& [frac, e] : remainders) {
    auto& entry = out.entries[e];
    const auto& g = deps.node_groups[entry.node_group];
    const double pe = static_cast<double>(g.per_group.params);
    if (needed >= pe / 2 && entry.remove < max_removable(g)) {
      ++entry.remove;
      needed -= pe;
    }
  }
  RemovalPlan removal;
  for (auto& e : out.entries) {
    const auto& g = deps.node_groups[e.node_group];
    e.ratio = static_cast<double>(e.remove) / static_cast<double>(g.size);
    out.total_groups += e.remove;
    for (int64_t k = 0; k < e.remove; ++k)
      removal[e.node_group].push_back(k);  // which ones does not change the count
  }
  out.params_removed = deps.removal_cost(removal).total.params;
  out.achieved_ratio = static_cast<double>(out.params_removed) / total;
  return out;
}

}  // namespace lorashear
