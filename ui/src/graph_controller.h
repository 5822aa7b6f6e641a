#pragma once
// The Graph tab's state and what changes it: which layers are expanded and their layouts (computed
// off the GUI thread, cached), the overlay that colours the nodes with its legend, the overview's
// place, the selection the graph, the node-group tree and the inspector share, and search. GUI
// thread only.

#include <QObject>
#include <QString>
#include <QStringList>

#include <cstdint>
#include <memory>
#include <set>

class QComboBox;

namespace lorashear {

class LayoutCache;
class MainWindow;
class TaskController;
struct GraphLayout;

class GraphController : public QObject {
  Q_OBJECT
 public:
  /// Wires the window's graph view, overview, legend, node-group tree and inspector; `window` and
  /// `tasks` (its errors) must outlive it.
  GraphController(MainWindow* window, TaskController* tasks);

  /// The "Colour by" box (the toolbar shows it): its current item is the overlay.
  QComboBox* overlayBox() const { return overlay_; }
  /// Overlays: "kind" (default), "parameters", "variable groups", "prunable", "importance",
  /// "sparsity" (a run's), "removed" (a comparison's).
  QStringList overlayNames() const;
  void setOverlay(const QString& name);
  /// Recolours the graph with the current overlay (after its data or the theme changed).
  void applyOverlay();
  /// Finds the next operator or node group whose name contains `text` (case-insensitive), shows
  /// it (expanding its layer) and selects it; false when nothing matches.
  bool search(const QString& text);
  void selectOperator(qint64 op, bool from_tree = false);
  void selectNodeGroup(qint64 group, bool from_tree = false);
  void expandAll();
  void collapseAll();
  void setExpanded(const std::set<int64_t>& layers);
  const std::set<int64_t>& expandedLayers() const { return expanded_; }
  /// True while a layout is being computed or waits to be drawn.
  bool layoutPending() const;
  /// Time from a layout request to its drawing on screen, for the last drawing (ms).
  double lastPaintMs() const { return last_paint_ms_; }
  /// The legend and the overview in the view's corners.
  void placeOverlays();

 signals:
  /// A layout was drawn (after an open, expand, collapse).
  void graphShown();

 protected:
  bool eventFilter(QObject* watched, QEvent* event) override;

 private:
  void documentChanged();
  void requestLayout();
  void showLayoutResult(std::shared_ptr<const GraphLayout> layout,
                        const std::set<int64_t>& expanded, double seconds, bool cached);
  /// Records the selection (1 operator, 2 node group), selects `tree_group` in the tree when
  /// `sync_tree`, and highlights it in the graph, expanding `layer` first when it is collapsed.
  void select(int kind, qint64 index, int64_t tree_group, int64_t layer, bool sync_tree);
  void applySelection();

  MainWindow* window_;
  TaskController* tasks_;
  LayoutCache* layouts_ = nullptr;
  QComboBox* overlay_ = nullptr;
  std::set<int64_t> expanded_;
  int selection_kind_ = 0;  // 0 none, 1 operator, 2 node group
  qint64 selection_ = -1;
  bool centre_pending_ = false;
  const void* shown_document_ = nullptr;  // the document whose graph is drawn
  bool selecting_ = false;
  bool layout_requested_ = false;
  QString last_search_;
  int search_position_ = -1;
  double last_paint_ms_ = 0;
  qint64 request_started_ns_ = 0;
};

}  // namespace lorashear
