#pragma once
// Knowledge distribution analysis (LORASHEAR.md §2): for every prunable node group, zero the
// fraction rho of its variable groups with the lowest magnitude, measure the loss on evaluation
// text, restore. The increase Delta_N, normalised by its maximum, says where the knowledge lives;
// the ceil(gamma · |N|) node groups with the largest Delta become unprunable.

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "lorashear/graph/dependency.h"
#include "lorashear/model/llama.h"
#include "lorashear/task.h"

namespace lorashear {
namespace dist {
class Distributed;
}

struct KnowledgeOptions {
  double rho = 0.5;       ///< fraction of each node group's variable groups zeroed
  double gamma = 0.2;     ///< fraction of node groups marked unprunable
  int64_t seq_len = 128;  ///< evaluation windows (non-overlapping)
  int64_t windows = 64;   ///< at most this many
  int64_t batch = 8;
  /// Data parallel: the base loss's windows and then the node groups are dealt round-robin over
  /// these ranks, the losses combined; every rank returns the one-process result. Every rank must
  /// call. nullptr: this process alone.
  dist::Distributed* ranks = nullptr;
  /// Throws UsageError naming the option.
  void validate() const;
};

struct NodeGroupKnowledge {
  std::string id;
  std::string kind;
  int64_t layer = -1;
  int64_t zeroed = 0;     ///< variable groups zeroed for the measurement
  double loss = 0;        ///< with them zeroed
  double delta = 0;       ///< loss − base loss
  double normalized = 0;  ///< delta / max delta
  bool protect = false;   ///< among the top gamma
};

struct KnowledgeResult {
  double base_loss = 0;
  std::string protocol;                    ///< evaluation windows used
  std::vector<NodeGroupKnowledge> groups;  ///< in node group order
  std::vector<std::string> protected_ids;  ///< the unprunable marks, largest delta first
  double seconds = 0;
  nlohmann::json to_json() const;
};

/// `tokens` is the evaluation text. The model is restored exactly after each measurement.
KnowledgeResult analyze_knowledge(LlamaModelImpl& model, const DependencyGraph& deps,
                                  const std::vector<int64_t>& tokens,
                                  const KnowledgeOptions& options = {},
                                  const TaskContext* ctx = nullptr);

}  // namespace lorashear
