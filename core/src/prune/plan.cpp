#include "lorashear/prune/plan.h"

#include <nlohmann/json.hpp>

#include <algorithm>
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

[[noreturn]] void over_target(const std::string& what, double target, double removed) {
  throw UsageError(what + " already remove " + pct(removed) +
                   " of the parameters, more than the target " + pct(target) +
                   "; lower them or raise the target");
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
          {"unprunable", unprunable},
          {"uniform", uniform}};
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
  if (j.contains("uniform")) {
    if (!j["uniform"].is_boolean()) fail("uniform", "expected true or false");
    p.uniform = j["uniform"].get<bool>();
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

namespace {

// Exact removal accounting of the chosen counts (the same as the non-uniform path).
void finish(ResolvedPlan& out, const DependencyGraph& deps) {
  RemovalPlan removal;
  for (auto& e : out.entries) {
    const auto& g = deps.node_groups[e.node_group];
    e.ratio = static_cast<double>(e.remove) / static_cast<double>(g.size);
    out.total_groups += e.remove;
    for (int64_t k = 0; k < e.remove; ++k)
      removal[e.node_group].push_back(k);  // which ones does not change the count
  }
  out.params_removed = deps.removal_cost(removal).total.params;
  out.achieved_ratio =
      static_cast<double>(out.params_removed) / static_cast<double>(deps.total.params);
}

// Uniform plans: per kind (attention, mlp), one kept count for every layer. A kind with a count
// fixed anywhere (kept whole, or a ratio) has it everywhere; the free kinds share what the target
// still needs at one common ratio, rounded in steps of one group in every layer.
ResolvedPlan resolve_uniform(const PruningPlan& plan, const DependencyGraph& deps,
                             const std::map<size_t, double>& fixed_ratio) {
  struct Kind {
    std::vector<size_t> groups;  // every node group of the kind, prunable or not
    int64_t min_size = 0;
    int64_t min_kept = 0;  // attention keeps one kv group
    int64_t kept = -1;     // fixed by the plan, or -1
    std::string fixed_by;  // what fixed it, for messages
    int64_t extra = 0;     // groups removed per layer beyond equalising (free kinds)
    double step = 0;       // parameters of one group in every layer
    double base = 0;       // parameters removed by equalising sizes to min_size
  };
  std::map<std::string, Kind> kinds;
  for (size_t i = 0; i < deps.node_groups.size(); ++i) {
    const auto& g = deps.node_groups[i];
    if (g.kind != "attention" && g.kind != "mlp" && !(g.prunable && g.kind == "channels")) continue;
    auto& k = kinds[g.kind];
    k.groups.push_back(i);
    k.min_size = k.groups.size() == 1 ? g.size : std::min(k.min_size, g.size);
    k.min_kept = g.kind == "attention" ? 1 : 0;
  }
  for (auto& [kind, k] : kinds) {
    for (const auto i : k.groups) {
      const auto& g = deps.node_groups[i];
      int64_t kept = -1;
      std::string why;
      const auto fr = fixed_ratio.find(i);
      const auto lr = plan.layer_ratios.find(g.layer);
      if (!g.prunable) {
        kept = g.size;
        why = g.id + " is not prunable (" + g.reason + ")";
      } else if (plan.unprunable.count(g.id)) {
        kept = g.size;
        why = g.id + " is kept whole";
      } else if (fr != fixed_ratio.end() || lr != plan.layer_ratios.end()) {
        const double r = fr != fixed_ratio.end() ? fr->second : lr->second;
        kept = g.size - std::llround(r * static_cast<double>(g.size));
        why = g.id + " has ratio " + pct(r) + (fr != fixed_ratio.end() ? "" : " (its layer's)");
      }
      if (kept < 0) continue;
      if (k.kept >= 0 && kept != k.kept)
        throw UsageError("same size in every layer: " + k.fixed_by + ", so every " + kind +
                         " keeps " + std::to_string(k.kept) + ", but " + why + " and keeps " +
                         std::to_string(kept) + "; make them agree or drop the uniform option");
      k.kept = kept;
      k.fixed_by = why;
    }
    if (k.kept >= 0 && k.kept > k.min_size)
      throw UsageError("same size in every layer: " + k.fixed_by + " and keeps " +
                       std::to_string(k.kept) + ", but a layer's " + kind + " has only " +
                       std::to_string(k.min_size));
    if (k.kept >= 0 && k.kept < k.min_kept)
      throw UsageError("same size in every layer: " + k.fixed_by +
                       ", which would remove every kv group of every layer");
    for (const auto i : k.groups) {
      const auto& g = deps.node_groups[i];
      const double pg = static_cast<double>(g.per_group.params);
      k.step += pg;
      k.base += static_cast<double>(g.size - k.min_size) * pg;
    }
  }

  const double total = static_cast<double>(deps.total.params);
  double needed = plan.target_ratio * total;
  std::vector<Kind*> free;
  for (auto& [kind, k] : kinds) {
    if (k.kept >= 0) {
      for (const auto i : k.groups)
        needed -= static_cast<double>(deps.node_groups[i].size - k.kept) *
                  static_cast<double>(deps.node_groups[i].per_group.params);
    } else {
      needed -= k.base;
      free.push_back(&k);
    }
  }
  if (needed < 0)
    over_target("same size in every layer: the fixed counts", plan.target_ratio,
                plan.target_ratio - needed / total);
  // Every kind fixed: like a non-uniform plan of fixed ratios, it stands as it is, unless that
  // is nothing at all (a node group kept whole in each kind).
  if (free.empty() && needed >= plan.target_ratio * total - 0.5) {
    std::string why;
    for (const auto& [kind, k] : kinds)
      why += (why.empty() ? "" : "; ") + k.fixed_by;
    throw UsageError("same size in every layer: nothing can be removed (" + why +
                     "); a node group kept whole keeps every layer of its kind whole under the "
                     "uniform option");
  }

  // Water-filling over the free kinds, in units of "one group in every layer".
  auto cap = [](const Kind* k) { return k->min_size - k->min_kept; };
  std::vector<Kind*> open = free;
  double ratio = 0;
  while (!open.empty()) {
    double pool = 0;
    for (const auto* k : open)
      pool += static_cast<double>(k->min_size) * k->step;
    ratio = pool > 0 ? needed / pool : 0;
    std::vector<Kind*> still;
    bool capped = false;
    for (auto* k : open) {
      if (ratio * static_cast<double>(k->min_size) > static_cast<double>(cap(k))) {
        k->extra = cap(k);
        needed -= static_cast<double>(k->extra) * k->step;
        capped = true;
      } else {
        still.push_back(k);
      }
    }
    open = std::move(still);
    if (!capped) break;
  }
  if (!free.empty() && open.empty() && needed > 0.5) {
    throw UsageError("target " + pct(plan.target_ratio) +
                     " is more than a plan with the same size in every layer can remove: at most " +
                     pct(plan.target_ratio - needed / total) +
                     " (every layer keeps one kv group; node groups kept whole keep their kind "
                     "whole)");
  }
  // Rounding: a step removes a group in every layer, and one attention step can be a tenth of
  // the model, so rounding each kind on its own can miss the target by that much. The coarser
  // kinds are rounded down or up, the finest kind takes what remains; the closest total wins.
  for (auto* k : open) {
    k->extra = std::min<int64_t>(
        static_cast<int64_t>(std::floor(ratio * static_cast<double>(k->min_size))), cap(k));
    needed -= static_cast<double>(k->extra) * k->step;
  }
  if (!open.empty()) {
    std::sort(open.begin(), open.end(),
              [](const Kind* a, const Kind* b) { return a->step > b->step; });
    Kind* finest = open.back();
    std::vector<int64_t> floors;
    for (const auto* k : open)
      floors.push_back(k->extra);
    double best = INFINITY;
    std::vector<int64_t> chosen = floors;
    const size_t coarse = open.size() - 1;
    for (uint64_t mask = 0; mask < (uint64_t{1} << coarse); ++mask) {
      std::vector<int64_t> extra = floors;
      double left = needed;
      bool ok = true;
      for (size_t i = 0; i < coarse; ++i)
        if (mask >> i & 1) {
          ok = ok && extra[i] < cap(open[i]);
          ++extra[i];
          left -= open[i]->step;
        }
      if (!ok) continue;
      const int64_t more = std::clamp<int64_t>(std::llround(left / finest->step), -floors.back(),
                                               cap(finest) - floors.back());
      extra.back() += more;
      left -= static_cast<double>(more) * finest->step;
      if (std::abs(left) < best) {
        best = std::abs(left);
        chosen = extra;
      }
    }
    for (size_t i = 0; i < open.size(); ++i)
      open[i]->extra = chosen[i];
  }
  auto kept_of = [](const Kind& k) { return k.kept >= 0 ? k.kept : k.min_size - k.extra; };
  // Rounded to nothing at all: say what the smallest steps are rather than run a no-op.
  bool removes = false;
  std::string steps;
  for (const auto& [kind, k] : kinds) {
    const int64_t kept = kept_of(k);
    for (const auto i : k.groups)
      removes = removes || deps.node_groups[i].size > kept;
    if (k.kept < 0)
      steps += (steps.empty() ? "" : ", ") + std::string("one ") +
               (kind == "attention" ? "kv group"
                : kind == "mlp"     ? "MLP channel"
                                    : "group") +
               " in every layer removes " + pct(k.step / total);
  }
  if (!removes)
    throw UsageError("same size in every layer: the target " + pct(plan.target_ratio) +
                     " rounds to removing nothing (" + steps + "); raise the target");

  ResolvedPlan out;
  std::map<size_t, std::pair<int64_t, bool>> removal;  // node group → (remove, fixed)
  for (auto& [kind, k] : kinds) {
    const int64_t kept = kept_of(k);
    const std::string unit = kind == "attention" ? " kv groups" : kind == "mlp" ? " channels" : "";
    out.notes.push_back("every " + std::string(kind == "mlp" ? "MLP" : kind) + " keeps " +
                        std::to_string(kept) + " of " + std::to_string(k.min_size) + unit +
                        (k.kept >= 0 ? ": " + k.fixed_by : std::string()));
    for (const auto i : k.groups)
      removal[i] = {deps.node_groups[i].size - kept, k.kept >= 0};
  }
  for (size_t i = 0; i < deps.node_groups.size(); ++i) {
    const auto& g = deps.node_groups[i];
    if (!g.prunable) continue;
    const auto it = removal.find(i);
    ResolvedPlan::Entry e{i, it == removal.end() ? 0 : it->second.first, 0,
                          it == removal.end() || it->second.second};
    out.entries.push_back(e);
  }
  finish(out, deps);
  return out;
}

}  // namespace

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
  if (plan.uniform) return resolve_uniform(plan, deps, fixed_ratio);

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
    over_target("the plan's fixed ratios", plan.target_ratio, plan.target_ratio - needed / total);

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
  finish(out, deps);
  return out;
}

}  // namespace lorashear
