#pragma once
// Exports of a traced graph with its dependency analysis: Graphviz DOT (one cluster per decoder
// layer, inside it one per node group; nodes coloured by the kind of their node group) and JSON
// (nodes, edges, node groups with their variable groups and slices, accounting, counts).

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>

#include "lorashear/graph/dependency.h"
#include "lorashear/graph/trace.h"

namespace lorashear {

struct GraphExportOptions {
  /// Decoder layers to include (inclusive); -1 = from the first / to the last. Operators outside
  /// the layers (embedding, final norm, head) are always included; the omitted layers become
  /// one placeholder node so the graph stays connected.
  int64_t first_layer = -1;
  int64_t last_layer = -1;
};

/// Parses "3", "0-3" or "" (all) into options; throws UsageError naming the text otherwise, or
/// when the range is outside the model's `n_layers`.
GraphExportOptions parse_layer_range(const std::string& text, int64_t n_layers);

/// Colour (#rrggbb) of a node group kind (attention, mlp, hidden, …), shared with the viewers.
const char* node_group_colour(const std::string& kind);

std::string graph_to_dot(const TraceGraph& graph, const DependencyGraph& deps,
                         const GraphExportOptions& options = {});

nlohmann::json graph_to_json(const TraceGraph& graph, const DependencyGraph& deps,
                             const GraphExportOptions& options = {});

/// The node groups alone (what `lorashear groups --json` prints).
nlohmann::json node_groups_to_json(const DependencyGraph& deps);

}  // namespace lorashear
