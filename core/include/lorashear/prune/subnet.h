#pragma once
// Subnet construction (LORASHEAR.md §5): physically remove variable groups — found by the
// dependency analysis and named by their stable ids (`L3.attn.kv1`, `L3.mlp.c117`) — from a model,
// its LoRA factors and biases included.

#include <string>
#include <vector>

#include "lorashear/graph/dependency.h"
#include "lorashear/model/llama.h"

namespace lorashear {

/// The dependency analysis of `model`'s structure (adapters included), traced on the meta device:
/// no forward pass over the weights.
DependencyGraph analyze_model(const LlamaModelImpl& model, const DependencyOptions& options = {});

/// Sets every producing slice of the groups to zero in place (W rows, LoRA B rows, biases). The
/// model's outputs then equal those of `construct_subnet`'s result. Validates like
/// DependencyGraph::plan; nothing is modified when it throws.
void zero_groups(LlamaModelImpl& model, const DependencyGraph& deps,
                 const std::vector<std::string>& ids);

/// A new model without the groups' producing and consuming slices, with per-layer dims and the
/// original indices of what is kept updated in its configuration; adapters (if attached) are
/// carried over, sliced. Refuses (UsageError naming the group; the model is never modified)
/// unknown or unprunable groups, duplicates, and removing every kv group of a layer.
LlamaModel construct_subnet(const LlamaModelImpl& model, const DependencyGraph& deps,
                            const std::vector<std::string>& ids);

}  // namespace lorashear
