#pragma once
// The dependency graph drawn from a GraphLayout in a QGraphicsView: layer clusters (a collapsed
// layer is one box; double-click toggles it), node-group clusters in their kind's colour,
// operators, edges; wheel zoom, drag to pan, fit; SVG and PNG export (also without a window).

#include <QGraphicsView>
#include <QString>

#include <map>
#include <string>

#include "lorashear/viewers/graph_layout.h"

class QGraphicsItem;

namespace lorashear {

class GraphView : public QGraphicsView {
  Q_OBJECT
 public:
  explicit GraphView(QWidget* parent = nullptr);

  /// Replaces the drawing (keeps the zoom when `keep_view`).
  void showLayout(const GraphLayout& layout, bool keep_view = false);
  const GraphLayout& graphLayout() const { return layout_; }
  /// Items by Graphviz node id / cluster id, for tests and highlighting.
  QGraphicsItem* nodeItem(const std::string& id) const;
  QGraphicsItem* clusterItem(const std::string& id) const;
  int layerClusterCount() const;

  void fitAll();
  /// The whole scene as SVG / PNG (`scale` pixels per point). False with `error` set on failure.
  bool exportSvg(const QString& path, QString* error = nullptr) const;
  bool exportPng(const QString& path, double scale = 1.0, QString* error = nullptr) const;

 signals:
  /// An operator was clicked (its trace node index).
  void operatorSelected(qint64 op);
  /// A collapsed layer box or an expanded layer's frame was double-clicked.
  void layerToggleRequested(int layer);

 protected:
  void wheelEvent(QWheelEvent* event) override;
  void mousePressEvent(QMouseEvent* event) override;
  void mouseDoubleClickEvent(QMouseEvent* event) override;

 private:
  GraphLayout layout_;
  std::map<std::string, QGraphicsItem*> nodes_, clusters_;
};

}  // namespace lorashear
