#pragma once
// Subnet construction (LORASHEAR.md §5): physically remove variable groups — whole kv groups of an
// attention block (a kv head with the query heads that read it) or MLP channels — from a model.

#include <cstdint>
#include <string>
#include <vector>

#include "lorashear/model/llama.h"

namespace lorashear {

/// A minimally removable structure, named by a stable id that survives pruning:
/// `L3.attn.kv1` (kv head 1 of layer 3 with its query heads) or `L3.mlp.c117` (MLP channel 117).
/// Indices refer to the *original* model the ids were first taken from.
struct VariableGroupRef {
  enum class Kind { AttentionKv, MlpChannel };
  Kind kind = Kind::AttentionKv;
  int64_t layer = 0;
  int64_t index = 0;

  std::string id() const;
  /// Throws UsageError naming the text when it is not of the forms above.
  static VariableGroupRef parse(const std::string& id);
  bool operator<(const VariableGroupRef& o) const;
  bool operator==(const VariableGroupRef& o) const;
};

/// Sets the producing slices of each group to zero in place (q/k/v rows and biases of a kv group;
/// gate/up rows of a channel). The model's outputs then equal those of `construct_subnet`'s result.
/// Validates like construct_subnet.
void zero_groups(LlamaModelImpl& model, const std::vector<VariableGroupRef>& groups);

/// A new model without the groups' producing and consuming slices (o_proj / down_proj columns),
/// with per-layer dims updated; every other tensor is copied. Refuses (UsageError naming the group,
/// model unchanged) unknown groups, duplicates, and removing every kv group of a layer.
LlamaModel construct_subnet(const LlamaModelImpl& model,
                            const std::vector<VariableGroupRef>& remove);

/// Parameter count of the model `construct_subnet(model, remove)` would return, without building
/// it.
int64_t subnet_parameters(const ModelConfig& cfg, const std::vector<VariableGroupRef>& remove);

}  // namespace lorashear
