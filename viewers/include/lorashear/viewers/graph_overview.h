#pragma once
// The minimap of a GraphView: the whole scene scaled to fit, with the main view's visible area
// outlined; click or drag to move the main view there.

#include <QGraphicsView>

namespace lorashear {

class GraphView;

class GraphOverview : public QGraphicsView {
  Q_OBJECT
 public:
  explicit GraphOverview(GraphView* view, QWidget* parent = nullptr);
  /// The main view's visible area in scene coordinates (what the outline shows).
  QRectF visibleArea() const;

 public slots:
  void refit();

 protected:
  void drawForeground(QPainter* painter, const QRectF& rect) override;
  void mousePressEvent(QMouseEvent* event) override;
  void mouseMoveEvent(QMouseEvent* event) override;
  void resizeEvent(QResizeEvent* event) override;
  void wheelEvent(QWheelEvent* event) override;

 private:
  GraphView* view_;
};

}  // namespace lorashear
