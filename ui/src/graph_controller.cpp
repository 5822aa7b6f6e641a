#include "graph_controller.h"

#include <QComboBox>
#include <QElapsedTimer>
#include <QEvent>
#include <QStatusBar>
#include <QTabWidget>
#include <QTimer>
#include <QTreeView>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "document.h"
#include "lorashear/ui/compare_panel.h"
#include "lorashear/ui/engine.h"
#include "lorashear/ui/inspector.h"
#include "lorashear/ui/main_window.h"
#include "lorashear/ui/node_group_model.h"
#include "lorashear/ui/run_panel.h"
#include "lorashear/viewers/graph_legend.h"
#include "lorashear/viewers/graph_overview.h"
#include "lorashear/viewers/graph_view.h"
#include "lorashear/viewers/layout_cache.h"
#include "task_controller.h"

namespace lorashear {

namespace {

constexpr int64_t kExpandedByDefault = 4;  // models with at most this many layers open expanded

qint64 now_ns() {
  static QElapsedTimer clock = [] {
    QElapsedTimer t;
    t.start();
    return t;
  }();
  return clock.nsecsElapsed();
}

// Nodes and node groups matching a search, best first: exact names and ".text" suffixes, then
// substrings, each in graph order.
struct Match {
  bool group = false;
  size_t index = 0;
};

std::vector<Match> find_matches(const ModelDocument& doc, const QString& text) {
  const std::string needle = text.trimmed().toLower().toStdString();
  std::vector<Match> exact, partial;
  if (needle.empty()) return exact;
  auto lower = [](std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    return s;
  };
  auto consider = [&](const std::string& name, Match m) {
    const auto n = lower(name);
    const auto at = n.find(needle);
    if (at == std::string::npos) return;
    const bool whole = at + needle.size() == n.size() && (at == 0 || n[at - 1] == '.');
    (whole ? exact : partial).push_back(m);
  };
  for (size_t i = 0; i < doc.trace.nodes.size(); ++i)
    consider(doc.trace.nodes[i].name, {false, i});
  for (size_t g = 0; g < doc.deps.node_groups.size(); ++g)
    consider(doc.deps.node_groups[g].id, {true, g});
  exact.insert(exact.end(), partial.begin(), partial.end());
  return exact;
}

}  // namespace

GraphController::GraphController(MainWindow* window, TaskController* tasks)
    : QObject(window), window_(window), tasks_(tasks) {
  auto* engine = window->engine();
  auto* view = window->graphView();
  layouts_ = new LayoutCache(this);
  overlay_ = new QComboBox;
  overlay_->setObjectName("overlay");
  for (const auto& name : overlayNames())
    overlay_->addItem(name, name);
  connect(overlay_, &QComboBox::currentIndexChanged, this,
          [this] { setOverlay(overlay_->currentData().toString()); });

  view->installEventFilter(this);
  connect(engine, &Engine::documentChanged, this, &GraphController::documentChanged);
  connect(engine, &Engine::importanceChanged, this, [this] { setOverlay("importance"); });
  connect(layouts_, &LayoutCache::layoutReady, this, &GraphController::showLayoutResult);
  connect(layouts_, &LayoutCache::layoutFailed, this, [this](const QString& message) {
    layout_requested_ = false;
    tasks_->showError(tr("Cannot lay out the graph"), message);
  });
  connect(view, &GraphView::layerToggleRequested, this, [this](int layer) {
    auto expanded = expanded_;
    if (!expanded.erase(layer)) expanded.insert(layer);
    setExpanded(expanded);
  });
  connect(view, &GraphView::operatorSelected, this, [this](qint64 op) { selectOperator(op); });
  connect(window->inspector(), &Inspector::operatorActivated, this,
          [this](qint64 op) { selectOperator(op); });
  connect(window->inspector(), &Inspector::nodeGroupActivated, this,
          [this](qint64 g) { selectNodeGroup(g); });
  connect(window->nodeGroupTree()->selectionModel(), &QItemSelectionModel::currentChanged, this,
          [this](const QModelIndex& current) {
            if (selecting_ || !current.isValid()) return;
            selectNodeGroup(current.data(NodeGroupModel::GroupRole).toLongLong(), true);
          });
  connect(window->comparePanel(), &ComparePanel::nodeGroupActivated, this,
          [this](const QString& id) {
            if (const auto doc = window_->document())
              selectNodeGroup(doc->deps.find_node_group(id.toStdString()));
          });
  // The overlays sit in the view's corners: placed again once the view is shown at its size.
  connect(window->centralTabs(), &QTabWidget::currentChanged, this, [this] {
    if (window_->centralTabs()->currentWidget() == window_->graphView())
      QTimer::singleShot(0, this, &GraphController::placeOverlays);
  });
}

bool GraphController::layoutPending() const {
  return layout_requested_ || layouts_->computing();
}

void GraphController::documentChanged() {
  const auto doc = window_->document();
  if (!doc) return;
  selection_kind_ = 0;
  selection_ = -1;
  const auto n_layers = doc->trace.config.n_layers();
  std::set<int64_t> expanded;
  if (n_layers <= kExpandedByDefault)
    for (int64_t l = 0; l < n_layers; ++l)
      expanded.insert(l);
  expanded_ = expanded;
  layouts_->reset([doc](const std::set<int64_t>& layers) {
    return layout_graph(doc->trace, doc->deps, layers);
  });
  // Importance, a run's sparsity and a comparison belong to the model they were measured on.
  const auto overlay = overlay_->currentData().toString();
  if (overlay == "importance" || overlay == "sparsity" || overlay == "removed")
    overlay_->setCurrentIndex(0);
  requestLayout();
}

// ---- layouts

void GraphController::requestLayout() {
  if (!window_->document()) return;
  layout_requested_ = true;
  request_started_ns_ = now_ns();
  window_->statusBar()->showMessage(tr("Laying out the graph…"));
  layouts_->request(expanded_);
}

void GraphController::showLayoutResult(std::shared_ptr<const GraphLayout> layout,
                                       const std::set<int64_t>& expanded, double seconds,
                                       bool cached) {
  if (expanded != expanded_) return;  // a newer request follows
  const auto doc = window_->document();
  auto* view = window_->graphView();
  const bool same_graph = shown_document_ == doc.get();
  view->showLayout(*layout, same_graph);
  shown_document_ = doc.get();
  applyOverlay();
  applySelection();
  if (view->isVisible()) view->viewport()->repaint();
  last_paint_ms_ = static_cast<double>(now_ns() - request_started_ns_) / 1e6;
  layout_requested_ = false;
  window_->statusBar()->showMessage(
      tr("%1 layers (%2 expanded), %3 operators — %4, shown %5 ms after the request; "
         "double-click a layer to expand or collapse it")
          .arg(doc->trace.config.n_layers())
          .arg(expanded_.size())
          .arg(doc->trace.nodes.size())
          .arg(cached ? tr("layout from the cache")
                      : tr("laid out in %1 ms").arg(seconds * 1000, 0, 'f', 0))
          .arg(last_paint_ms_, 0, 'f', 0),
      20000);
  placeOverlays();
  emit graphShown();
}

void GraphController::setExpanded(const std::set<int64_t>& layers) {
  expanded_ = layers;
  requestLayout();
}

void GraphController::expandAll() {
  const auto doc = window_->document();
  if (!doc) return;
  std::set<int64_t> all;
  for (int64_t l = 0; l < doc->trace.config.n_layers(); ++l)
    all.insert(l);
  setExpanded(all);
}

void GraphController::collapseAll() {
  setExpanded({});
}

// ---- overlays

QStringList GraphController::overlayNames() const {
  return {"kind", "parameters", "variable groups", "prunable", "importance", "sparsity", "removed"};
}

void GraphController::setOverlay(const QString& name) {
  const int index = overlay_->findData(name);
  if (index >= 0 && index != overlay_->currentIndex()) {
    overlay_->setCurrentIndex(index);  // comes back here through the signal
    return;
  }
  if (name == "importance" && window_->engine()->importance().empty()) {
    window_->statusBar()->showMessage(
        tr("No importance yet: run Tools ▸ Knowledge distribution analysis first"), 8000);
  }
  applyOverlay();
}

void GraphController::applyOverlay() {
  const auto doc = window_->document();
  const auto name = overlay_->currentData().toString();
  GraphOverlay o;
  if (doc && name != "kind") {
    const auto& deps = doc->deps;
    auto put = [&](const NodeGroup& g, double v) { o.groups[g.id] = v; };
    if (name == "removed") {
      o.title = tr("removed against the dense model (fraction of variable groups)");
      for (const auto& d : window_->engine()->comparison().groups) {
        const auto g = deps.find_node_group(d.id.toStdString());
        if (g >= 0 && d.before > 0)
          put(deps.node_groups[static_cast<size_t>(g)],
              static_cast<double>(d.before - d.after) / static_cast<double>(d.before));
      }
    } else if (name == "importance" || name == "sparsity") {
      o.title = name == "importance" ? tr("importance (knowledge delta, normalised)")
                                     : tr("sparsity (fraction of variable groups at zero)");
      if (name == "sparsity" && !window_->runPanel()->sparsity().empty())
        for (const auto& g : deps.node_groups)
          if (g.prunable) put(g, 0.0);  // groups the plan leaves whole stay at zero
      const auto& values =
          name == "importance" ? window_->engine()->importance() : window_->runPanel()->sparsity();
      for (const auto& [id, v] : values) {
        const auto g = deps.find_node_group(id);
        if (g >= 0) put(deps.node_groups[static_cast<size_t>(g)], v);
      }
    } else {
      for (const auto& g : deps.node_groups) {
        if (name == "parameters")
          put(g, static_cast<double>(g.total().params));
        else if (name == "variable groups")
          put(g, static_cast<double>(g.size));
        else if (name == "prunable")
          put(g, g.prunable ? 1.0 : 0.0);
      }
      o.title = name == "parameters"        ? tr("parameters per node group")
                : name == "variable groups" ? tr("variable groups per node group")
                                            : tr("prunable (1) or not (0)");
    }
    // A collapsed layer shows the mean (prunable: the max) of its node groups' values.
    std::map<int64_t, std::vector<double>> per_layer;
    for (const auto& [id, v] : o.groups) {
      const auto layer = deps.node_groups[static_cast<size_t>(deps.find_node_group(id))].layer;
      if (layer >= 0) per_layer[layer].push_back(v);
    }
    for (auto& [layer, values] : per_layer) {
      double sum = 0;
      for (auto v : values)
        sum += v;
      o.layers[layer] = name == "prunable" ? *std::max_element(values.begin(), values.end())
                                           : sum / static_cast<double>(values.size());
    }
    if (!o.groups.empty()) {
      o.low = 0;
      o.high = 0;
      for (const auto& [id, v] : o.groups)
        o.high = std::max(o.high, v);
      if (o.high <= 0 || name == "sparsity" || name == "removed") o.high = 1;
      // Groups going to zero (a run) or gone (a comparison) fade out.
      o.fade = name == "sparsity" || name == "removed";
    }
  }
  auto* view = window_->graphView();
  view->setOverlay(o);
  if (o.empty())
    window_->legend()->setKinds(view->kindColours());
  else
    window_->legend()->setScale(o.title, o.low, o.high);
  placeOverlays();
}

void GraphController::placeOverlays() {
  auto* view = window_->graphView();
  auto* legend = window_->legend();
  auto* overview = window_->overview();
  const auto area = view->viewport()->geometry();
  legend->adjustSize();
  legend->move(area.left() + 8, area.bottom() - legend->height() - 8);
  legend->raise();
  const double w = view->sceneRect().width(), h = view->sceneRect().height();
  int ow = 180, oh = 180;
  if (w > 0 && h > 0) {
    if (h > w)
      ow = std::max(60, static_cast<int>(oh * w / h));
    else
      oh = std::max(60, static_cast<int>(ow * h / w));
  }
  oh = std::min(oh, std::max(60, area.height() / 3));
  overview->setGeometry(area.right() - ow - 8, area.top() + 8, ow, oh);
  overview->refit();
  overview->raise();
}

bool GraphController::eventFilter(QObject* watched, QEvent* event) {
  // After the view's own resize handling, which moves the viewport.
  if (watched == window_->graphView() && event->type() == QEvent::Resize)
    QTimer::singleShot(0, this, &GraphController::placeOverlays);
  return QObject::eventFilter(watched, event);
}

// ---- selection

void GraphController::selectOperator(qint64 op, bool from_tree) {
  const auto doc = window_->document();
  if (!doc || op < 0 || op >= static_cast<qint64>(doc->trace.nodes.size())) return;
  window_->inspector()->showOperator(op);
  select(1, op, doc->deps.home_group[static_cast<size_t>(op)],
         doc->trace.nodes[static_cast<size_t>(op)].layer, !from_tree);
}

void GraphController::selectNodeGroup(qint64 group, bool from_tree) {
  const auto doc = window_->document();
  if (!doc || group < 0 || group >= static_cast<qint64>(doc->deps.node_groups.size())) return;
  window_->inspector()->showNodeGroup(group);
  select(2, group, group, doc->deps.node_groups[static_cast<size_t>(group)].layer, !from_tree);
}

void GraphController::select(int kind, qint64 index, int64_t tree_group, int64_t layer,
                             bool sync_tree) {
  // A selection is shown in the graph and the inspector (which shares its dock area with forms).
  window_->centralTabs()->setCurrentWidget(window_->graphView());
  window_->inspector()->parentWidget()->raise();
  selection_kind_ = kind;
  selection_ = index;
  centre_pending_ = true;
  if (sync_tree && tree_group >= 0) {
    selecting_ = true;
    auto* tree = window_->nodeGroupTree();
    const auto row = window_->nodeGroupModel()->groupIndex(static_cast<int>(tree_group));
    tree->setCurrentIndex(row);
    tree->scrollTo(row);
    selecting_ = false;
  }
  if (layer >= 0 && !expanded_.count(layer)) {
    auto expanded = expanded_;
    expanded.insert(layer);
    setExpanded(expanded);  // the selection is applied once it is drawn
    return;
  }
  applySelection();
}

void GraphController::applySelection() {
  const auto doc = window_->document();
  std::vector<std::string> ids;
  if (doc && selection_ >= 0) {
    std::set<std::string> seen;
    auto add = [&](int64_t op) {
      const auto layer = doc->trace.nodes[static_cast<size_t>(op)].layer;
      const std::string id = layer >= 0 && !expanded_.count(layer) ? "L" + std::to_string(layer)
                                                                   : "n" + std::to_string(op);
      if (seen.insert(id).second) ids.push_back(id);
    };
    if (selection_kind_ == 1)
      add(selection_);
    else if (selection_kind_ == 2)
      for (auto op : doc->deps.node_groups[static_cast<size_t>(selection_)].nodes)
        add(op);
  }
  auto* view = window_->graphView();
  view->setHighlighted(ids);
  if (centre_pending_ && !ids.empty()) {
    view->centerOnNodes(ids);
    centre_pending_ = false;
  }
}

bool GraphController::search(const QString& text) {
  const auto doc = window_->document();
  if (!doc) return false;
  const auto matches = find_matches(*doc, text);
  if (matches.empty()) return false;
  search_position_ =
      text == last_search_ ? (search_position_ + 1) % static_cast<int>(matches.size()) : 0;
  last_search_ = text;
  const auto& m = matches[static_cast<size_t>(search_position_)];
  if (m.group)
    selectNodeGroup(static_cast<qint64>(m.index));
  else
    selectOperator(static_cast<qint64>(m.index));
  window_->statusBar()->showMessage(tr("Match %1 of %2 for “%3” (Enter: next)")
                                        .arg(search_position_ + 1)
                                        .arg(matches.size())
                                        .arg(text),
                                    8000);
  return true;
}

}  // namespace lorashear
