#include "lorashear/viewers/graph_legend.h"

#include <QLinearGradient>
#include <QPainter>

#include "lorashear/viewers/graph_view.h"

namespace lorashear {

namespace {
constexpr int kSwatch = 12, kPad = 6, kRow = 17, kRampWidth = 140;

QString number(double v) {
  return QString::number(v, 'g', 3);
}
}  // namespace

GraphLegend::GraphLegend(QWidget* parent) : QWidget(parent) {
  setAttribute(Qt::WA_TransparentForMouseEvents);
}

void GraphLegend::setKinds(const std::vector<std::pair<QString, QColor>>& kinds) {
  kinds_ = kinds;
  scale_ = false;
  updateGeometry();
  adjustSize();
  update();
}

void GraphLegend::setScale(const QString& title, double low, double high) {
  scale_ = true;
  title_ = title;
  low_ = low;
  high_ = high;
  updateGeometry();
  adjustSize();
  update();
}

QString GraphLegend::text() const {
  if (scale_) return QString("%1: %2 … %3").arg(title_, number(low_), number(high_));
  QStringList names;
  for (const auto& [name, colour] : kinds_)
    names << name;
  return names.join(", ");
}

QSize GraphLegend::sizeHint() const {
  const QFontMetrics fm(font());
  if (scale_)
    return {std::max(kRampWidth, fm.horizontalAdvance(title_)) + 2 * kPad, 3 * kRow + kPad};
  if (kinds_.empty())
    return {fm.horizontalAdvance(tr("expand a layer")) + 3 * kPad, kRow + 2 * kPad};
  int width = 0;
  for (const auto& [name, colour] : kinds_)
    width = std::max(width, fm.horizontalAdvance(name));
  const int rows = std::max<int>(1, static_cast<int>(kinds_.size()));
  return {width + kSwatch + 3 * kPad, rows * kRow + 2 * kPad};
}

void GraphLegend::paintEvent(QPaintEvent*) {
  QPainter p(this);
  QColor back = palette().color(QPalette::Window);
  back.setAlpha(225);
  p.setPen(palette().color(QPalette::Mid));
  p.setBrush(back);
  p.drawRoundedRect(rect().adjusted(0, 0, -1, -1), 4, 4);
  p.setPen(palette().color(QPalette::WindowText));
  if (scale_) {
    p.drawText(QRect(kPad, kPad / 2, width() - 2 * kPad, kRow), Qt::AlignLeft | Qt::AlignVCenter,
               title_);
    const QRect ramp(kPad, kPad / 2 + kRow, width() - 2 * kPad, kRow - 4);
    QLinearGradient g(ramp.topLeft(), ramp.topRight());
    for (int i = 0; i <= 8; ++i)
      g.setColorAt(i / 8.0, overlay_colour(i / 8.0));
    p.fillRect(ramp, g);
    const QRect labels(kPad, kPad / 2 + 2 * kRow, width() - 2 * kPad, kRow);
    p.drawText(labels, Qt::AlignLeft | Qt::AlignVCenter, number(low_));
    p.drawText(labels, Qt::AlignRight | Qt::AlignVCenter, number(high_));
    return;
  }
  if (kinds_.empty()) {
    p.drawText(rect().adjusted(kPad, 0, 0, 0), Qt::AlignVCenter, tr("expand a layer"));
    return;
  }
  int y = kPad;
  for (const auto& [name, colour] : kinds_) {
    p.setBrush(colour);
    p.setPen(Qt::black);
    p.drawRect(kPad, y + (kRow - kSwatch) / 2, kSwatch, kSwatch);
    p.setPen(palette().color(QPalette::WindowText));
    p.drawText(QRect(2 * kPad + kSwatch, y, width(), kRow), Qt::AlignLeft | Qt::AlignVCenter, name);
    y += kRow;
  }
}

}  // namespace lorashear
