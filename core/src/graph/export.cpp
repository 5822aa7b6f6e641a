#include "lorashear/graph/export.h"

#include <nlohmann/json.hpp>

#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "lorashear/errors.h"

namespace lorashear {

namespace {

std::string shape_text(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i)
    out += (i ? "," : "") + std::to_string(s[i]);
  return out + "]";
}

std::string dot_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

bool included(const GraphExportOptions& o, int64_t layer) {
  if (layer < 0) return true;
  return (o.first_layer < 0 || layer >= o.first_layer) &&
         (o.last_layer < 0 || layer <= o.last_layer);
}

// Consumers of each tensor.
std::vector<std::vector<int64_t>> consumers(const TraceGraph& g) {
  std::vector<std::vector<int64_t>> out(g.tensors.size());
  for (size_t i = 0; i < g.nodes.size(); ++i)
    for (auto t : g.nodes[i].inputs)
      out[static_cast<size_t>(t)].push_back(static_cast<int64_t>(i));
  return out;
}

// Edges between exported endpoints: node index, or pseudo-nodes for the token ids, the logits and
// the layers left out before and after the exported range.
constexpr int64_t kInput = -1, kOutput = -2, kElidedBefore = -3, kElidedAfter = -4;
struct Edge {
  int64_t from, to, tensor;
};

std::vector<Edge> edges(const TraceGraph& g, const GraphExportOptions& o, bool& elided) {
  const auto cons = consumers(g);
  auto endpoint = [&](int64_t node) {
    if (node < 0) return node;
    const int64_t layer = g.nodes[static_cast<size_t>(node)].layer;
    if (included(o, layer)) return node;
    return layer < o.first_layer ? kElidedBefore : kElidedAfter;
  };
  auto is_elided = [](int64_t n) { return n == kElidedBefore || n == kElidedAfter; };
  std::vector<Edge> out;
  std::set<std::pair<int64_t, int64_t>> seen;
  elided = false;
  for (size_t t = 0; t < g.tensors.size(); ++t) {
    const int64_t from = endpoint(g.tensors[t].producer < 0 ? kInput : g.tensors[t].producer);
    std::vector<int64_t> to = cons[t];
    if (static_cast<int64_t>(t) == g.output) to.push_back(kOutput);
    for (auto c : to) {
      const int64_t dst = endpoint(c);
      if (is_elided(from) && is_elided(dst)) continue;
      if (from == kInput && g.tensors[t].producer < 0 && static_cast<int64_t>(t) != g.input)
        continue;  // constants
      if (is_elided(from) || is_elided(dst)) {
        elided = true;
        if (!seen.insert({from, dst}).second) continue;
      }
      out.push_back({from, dst, static_cast<int64_t>(t)});
    }
  }
  return out;
}

std::string dot_id(int64_t n) {
  if (n == kInput) return "tokens";
  if (n == kOutput) return "logits";
  if (n == kElidedBefore) return "elided_before";
  if (n == kElidedAfter) return "elided_after";
  return "n" + std::to_string(n);
}

}  // namespace

GraphExportOptions parse_layer_range(const std::string& text, int64_t n_layers) {
  GraphExportOptions o;
  if (text.empty()) return o;
  static const std::regex re(R"((\d+)(?:-(\d+))?)");
  std::smatch m;
  if (!std::regex_match(text, m, re))
    throw UsageError("--layers '" + text + "': expected a layer or a range like 0-3");
  o.first_layer = std::stoll(m[1]);
  o.last_layer = m[2].matched ? std::stoll(m[2]) : o.first_layer;
  if (o.last_layer < o.first_layer || o.last_layer >= n_layers)
    throw UsageError("--layers '" + text + "': the model has layers 0 to " +
                     std::to_string(n_layers - 1));
  return o;
}

const char* node_group_colour(const std::string& kind) {
  static const std::map<std::string, const char*> colours = {
      {"attention", "#9ecae1"}, {"mlp", "#a1d99b"},       {"channels", "#c7e9c0"},
      {"hidden", "#e0e0e0"},    {"vocab", "#fdd0a2"},     {"head_dim", "#dadaeb"},
      {"kv_repeat", "#bcbddc"}, {"lora_rank", "#fcbba1"}, {"other", "#ffffff"}};
  const auto it = colours.find(kind);
  return it == colours.end() ? "#ffffff" : it->second;
}

