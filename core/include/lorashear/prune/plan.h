#pragma once
// The pruning plan (LORASHEAR.md §2–§3): how much to remove, overall and per layer or node group,
// and what to protect. Saved as the JSON file the CLI reads and the GUI's plan editor writes:
//
//   {"format": "lorashear-plan", "version": 1,
//    "target_ratio": 0.2,                           fraction of the model's parameters removed
//    "layer_ratios": {"0": 0.0, "31": 0.1},         fraction of each node group of that layer
//    "node_group_ratios": {"L3.mlp": 0.5},          fraction of that node group's variable groups
//    "unprunable": ["L0.attn", "L31.mlp"],          node groups left whole
//    "uniform": false}                              same size in every layer (see below)
//
// A node group ratio wins over a layer ratio; node groups with neither share what the target still
// needs at one common ratio.
//
// Uniform plans keep the same number of kv groups in every layer's attention and the same MLP
// width in every layer (each layer still chooses which ones go), so the pruned model is a plain
// LLaMA that transformers / vLLM load. A node group kept whole (unprunable, protected, ratio 0)
// then keeps every layer of its kind whole, and fixed ratios of one kind must agree.

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <map>
#include <set>
#include <string>

#include "lorashear/graph/dependency.h"

namespace lorashear {

struct PruningPlan {
  double target_ratio = 0.2;
  std::map<int64_t, double> layer_ratios;
  std::map<std::string, double> node_group_ratios;
  std::set<std::string> unprunable;
  bool uniform = false;  ///< the same kept counts in every layer (transformers-loadable)

  nlohmann::json to_json() const;
  /// Throws InputError naming `source` and the field.
  static PruningPlan from_json(const nlohmann::json& j, const std::string& source);
  /// Atomic write; InputError/Error naming the path.
  void save(const std::string& path) const;
  static PruningPlan load(const std::string& path);
};

/// The plan turned into counts for one model.
struct ResolvedPlan {
  struct Entry {
    size_t node_group = 0;  ///< index into DependencyGraph::node_groups
    int64_t remove = 0;     ///< variable groups to remove
    double ratio = 0;       ///< remove / size
    bool fixed = false;     ///< set by the plan rather than shared from the target
  };
  std::vector<Entry> entries;  ///< every prunable node group, in graph order
  int64_t total_groups = 0;    ///< K
  int64_t params_removed = 0;  ///< exact, by the accounting
  double achieved_ratio = 0;   ///< params_removed / model parameters
  /// Uniform plans: per kind, the count every layer keeps and what fixed it ("every mlp keeps 256
  /// of 256: L0.mlp is kept whole"), for the user.
  std::vector<std::string> notes;

  /// Number to remove from node group `index` (0 if absent).
  int64_t count(size_t node_group) const;
};

/// Throws UsageError with what is possible when the plan cannot be met: a ratio outside (0, 1),
/// names the model lacks, a ratio on an unprunable group, every kv group of a layer, or a target
/// beyond what the prunable groups hold; for a uniform plan also fixed counts that disagree
/// between layers, naming the node groups.
ResolvedPlan resolve_plan(const PruningPlan& plan, const DependencyGraph& deps);

}  // namespace lorashear
