#include "lorashear/viewers/graph_overview.h"

#include <QMouseEvent>
#include <QPainter>

#include "lorashear/viewers/graph_view.h"

namespace lorashear {

GraphOverview::GraphOverview(GraphView* view, QWidget* parent)
    : QGraphicsView(view->scene(), parent), view_(view) {
  setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
  setVerticalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
  setInteractive(false);
  setRenderHint(QPainter::Antialiasing, false);
  setFrameShape(QFrame::Box);
  setToolTip(tr("Overview: click or drag to move the view"));
  connect(view_, &GraphView::viewChanged, this, [this] { viewport()->update(); });
  connect(view_->scene(), &QGraphicsScene::sceneRectChanged, this, &GraphOverview::refit);
}

QRectF GraphOverview::visibleArea() const {
  return view_->mapToScene(view_->viewport()->rect()).boundingRect();
}

void GraphOverview::refit() {
  fitInView(scene()->sceneRect(), Qt::KeepAspectRatio);
  viewport()->update();
}

void GraphOverview::drawForeground(QPainter* painter, const QRectF& rect) {
  QGraphicsView::drawForeground(painter, rect);
  const QRectF area = visibleArea().intersected(scene()->sceneRect());
  painter->save();
  QPen pen(QColor(255, 127, 14), 0);  // cosmetic: one pixel whatever the scale
  pen.setCosmetic(true);
  pen.setWidth(2);
  painter->setPen(pen);
  painter->setBrush(QColor(255, 127, 14, 40));
  painter->drawRect(area);
  painter->restore();
}

void GraphOverview::mousePressEvent(QMouseEvent* event) {
  view_->centerOn(mapToScene(event->pos()));
}

void GraphOverview::mouseMoveEvent(QMouseEvent* event) {
  if (event->buttons() & Qt::LeftButton) view_->centerOn(mapToScene(event->pos()));
}

void GraphOverview::resizeEvent(QResizeEvent* event) {
  QGraphicsView::resizeEvent(event);
  refit();
}

void GraphOverview::wheelEvent(QWheelEvent*) {}

}  // namespace lorashear
