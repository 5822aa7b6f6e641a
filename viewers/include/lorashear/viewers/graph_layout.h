#pragma once
// Layout of the traced dependency graph for the graph viewer, computed with Graphviz (cgraph +
// gvc, `dot`): one cluster per decoder layer and, inside an expanded layer, one per prunable node
// group. A collapsed layer is a single box. Plain data (no Qt, no LibTorch in this header), so a
// worker thread computes it and the view only draws; coordinates are Graphviz points (1/72 inch)
// with y growing downwards.

#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace lorashear {

struct TraceGraph;
struct DependencyGraph;

struct LayoutPoint {
  double x = 0, y = 0;
};

struct LayoutNode {
  std::string id;      ///< Graphviz name: "n12" (operator 12), "L3" (collapsed layer), "tokens"…
  int64_t op = -1;     ///< trace node index; -1 for collapsed layers and the input/output
  int64_t layer = -1;  ///< decoder layer, -1 outside the layers
  bool collapsed = false;  ///< a whole layer drawn as one box
  std::string label;       ///< lines separated by '\n'
  std::string fill;        ///< #rrggbb (the node group kind's colour)
  std::string node_group;  ///< home node group id, "" if none
  std::string kind;        ///< the home node group's kind ("attention", "mlp", …, "other")
  LayoutPoint centre;
  double width = 0, height = 0;
};

struct LayoutEdge {
  int64_t from = -1, to = -1;       ///< indices into GraphLayout::nodes
  std::vector<LayoutPoint> points;  ///< cubic Bézier control points (1 + 3k)
  bool has_tip = false;             ///< the arrow head runs from the last point to `tip`
  LayoutPoint tip;
  bool faint = false;  ///< a rotary-table edge
};

struct LayoutCluster {
  std::string id;  ///< "L3" for a layer, the node group id inside it
  std::string label;
  int64_t layer = -1;
  std::string colour;  ///< outline
  LayoutPoint top_left, bottom_right;
};

struct GraphLayout {
  std::vector<LayoutNode> nodes;
  std::vector<LayoutEdge> edges;
  std::vector<LayoutCluster> clusters;  ///< layers first, then node groups
  double width = 0, height = 0;
  double seconds = 0;  ///< time spent in Graphviz
  /// Index of the node with Graphviz name `id`, or -1.
  int64_t find(const std::string& id) const;
};

/// The Graphviz library's own version string (gvcVersion), asked of the layout's one context
/// under the same lock; empty when Graphviz does not say. May be called from any thread.
std::string graphviz_library_version();

/// Lays out `graph` with every layer in `expanded` drawn operator by operator and the others
/// collapsed. May be called from any thread (calls into Graphviz, which keeps global state, are
/// serialised). Throws std::runtime_error when Graphviz fails.
GraphLayout layout_graph(const TraceGraph& graph, const DependencyGraph& deps,
                         const std::set<int64_t>& expanded);

}  // namespace lorashear