std::string graph_to_dot(const TraceGraph& g, const DependencyGraph& deps,
                         const GraphExportOptions& o) {
  std::ostringstream out;
  out << "digraph lorashear {\n"
      << "  graph [rankdir=TB, fontname=\"Helvetica\", fontsize=11, newrank=true];\n"
      << "  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\", fontsize=9, "
         "fillcolor=\"#ffffff\"];\n"
      << "  edge [fontname=\"Helvetica\", fontsize=7, color=\"#555555\"];\n";
  auto node_line = [&](size_t i) {
    const auto& n = g.nodes[i];
    const int64_t home = deps.home_group[i];
    const auto& kind = home >= 0 ? deps.node_groups[static_cast<size_t>(home)].kind : "other";
    // First line: the operator (with its tag, `rope.q`), then the module and the parameters.
    const auto slash = n.name.find('/');
    const std::string op = slash == std::string::npos ? n.kind : n.name.substr(slash + 1);
    std::string label = op + "\\n" + dot_escape(n.module.empty() ? n.name : n.module);
    for (const auto& p : n.params)
      label += "\\n" + p.role + " " + shape_text(p.shape);
    std::ostringstream s;
    s << dot_id(static_cast<int64_t>(i)) << " [label=\"" << label << "\", fillcolor=\""
      << node_group_colour(kind) << "\", tooltip=\"" << dot_escape(n.name)
      << (home >= 0 ? " — " + deps.node_groups[static_cast<size_t>(home)].id : "") << "\"];\n";
    return s.str();
  };
  // Nodes by layer, and inside a layer by their prunable node group.
  std::map<int64_t, std::map<int64_t, std::vector<size_t>>> by_layer;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const auto& n = g.nodes[i];
    if (!included(o, n.layer)) continue;
    const int64_t home = deps.home_group[i];
    const bool clustered = home >= 0 && deps.node_groups[static_cast<size_t>(home)].prunable &&
                           deps.node_groups[static_cast<size_t>(home)].layer == n.layer;
    by_layer[n.layer][clustered ? home : -1].push_back(i);
  }
  for (const auto& [layer, groups] : by_layer) {
    const std::string indent = layer >= 0 ? "    " : "  ";
    if (layer >= 0)
      out << "  subgraph cluster_L" << layer << " {\n    label=\"layer " << layer
          << "\"; style=\"rounded\"; color=\"#888888\";\n";
    for (const auto& [home, nodes] : groups) {
      if (home >= 0) {
        const auto& ng = deps.node_groups[static_cast<size_t>(home)];
        out << indent << "subgraph cluster_"
            << std::regex_replace(ng.id, std::regex("[^A-Za-z0-9]"), "_") << " {\n"
            << indent << "  label=\"" << dot_escape(ng.id) << " (" << ng.size
            << (ng.kind == "attention" ? " kv groups" : " channels")
            << ")\"; style=\"rounded,filled\"; "
            << "fillcolor=\"#f7f7f7\"; color=\"" << node_group_colour(ng.kind) << "\";\n";
        for (auto i : nodes)
          out << indent << "  " << node_line(i);
        out << indent << "}\n";
      } else {
        for (auto i : nodes)
          out << indent << node_line(i);
      }
    }
    if (layer >= 0) out << "  }\n";
  }
  bool elided = false;
  const auto es = edges(g, o, elided);
  out << "  tokens [shape=ellipse, label=\"token ids\\n"
      << shape_text(g.tensors[static_cast<size_t>(g.input)].shape) << "\"];\n"
      << "  logits [shape=ellipse, label=\"logits\\n"
      << shape_text(g.tensors[static_cast<size_t>(g.output)].shape) << "\"];\n";
  if (elided) {
    if (o.first_layer > 0)
      out << "  elided_before [shape=note, label=\"layers 0-" << o.first_layer - 1
          << " not shown\", fillcolor=\"#f0f0f0\"];\n";
    if (o.last_layer >= 0 && o.last_layer + 1 < g.config.n_layers())
      out << "  elided_after [shape=note, label=\"layers " << o.last_layer + 1 << "-"
          << g.config.n_layers() - 1 << " not shown\", fillcolor=\"#f0f0f0\"];\n";
  }
  for (const auto& e : es) {
    // The rotary tables feed every RoPE: drawn faint and left out of the ranking.
    const auto producer = g.tensors[static_cast<size_t>(e.tensor)].producer;
    const bool table = producer >= 0 && g.nodes[static_cast<size_t>(producer)].kind == "rotary";
    out << "  " << dot_id(e.from) << " -> " << dot_id(e.to) << " [label=\""
        << shape_text(g.tensors[static_cast<size_t>(e.tensor)].shape) << "\""
        << (table ? ", style=dotted, color=\"#aaaaaa\", constraint=false" : "") << "];\n";
  }
  // Legend: the kinds that occur.
  std::set<std::string> kinds;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (deps.home_group[i] >= 0)
      kinds.insert(deps.node_groups[static_cast<size_t>(deps.home_group[i])].kind);
  out << "  subgraph cluster_legend {\n    label=\"node groups\"; style=\"rounded\"; "
         "color=\"#888888\";\n";
  for (const auto& k : kinds)
    out << "    legend_" << k << " [label=\"" << k << "\", fillcolor=\"" << node_group_colour(k)
        << "\"];\n";
  out << "  }\n}\n";
  return out.str();
}

