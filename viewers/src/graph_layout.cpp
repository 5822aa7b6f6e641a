#include "lorashear/viewers/graph_layout.h"

#include <graphviz/cgraph.h>
#include <graphviz/gvc.h>

#include <chrono>
#include <map>
#include <mutex>
#include <stdexcept>

#include "lorashear/graph/dependency.h"
#include "lorashear/graph/export.h"
#include "lorashear/graph/trace.h"

namespace lorashear {

int64_t GraphLayout::find(const std::string& id) const {
  for (size_t i = 0; i < nodes.size(); ++i)
    if (nodes[i].id == id) return static_cast<int64_t>(i);
  return -1;
}

namespace {

// Graphviz keeps global state (error handlers, symbol tables): one layout at a time.
std::mutex graphviz_mutex;

// One Graphviz context for the process, never freed. Its pango text-size plugin caches, in a
// static, a pointer to the last font name, which lives in the context's font dictionary: after
// gvFreeContext the next layout compares against freed memory (AddressSanitizer found it). Keeping
// the context also saves loading the plugins for every layout. Call with graphviz_mutex held.
GVC_t* graphviz_context() {
  static GVC_t* gvc = gvContext();
  return gvc;
}

void set(void* obj, const char* name, const std::string& value) {
  agsafeset(obj, const_cast<char*>(name), const_cast<char*>(value.c_str()), const_cast<char*>(""));
}

std::string shape_text(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i)
    out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace

std::string graphviz_library_version() {
  std::lock_guard lock(graphviz_mutex);
  GVC_t* gvc = graphviz_context();
  const char* v = gvc ? gvcVersion(gvc) : nullptr;
  return v ? v : "";
}

GraphLayout layout_graph(const TraceGraph& g, const DependencyGraph& deps,
                         const std::set<int64_t>& expanded) {
  GraphLayout out;
  // ---- display nodes: operators of expanded layers and outside them; one box per other layer.
  std::vector<int64_t> shown(g.nodes.size(), -1);  // trace node → display node
  std::map<int64_t, int64_t> layer_box;            // collapsed layer → display node
  std::map<int64_t, int64_t> layer_ops;            // operators per layer
  for (const auto& n : g.nodes)
    if (n.layer >= 0) ++layer_ops[n.layer];
  auto kind_of = [&](size_t i) {
    const auto home = deps.home_group[i];
    return home >= 0 ? deps.node_groups[static_cast<size_t>(home)].kind : std::string("other");
  };
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const auto& n = g.nodes[i];
    if (n.layer >= 0 && !expanded.count(n.layer)) {
      auto it = layer_box.find(n.layer);
      if (it == layer_box.end()) {
        LayoutNode box;
        box.id = "L" + std::to_string(n.layer);
        box.layer = n.layer;
        box.collapsed = true;
        box.label = "layer " + std::to_string(n.layer) + "\n" + std::to_string(layer_ops[n.layer]) +
                    " operators";
        box.fill = "#eeeeee";
        it = layer_box.emplace(n.layer, static_cast<int64_t>(out.nodes.size())).first;
        out.nodes.push_back(box);
      }
      shown[i] = it->second;
      continue;
    }
    LayoutNode d;
    d.id = "n" + std::to_string(i);
    d.op = static_cast<int64_t>(i);
    d.layer = n.layer;
    const auto slash = n.name.find('/');
    d.label = (slash == std::string::npos ? n.kind : n.name.substr(slash + 1)) + "\n" +
              (n.module.empty() ? n.name : n.module);
    d.kind = kind_of(i);
    d.fill = node_group_colour(d.kind);
    const auto home = deps.home_group[i];
    if (home >= 0) d.node_group = deps.node_groups[static_cast<size_t>(home)].id;
    shown[i] = static_cast<int64_t>(out.nodes.size());
    out.nodes.push_back(d);
  }
  const auto tokens = static_cast<int64_t>(out.nodes.size());
  out.nodes.push_back({"tokens",
                       -1,
                       -1,
                       false,
                       "token ids\n" + shape_text(g.tensors[static_cast<size_t>(g.input)].shape),
                       "#ffffff",
                       "",
                       "",
                       {},
                       0,
                       0});
  const auto logits = static_cast<int64_t>(out.nodes.size());
  out.nodes.push_back({"logits",
                       -1,
                       -1,
                       false,
                       "logits\n" + shape_text(g.tensors[static_cast<size_t>(g.output)].shape),
                       "#ffffff",
                       "",
                       "",
                       {},
                       0,
                       0});

  // ---- display edges, deduplicated; edges inside a collapsed layer vanish.
  std::set<std::pair<int64_t, int64_t>> seen;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    for (auto t : g.nodes[i].inputs) {
      const auto producer = g.tensors[static_cast<size_t>(t)].producer;
      const int64_t from = producer >= 0 ? shown[static_cast<size_t>(producer)] : tokens;
      const int64_t to = shown[i];
      if (from == to || !seen.insert({from, to}).second) continue;
      LayoutEdge e;
      e.from = from;
      e.to = to;
      e.faint = producer >= 0 && g.nodes[static_cast<size_t>(producer)].kind == "rotary";
      out.edges.push_back(e);
    }
  {
    const auto producer = g.tensors[static_cast<size_t>(g.output)].producer;
    LayoutEdge e;
    e.from = producer >= 0 ? shown[static_cast<size_t>(producer)] : tokens;
    e.to = logits;
    out.edges.push_back(e);
  }

