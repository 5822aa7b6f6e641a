#pragma once
// Dependency analysis over a traced operator graph (LORASHEAR.md §1): channel coupling is
// propagated through the recorded operators (linear in/out, elementwise add and mul, reshape into
// heads, RoPE, GQA repeat, RMSNorm, embedding, concat/split) to find the node groups — coupled
// operator sets — and inside each prunable one its variable groups (minimally removable,
// zero-invariant structures) with the parameter slices they own. Also the accounting of parameters
// and FLOPs per token for groups, layers, the model and any removal set before it is applied.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "lorashear/graph/trace.h"

namespace lorashear {

/// Where the variable groups of a node group sit in one parameter: along `dim`, group k owns the
/// indices k*block + r*step + j for r < repeats, j < block.
struct GroupSlice {
  enum class Role {
    Producing,  ///< rows that compute the channels (W rows, LoRA B rows, biases)
    Consuming,  ///< columns that read them (next W's columns, LoRA A columns)
    Scaling,    ///< elementwise gains over them (RMSNorm weights)
  };
  std::string param;
  std::vector<int64_t> shape;
  int dim = 0;
  Role role = Role::Producing;
  int64_t block = 1, step = 1, repeats = 1;
  double flops_per_element = 0;  ///< per token: 2 for a matmul weight, 1 for a bias

  int64_t indices_per_group() const { return block * repeats; }
  /// Elements of the parameter one group owns through this slice.
  int64_t elements_per_group() const;
  /// The indices along `dim` that group `k` owns, ascending.
  std::vector<int64_t> indices(int64_t k) const;
};

const char* role_name(GroupSlice::Role role);

struct Cost {
  int64_t params = 0;
  double flops = 0;  ///< per token, forward (multiply-add = 2)
  Cost& operator+=(const Cost& o) {
    params += o.params;
    flops += o.flops;
    return *this;
  }
};

struct NodeGroup {
  /// `L3.attn`, `L3.mlp`; unprunable ones by what they are: `hidden`, `vocab`, `head_dim`,
  /// `L3.attn.kv_repeat`, `L3.attn.q_proj.lora_rank`.
  std::string id;
  /// attention, mlp, channels (prunable elsewhere), hidden, vocab, head_dim, kv_repeat, lora_rank,
  /// other.
  std::string kind;
  int64_t layer = -1;
  bool prunable = false;
  std::string reason;  ///< why it is not prunable
  int64_t size = 0;    ///< number of variable groups
  /// Variable group ids are `prefix + original index`: `L3.attn.kv` (a kv head with its query
  /// heads; one head under MHA), `L3.mlp.c` (one channel).
  std::string group_prefix;
  /// Original index of each current variable group (ids survive pruning); ascending.
  std::vector<int64_t> original_index;
  std::vector<GroupSlice> slices;
  std::vector<int64_t> nodes;  ///< trace nodes whose tensors or parameters carry these channels
  Cost per_group;              ///< what removing one variable group removes

  std::string variable_group_id(int64_t current_index) const;
  Cost total() const { return {per_group.params * size, per_group.flops * size}; }
};

struct DependencyOptions {
  /// When the traced model has no adapters attached, a group is prunable if one of its producing
  /// layers is among these LoRA targets (LORASHEAR.md §1: LoRA targets decide the search space).
  std::vector<std::string> lora_targets = LoraConfig::default_targets();
  /// Sequence length for attention FLOPs: a token attends on average to (context + 1) / 2
  /// positions. 0 = the model's max_position_embeddings.
  int64_t context = 0;
};

/// A validated removal set: current indices to remove, per node group (index into node_groups).
using RemovalPlan = std::map<size_t, std::vector<int64_t>>;

struct RemovalCost {
  Cost total;
  std::vector<Cost> layers;  ///< per decoder layer
};

struct DependencyGraph {
  std::vector<NodeGroup> node_groups;
  /// Per trace node, the node group it is drawn with (prunable first), or -1.
  std::vector<int64_t> home_group;
  int64_t context = 0;
  Cost total;                ///< the whole model (tied embeddings once; FLOPs of matmuls)
  std::vector<Cost> layers;  ///< per decoder layer
  Cost outside_layers;       ///< embedding, final norm, head

  /// Index of the node group `id`, or -1.
  int64_t find_node_group(const std::string& id) const;
  /// (node group index, current index) of a variable group id; throws UsageError when unknown.
  std::pair<size_t, int64_t> resolve(const std::string& variable_group_id) const;
  /// Checks a removal set: every id known, prunable, listed once, and no attention node group
  /// left without a kv group. Throws UsageError naming the first offending id.
  RemovalPlan plan(const std::vector<std::string>& variable_group_ids) const;
  /// Parameters and FLOPs a removal set takes away (exact, before anything is applied).
  RemovalCost removal_cost(const RemovalPlan& plan) const;
  RemovalCost removal_cost(const std::vector<std::string>& ids) const {
    return removal_cost(plan(ids));
  }
  int64_t prunable_variable_groups() const;

  /// FLOPs of each attention core (scores and weighted values), with the node groups that split
  /// its heads; used by removal_cost.
  struct AttentionCost {
    int64_t layer = -1;
    double flops = 0;
    std::vector<size_t> groups;
  };
  std::vector<AttentionCost> attention_costs;
};

DependencyGraph analyze_dependencies(const TraceGraph& graph,
                                     const DependencyOptions& options = {});

}  // namespace lorashear
