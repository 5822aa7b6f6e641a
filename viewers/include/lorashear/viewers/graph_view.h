#pragma once
// The dependency graph drawn from a GraphLayout in a QGraphicsView: layer clusters (a collapsed
// layer is one box; double-click toggles it), node-group clusters in their kind's colour,
// operators, edges; wheel zoom, drag to pan, fit; highlighting and centring on nodes; an overlay
// that colours nodes by a value per node group; SVG and PNG export (also without a window).

#include <QColor>
#include <QGraphicsView>
#include <QString>

#include <map>
#include <string>
#include <vector>

#include "lorashear/viewers/graph_layout.h"

class QGraphicsItem;

namespace lorashear {

/// A value per node group drawn as node colours (e.g. kept ratio, importance, sparsity). Operators
/// take their home node group's value, a collapsed layer box its layer's.
struct GraphOverlay {
  QString title;                         ///< shown in the legend, e.g. "kept ratio"
  std::map<std::string, double> groups;  ///< node group id → value
  std::map<int64_t, double> layers;      ///< decoder layer → value (collapsed boxes)
  double low = 0, high = 1;              ///< the colour scale's ends
  /// Nodes fade as their value nears `high` (sparsity, removed: groups going to zero fade out).
  bool fade = false;
  bool empty() const { return groups.empty() && layers.empty(); }
};

/// The overlay's colour scale (a perceptually ordered blue → yellow ramp); `t` in [0, 1].
QColor overlay_colour(double t);

class GraphView : public QGraphicsView {
  Q_OBJECT
 public:
  explicit GraphView(QWidget* parent = nullptr);

  /// Replaces the drawing (keeps the zoom and centre when `keep_view`).
  void showLayout(const GraphLayout& layout, bool keep_view = false);
  const GraphLayout& graphLayout() const { return layout_; }
  /// Items by Graphviz node id / cluster id, for tests and highlighting.
  QGraphicsItem* nodeItem(const std::string& id) const;
  QGraphicsItem* clusterItem(const std::string& id) const;
  int layerClusterCount() const;

  /// Outlines these nodes (Graphviz ids: "n12", "L3"); an empty list clears the highlight.
  void setHighlighted(const std::vector<std::string>& ids);
  const std::vector<std::string>& highlighted() const { return highlighted_; }
  /// Scrolls the node into the middle of the view, zooming in until its label is readable.
  void centerOnNode(const std::string& id);
  /// Shows these nodes together when they fit at a readable scale (zooming to them), else the
  /// first one as centerOnNode does.
  void centerOnNodes(const std::vector<std::string>& ids);
  /// Colours nodes by `overlay` (empty: by node group kind). Survives showLayout.
  void setOverlay(const GraphOverlay& overlay);
  const GraphOverlay& overlay() const { return overlay_; }
  /// Colours for a dark or light window palette (redraws).
  void setDark(bool dark);
  /// Node group kinds present in the drawing with their colours, for a legend.
  std::vector<std::pair<QString, QColor>> kindColours() const;

  void fitAll();
  /// fitAll when the whole graph stays readable, else the top of it at the width of the view.
  void fitReadable();
  /// The whole scene as SVG / PNG (`scale` pixels per point). False with `error` set on failure.
  bool exportSvg(const QString& path, QString* error = nullptr) const;
  bool exportPng(const QString& path, double scale = 1.0, QString* error = nullptr) const;

 signals:
  /// An operator was clicked (its trace node index).
  void operatorSelected(qint64 op);
  /// A collapsed layer box or an expanded layer's frame was double-clicked.
  void layerToggleRequested(int layer);
  /// The visible part of the scene changed (zoom, scroll, resize, new drawing).
  void viewChanged();

 protected:
  void wheelEvent(QWheelEvent* event) override;
  void mousePressEvent(QMouseEvent* event) override;
  void mouseDoubleClickEvent(QMouseEvent* event) override;
  void scrollContentsBy(int dx, int dy) override;
  void resizeEvent(QResizeEvent* event) override;

 private:
  void applyColours();
  GraphLayout layout_;
  std::map<std::string, QGraphicsItem*> nodes_, clusters_;
  std::vector<std::string> highlighted_;
  GraphOverlay overlay_;
  bool dark_ = false;
};

}  // namespace lorashear