nlohmann::json node_groups_to_json(const DependencyGraph& deps) {
  auto list = nlohmann::json::array();
  for (const auto& g : deps.node_groups) {
    auto slices = nlohmann::json::array();
    for (const auto& s : g.slices)
      slices.push_back({{"param", s.param},
                        {"shape", s.shape},
                        {"dim", s.dim},
                        {"role", role_name(s.role)},
                        {"block", s.block},
                        {"step", s.step},
                        {"repeats", s.repeats}});
    list.push_back({{"id", g.id},
                    {"kind", g.kind},
                    {"layer", g.layer},
                    {"prunable", g.prunable},
                    {"reason", g.prunable ? nlohmann::json(nullptr) : nlohmann::json(g.reason)},
                    {"variable_groups",
                     {{"count", g.size},
                      {"id_prefix", g.group_prefix},
                      {"original_indices", format_index_ranges(g.original_index)},
                      {"params_each", g.per_group.params},
                      {"flops_per_token_each", g.per_group.flops}}},
                    {"params", g.total().params},
                    {"flops_per_token", g.total().flops},
                    {"slices", slices},
                    {"nodes", g.nodes}});
  }
  return list;
}

nlohmann::json graph_to_json(const TraceGraph& g, const DependencyGraph& deps,
                             const GraphExportOptions& o) {
  nlohmann::json j;
  j["format"] = "lorashear-graph";
  j["version"] = 1;
  j["config"] = g.config.to_hf_json();
  j["lora"] = g.lora ? nlohmann::json{{"rank", g.lora->rank},
                                      {"alpha", g.lora->alpha},
                                      {"targets", g.lora->targets}}
                     : nlohmann::json(nullptr);
  j["has_weights"] = g.has_weights;
  j["layers"] = {{"first", o.first_layer < 0 ? 0 : o.first_layer},
                 {"last", o.last_layer < 0 ? g.config.n_layers() - 1 : o.last_layer}};
  auto nodes = nlohmann::json::array();
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const auto& n = g.nodes[i];
    if (!included(o, n.layer)) continue;
    auto params = nlohmann::json::array();
    for (const auto& p : n.params)
      params.push_back({{"name", p.name}, {"role", p.role}, {"shape", p.shape}});
    const int64_t home = deps.home_group[i];
    nodes.push_back(
        {{"id", i},
         {"name", n.name},
         {"kind", n.kind},
         {"module", n.module},
         {"layer", n.layer},
         {"node_group", home >= 0 ? nlohmann::json(deps.node_groups[static_cast<size_t>(home)].id)
                                  : nlohmann::json(nullptr)},
         {"params", params},
         {"inputs", n.inputs},
         {"outputs", n.outputs}});
  }
  j["nodes"] = nodes;
  bool elided = false;
  auto edge_list = nlohmann::json::array();
  auto endpoint = [](int64_t n) {
    return n == kInput          ? nlohmann::json("input")
           : n == kOutput       ? nlohmann::json("output")
           : n == kElidedBefore ? nlohmann::json("elided_before")
           : n == kElidedAfter  ? nlohmann::json("elided_after")
                                : nlohmann::json(n);
  };
  for (const auto& e : edges(g, o, elided))
    edge_list.push_back({{"from", endpoint(e.from)},
                         {"to", endpoint(e.to)},
                         {"tensor", e.tensor},
                         {"shape", g.tensors[static_cast<size_t>(e.tensor)].shape}});
  j["edges"] = edge_list;
  auto groups = node_groups_to_json(deps);
  if (o.first_layer >= 0) {
    auto kept = nlohmann::json::array();
    for (auto& ng : groups)
      if (included(o, ng["layer"].get<int64_t>())) kept.push_back(std::move(ng));
    groups = std::move(kept);
  }
  j["node_groups"] = groups;
  auto layers = nlohmann::json::array();
  for (const auto& c : deps.layers)
    layers.push_back({{"params", c.params}, {"flops_per_token", c.flops}});
  j["accounting"] = {
      {"context", deps.context},
      {"total", {{"params", deps.total.params}, {"flops_per_token", deps.total.flops}}},
      {"outside_layers",
       {{"params", deps.outside_layers.params}, {"flops_per_token", deps.outside_layers.flops}}},
      {"layers", layers}};
  int64_t prunable_groups = 0, variable_groups = 0;
  for (const auto& ng : deps.node_groups) {
    variable_groups += ng.size;
    if (ng.prunable) ++prunable_groups;
  }
  j["counts"] = {{"nodes", nodes.size()},
                 {"edges", edge_list.size()},
                 {"traced_nodes", g.nodes.size()},
                 {"node_groups", deps.node_groups.size()},
                 {"prunable_node_groups", prunable_groups},
                 {"variable_groups", variable_groups},
                 {"prunable_variable_groups", deps.prunable_variable_groups()},
                 {"params", deps.total.params},
                 {"flops_per_token", deps.total.flops}};
  return j;
}

}  // namespace lorashear