  // ---- Graphviz
  std::lock_guard<std::mutex> lock(graphviz_mutex);
  const auto t0 = std::chrono::steady_clock::now();
  GVC_t* gvc = graphviz_context();
  Agraph_t* root = agopen(const_cast<char*>("lorashear"), Agdirected, nullptr);
  set(root, "rankdir", "TB");
  set(root, "newrank", "true");
  set(root, "nodesep", "0.25");
  set(root, "ranksep", "0.3");
  agattr(root, AGNODE, const_cast<char*>("shape"), const_cast<char*>("box"));
  agattr(root, AGNODE, const_cast<char*>("fontsize"), const_cast<char*>("9"));
  agattr(root, AGNODE, const_cast<char*>("margin"), const_cast<char*>("0.06,0.03"));
  // Clusters: a layer, and inside an expanded layer its prunable node groups.
  std::map<int64_t, Agraph_t*> layer_graph;
  std::map<std::string, Agraph_t*> group_graph;
  std::vector<std::pair<Agraph_t*, LayoutCluster>> clusters;
  auto layer_cluster = [&](int64_t layer) {
    auto it = layer_graph.find(layer);
    if (it != layer_graph.end()) return it->second;
    const std::string name = "cluster_L" + std::to_string(layer);
    auto* sg = agsubg(root, const_cast<char*>(name.c_str()), 1);
    set(sg, "label", "layer " + std::to_string(layer));
    LayoutCluster c;
    c.id = "L" + std::to_string(layer);
    c.label = "layer " + std::to_string(layer);
    c.layer = layer;
    c.colour = "#888888";
    clusters.emplace_back(sg, c);
    return layer_graph[layer] = sg;
  };
  std::vector<Agnode_t*> handles(out.nodes.size(), nullptr);
  for (size_t i = 0; i < out.nodes.size(); ++i) {
    auto& d = out.nodes[i];
    Agraph_t* parent = root;
    if (d.layer >= 0) {
      parent = layer_cluster(d.layer);
      if (!d.collapsed && !d.node_group.empty()) {
        const auto ng = deps.find_node_group(d.node_group);
        const auto& group = deps.node_groups[static_cast<size_t>(ng)];
        if (group.prunable && group.layer == d.layer) {
          auto it = group_graph.find(d.node_group);
          if (it == group_graph.end()) {
            std::string name = "cluster_" + d.node_group;
            for (auto& ch : name)
              if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
            auto* sg = agsubg(parent, const_cast<char*>(name.c_str()), 1);
            set(sg, "label", d.node_group);
            LayoutCluster c;
            c.id = d.node_group;
            c.label = d.node_group + " (" + std::to_string(group.size) +
                      (group.kind == "attention" ? " kv groups)" : " channels)");
            c.layer = d.layer;
            c.colour = node_group_colour(group.kind);
            clusters.emplace_back(sg, c);
            it = group_graph.emplace(d.node_group, sg).first;
          }
          parent = it->second;
        }
      }
    }
    handles[i] = agnode(parent, const_cast<char*>(d.id.c_str()), 1);
    std::string label = d.label;
    for (size_t at = 0; (at = label.find('\n', at)) != std::string::npos; at += 2)
      label.replace(at, 1, "\\n");
    set(handles[i], "label", label);
    if (d.id == "tokens" || d.id == "logits") set(handles[i], "shape", "ellipse");
    if (d.collapsed) set(handles[i], "fontsize", "12");
  }
  std::vector<Agedge_t*> edge_handles;
  for (const auto& e : out.edges) {
    auto* h = agedge(root, handles[static_cast<size_t>(e.from)], handles[static_cast<size_t>(e.to)],
                     nullptr, 1);
    if (e.faint) set(h, "constraint", "false");
    edge_handles.push_back(h);
  }
  if (gvLayout(gvc, root, "dot") != 0) {
    agclose(root);
    throw std::runtime_error("Graphviz could not lay out the graph");
  }
  // ---- read the layout back (Graphviz y grows upwards: flip it)
  const boxf bb = GD_bb(root);
  out.width = bb.UR.x - bb.LL.x;
  out.height = bb.UR.y - bb.LL.y;
  auto flip = [&](pointf p) { return LayoutPoint{p.x - bb.LL.x, bb.UR.y - p.y}; };
  for (size_t i = 0; i < out.nodes.size(); ++i) {
    out.nodes[i].centre = flip(ND_coord(handles[i]));
    out.nodes[i].width = ND_width(handles[i]) * 72.0;
    out.nodes[i].height = ND_height(handles[i]) * 72.0;
  }
  for (size_t i = 0; i < out.edges.size(); ++i) {
    const splines* spl = ED_spl(edge_handles[i]);
    if (spl == nullptr || spl->size == 0) continue;
    const bezier& b = spl->list[0];
    for (int k = 0; k < b.size; ++k)
      out.edges[i].points.push_back(flip(b.list[k]));
    if (b.eflag) {
      out.edges[i].has_tip = true;
      out.edges[i].tip = flip(b.ep);
    }
  }
  for (auto& [sg, c] : clusters) {
    const boxf cb = GD_bb(sg);
    c.top_left = flip({cb.LL.x, cb.UR.y});
    c.bottom_right = flip({cb.UR.x, cb.LL.y});
    out.clusters.push_back(c);
  }
  gvFreeLayout(gvc, root);
  agclose(root);
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace lorashear
