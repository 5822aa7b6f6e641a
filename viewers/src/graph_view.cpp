#include "lorashear/viewers/graph_view.h"

#include <QAbstractGraphicsShapeItem>
#include <QFileInfo>
#include <QGraphicsPathItem>
#include <QGraphicsRectItem>
#include <QGraphicsSimpleTextItem>
#include <QImage>
#include <QMouseEvent>
#include <QPainter>
#include <QPainterPath>
#include <QSvgGenerator>
#include <QWheelEvent>

#include <algorithm>
#include <cmath>
#include <optional>
#include <set>

namespace lorashear {

namespace {

constexpr int kRoleNode = 0;     // data(0): Graphviz node id
constexpr int kRoleCluster = 1;  // data(1): cluster id
constexpr int kRoleLayer = 2;    // data(2): layer

QPointF qt(const LayoutPoint& p) {
  return {p.x, p.y};
}

// Centred multi-line text inside `parent`.
// Sizes in scene units (Graphviz points), as Graphviz measured them when it sized the boxes.
void add_label(QGraphicsItem* parent, const QString& text, const QRectF& box, int pixel_size,
               bool bold = false) {
  auto* t = new QGraphicsSimpleTextItem(text, parent);
  QFont f("Sans");
  f.setPixelSize(pixel_size);
  f.setBold(bold);
  t->setFont(f);
  const auto r = t->boundingRect();
  t->setPos(box.center().x() - r.width() / 2, box.center().y() - r.height() / 2);
}

QColor text_colour_on(const QColor& fill) {
  return fill.lightnessF() < 0.45 ? Qt::white : Qt::black;
}

}  // namespace

QColor overlay_colour(double t) {
  // Viridis at five stops, interpolated linearly.
  static const QColor stops[] = {QColor(0x44, 0x01, 0x54), QColor(0x3b, 0x52, 0x8b),
                                 QColor(0x21, 0x91, 0x8c), QColor(0x5e, 0xc9, 0x62),
                                 QColor(0xfd, 0xe7, 0x25)};
  if (!std::isfinite(t)) t = 0;
  t = std::clamp(t, 0.0, 1.0) * 4.0;
  const int i = std::min(3, static_cast<int>(t));
  const double f = t - i;
  const auto& a = stops[i];
  const auto& b = stops[i + 1];
  return QColor::fromRgbF(static_cast<float>(a.redF() + (b.redF() - a.redF()) * f),
                          static_cast<float>(a.greenF() + (b.greenF() - a.greenF()) * f),
                          static_cast<float>(a.blueF() + (b.blueF() - a.blueF()) * f));
}

GraphView::GraphView(QWidget* parent) : QGraphicsView(parent) {
  setScene(new QGraphicsScene(this));
  setRenderHint(QPainter::Antialiasing);
  setDragMode(QGraphicsView::ScrollHandDrag);
  setTransformationAnchor(QGraphicsView::AnchorUnderMouse);
  setBackgroundBrush(Qt::white);
}

void GraphView::setDark(bool dark) {
  if (dark == dark_) return;
  dark_ = dark;
  showLayout(layout_, true);
}

void GraphView::showLayout(const GraphLayout& layout, bool keep_view) {
  const auto transform_before = transform();
  const auto centre_before = mapToScene(viewport()->rect().center());
  if (&layout != &layout_) layout_ = layout;
  setBackgroundBrush(dark_ ? QColor(38, 40, 44) : QColor(Qt::white));
  const QColor ink = dark_ ? QColor(200, 200, 200) : QColor(85, 85, 85);
  const QColor faint_ink = dark_ ? QColor(110, 110, 110) : QColor(190, 190, 190);
  scene()->clear();
  nodes_.clear();
  clusters_.clear();
  // Clusters first (behind): layers, then node groups.
  for (const auto& c : layout_.clusters) {
    const QRectF box(qt(c.top_left), qt(c.bottom_right));
    const bool layer = c.id.find('.') == std::string::npos;  // "L3", not "L3.mlp"
    auto* item = scene()->addRect(
        box, QPen(QColor(QString::fromStdString(c.colour)), 1.2),
        layer ? QBrush(Qt::NoBrush) : QBrush(dark_ ? QColor(52, 55, 60) : QColor(247, 247, 247)));
    item->setData(kRoleCluster, QString::fromStdString(c.id));
    item->setData(kRoleLayer, static_cast<int>(c.layer));
    item->setZValue(layer ? 0 : 1);
    auto* label = new QGraphicsSimpleTextItem(QString::fromStdString(c.label), item);
    QFont f("Sans");
    f.setPixelSize(10);
    label->setFont(f);
    label->setBrush(dark_ ? QColor(220, 220, 220) : QColor(Qt::black));
    label->setPos(box.left() + 4, box.top() + 2);
    clusters_[c.id] = item;
  }
  // Edges.
  for (const auto& e : layout_.edges) {
    if (e.points.size() < 4) continue;
    QPainterPath path(qt(e.points[0]));
    for (size_t k = 1; k + 2 < e.points.size(); k += 3)
      path.cubicTo(qt(e.points[k]), qt(e.points[k + 1]), qt(e.points[k + 2]));
    QPen pen(e.faint ? faint_ink : ink, e.faint ? 0.6 : 1.0);
    // Faint (rotary-table) edges solid: dash patterns along long curves are slow to rasterise.
    // The arrow head: from the curve's end to Graphviz's tip.
    const QPointF end = path.currentPosition();
    const QPointF tip = e.has_tip ? qt(e.tip) : end;
    if (e.has_tip) path.lineTo(tip);
    scene()->addPath(path, pen)->setZValue(2);
    const QPointF d = e.has_tip ? tip - end : end - path.pointAtPercent(0.9);
    const double len = std::hypot(d.x(), d.y());
    if (len > 0 && !e.faint) {
      const QPointF u = d / len, n(-u.y(), u.x());
      const QPolygonF head({tip, tip - u * 6 + n * 3, tip - u * 6 - n * 3});
      scene()->addPolygon(head, pen, QBrush(pen.color()))->setZValue(2);
    }
  }
  // Nodes on top.
  for (const auto& n : layout_.nodes) {
    const QRectF box(n.centre.x - n.width / 2, n.centre.y - n.height / 2, n.width, n.height);
    QGraphicsItem* item = nullptr;
    const QColor fill(QString::fromStdString(n.fill));
    if (n.id == "tokens" || n.id == "logits")
      item = scene()->addEllipse(box, QPen(Qt::black, 0.8), QBrush(fill));
    else {
      QPainterPath p;
      p.addRoundedRect(box, 4, 4);
      item = scene()->addPath(p, QPen(n.collapsed ? QColor(120, 120, 120) : Qt::black, 0.8),
                              QBrush(fill));
    }
    item->setData(kRoleNode, QString::fromStdString(n.id));
    item->setData(kRoleLayer, static_cast<int>(n.layer));
    item->setToolTip(QString::fromStdString(
        n.label + (n.node_group.empty() ? "" : "\nnode group " + n.node_group) +
        (n.collapsed ? "\n(double-click to expand)" : "")));
    add_label(item, QString::fromStdString(n.label), box, n.collapsed ? 11 : 8, n.collapsed);
    nodes_[n.id] = item;
  }
  scene()->setSceneRect(QRectF(-10, -10, layout_.width + 20, layout_.height + 20));
  applyColours();
  if (keep_view) {
    setTransform(transform_before);
    centerOn(centre_before);
  } else {
    fitReadable();
  }
  emit viewChanged();
}

void GraphView::fitReadable() {
  const auto rect = scene()->sceneRect();
  const auto port = viewport()->rect();
  if (rect.isEmpty() || port.isEmpty()) return fitAll();
  const double whole = std::min(port.width() / rect.width(), port.height() / rect.height());
  if (whole >= 0.6) return fitAll();
  // Too small to read when whole: as wide as the view allows (at most 1:1), from the top.
  const double s = std::min(1.0, port.width() / rect.width());
  setTransform(QTransform::fromScale(s, s));
  centerOn(rect.center().x(), rect.top() + port.height() / (2 * s));
  emit viewChanged();
}

void GraphView::applyColours() {
  const std::set<std::string> marked(highlighted_.begin(), highlighted_.end());
  for (const auto& n : layout_.nodes) {
    auto* item = dynamic_cast<QAbstractGraphicsShapeItem*>(nodeItem(n.id));
    if (item == nullptr) continue;
    QColor fill(QString::fromStdString(n.fill));
    double opacity = 1.0;
    if (!overlay_.empty()) {
      const double span = overlay_.high - overlay_.low;
      std::optional<double> value;
      if (n.collapsed) {
        auto it = overlay_.layers.find(n.layer);
        if (it != overlay_.layers.end()) value = it->second;
      } else if (!n.node_group.empty()) {
        auto it = overlay_.groups.find(n.node_group);
        if (it != overlay_.groups.end()) value = it->second;
      }
      const double t =
          span > 0 && value ? std::clamp((*value - overlay_.low) / span, 0.0, 1.0) : 1.0;
      fill = value ? overlay_colour(t) : QColor(dark_ ? QColor(90, 90, 90) : QColor(225, 225, 225));
      if (overlay_.fade && value) opacity = 1.0 - 0.75 * t;
    }
    item->setOpacity(opacity);
    item->setBrush(fill);
    const bool mark = marked.count(n.id) > 0;
    item->setPen(mark ? QPen(QColor(255, 127, 14), 3.0)
                      : QPen(n.collapsed ? QColor(120, 120, 120) : QColor(Qt::black), 0.8));
    item->setZValue(mark ? 4 : 3);
    for (auto* child : item->childItems())
      if (auto* text = dynamic_cast<QGraphicsSimpleTextItem*>(child))
        text->setBrush(text_colour_on(fill));
  }
  scene()->update();
}

void GraphView::setHighlighted(const std::vector<std::string>& ids) {
  highlighted_ = ids;
  applyColours();
}

void GraphView::setOverlay(const GraphOverlay& overlay) {
  overlay_ = overlay;
  applyColours();
}

std::vector<std::pair<QString, QColor>> GraphView::kindColours() const {
  std::vector<std::pair<QString, QColor>> out;
  std::set<std::string> seen;
  for (const auto& n : layout_.nodes)
    if (!n.collapsed && n.op >= 0 && seen.insert(n.kind).second)
      out.emplace_back(QString::fromStdString(n.kind), QColor(QString::fromStdString(n.fill)));
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return out;
}

void GraphView::centerOnNode(const std::string& id) {
  auto* item = nodeItem(id);
  if (item == nullptr) return;
  if (transform().m11() < 1.0) setTransform(QTransform::fromScale(1.2, 1.2));
  centerOn(item);
  emit viewChanged();
}

void GraphView::centerOnNodes(const std::vector<std::string>& ids) {
  QRectF area;
  for (const auto& id : ids)
    if (auto* item = nodeItem(id)) area |= item->sceneBoundingRect();
  if (area.isNull()) return;
  const auto port = viewport()->rect();
  const double fit =
      std::min(port.width() / (area.width() + 40.0), port.height() / (area.height() + 40.0));
  if (fit < 0.5) return centerOnNode(ids.front());  // too large to read whole
  const double s = std::min(1.2, fit);
  setTransform(QTransform::fromScale(s, s));
  centerOn(area.center());
  emit viewChanged();
}

void GraphView::scrollContentsBy(int dx, int dy) {
  QGraphicsView::scrollContentsBy(dx, dy);
  emit viewChanged();
}

void GraphView::resizeEvent(QResizeEvent* event) {
  QGraphicsView::resizeEvent(event);
  emit viewChanged();
}

QGraphicsItem* GraphView::nodeItem(const std::string& id) const {
  auto it = nodes_.find(id);
  return it == nodes_.end() ? nullptr : it->second;
}

QGraphicsItem* GraphView::clusterItem(const std::string& id) const {
  auto it = clusters_.find(id);
  return it == clusters_.end() ? nullptr : it->second;
}

int GraphView::layerClusterCount() const {
  int n = 0;
  for (const auto& c : layout_.clusters)
    n += c.id.find('.') == std::string::npos;
  return n;
}

void GraphView::fitAll() {
  fitInView(scene()->sceneRect(), Qt::KeepAspectRatio);
  emit viewChanged();
}

bool GraphView::exportSvg(const QString& path, QString* error) const {
  QSvgGenerator svg;
  svg.setFileName(path);
  const auto rect = scene()->sceneRect();
  svg.setSize(rect.size().toSize());
  svg.setViewBox(QRectF(QPointF(0, 0), rect.size()));
  svg.setTitle("LoRAShear dependency graph");
  QPainter painter;
  if (!painter.begin(&svg)) {
    if (error) *error = path + ": cannot write";
    return false;
  }
  scene()->render(&painter, QRectF(QPointF(0, 0), rect.size()), rect);
  painter.end();
  if (!QFileInfo(path).exists() || QFileInfo(path).size() == 0) {
    if (error) *error = path + ": nothing was written";
    return false;
  }
  return true;
}

bool GraphView::exportPng(const QString& path, double scale, QString* error) const {
  const auto rect = scene()->sceneRect();
  QImage image((rect.size() * scale).toSize(), QImage::Format_ARGB32);
  image.fill(Qt::white);
  QPainter painter(&image);
  painter.setRenderHint(QPainter::Antialiasing);
  scene()->render(&painter, QRectF(QPointF(0, 0), rect.size() * scale), rect);
  painter.end();
  if (!image.save(path, "PNG")) {
    if (error) *error = path + ": cannot write the PNG";
    return false;
  }
  return true;
}

void GraphView::wheelEvent(QWheelEvent* event) {
  const double factor = std::pow(1.0015, event->angleDelta().y());
  scale(factor, factor);
  emit viewChanged();
}

void GraphView::mousePressEvent(QMouseEvent* event) {
  for (auto* item : items(event->pos())) {
    const auto id = item->data(kRoleNode).toString();
    if (id.startsWith('n')) {
      emit operatorSelected(id.mid(1).toLongLong());
      break;
    }
  }
  QGraphicsView::mousePressEvent(event);
}

void GraphView::mouseDoubleClickEvent(QMouseEvent* event) {
  for (auto* item : items(event->pos())) {
    const auto layer = item->data(kRoleLayer);
    if (layer.isValid() && layer.toInt() >= 0 &&
        (item->data(kRoleCluster).toString().indexOf('.') < 0)) {
      emit layerToggleRequested(layer.toInt());
      return;
    }
  }
  QGraphicsView::mouseDoubleClickEvent(event);
}

}  // namespace lorashear
