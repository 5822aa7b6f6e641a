#include "lorashear/viewers/metric_chart.h"

#include <QChart>
#include <QLineSeries>
#include <QValueAxis>

#include <algorithm>

namespace lorashear {

MetricChart::MetricChart(const QString& title, QWidget* parent) : QChartView(parent) {
  auto* chart = new QChart;
  chart->setTitle(title);
  chart->legend()->setAlignment(Qt::AlignBottom);
  chart->setMargins(QMargins(4, 4, 4, 4));
  x_ = new QValueAxis;
  x_->setTitleText(tr("step"));
  x_->setLabelFormat("%d");
  y_ = new QValueAxis;
  chart->addAxis(x_, Qt::AlignBottom);
  chart->addAxis(y_, Qt::AlignLeft);
  setChart(chart);
  setRenderHint(QPainter::Antialiasing);
  setMinimumHeight(180);
}

void MetricChart::addSeries(const QString& name, const QColor& colour, double ema) {
  Series s;
  s.alpha = ema;
  s.raw = new QLineSeries;
  s.raw->setName(ema > 0 ? name + tr(" (raw)") : name);
  QColor faint = colour;
  if (ema > 0) faint.setAlpha(70);
  s.raw->setPen(QPen(faint, ema > 0 ? 1.0 : 1.6));
  chart()->addSeries(s.raw);
  s.raw->attachAxis(x_);
  s.raw->attachAxis(y_);
  if (ema > 0) {
    s.smooth = new QLineSeries;
    s.smooth->setName(name);
    s.smooth->setPen(QPen(colour, 2.0));
    chart()->addSeries(s.smooth);
    s.smooth->attachAxis(x_);
    s.smooth->attachAxis(y_);
  }
  series_[name] = s;
}

void MetricChart::append(const QString& name, const QList<QPointF>& points) {
  auto it = series_.find(name);
  if (it == series_.end() || points.isEmpty()) return;
  auto& s = it->second;
  s.raw->append(points);
  if (s.smooth) {
    QList<QPointF> smooth;
    smooth.reserve(points.size());
    for (const auto& p : points) {
      s.ema = s.started ? s.alpha * p.y() + (1 - s.alpha) * s.ema : p.y();
      s.started = true;
      smooth.append({p.x(), s.ema});
    }
    s.smooth->append(smooth);
  }
  for (const auto& p : points) {
    if (empty_) {
      y_min_ = y_max_ = p.y();
      empty_ = false;
    }
    x_max_ = std::max(x_max_, p.x());
    y_min_ = std::min(y_min_, p.y());
    y_max_ = std::max(y_max_, p.y());
  }
  x_->setRange(0, x_max_);
  const double pad = std::max(1e-9, (y_max_ - y_min_) * 0.05);
  y_->setRange(y_min_ - pad, y_max_ + pad);
}

int MetricChart::pointCount(const QString& name) const {
  auto it = series_.find(name);
  return it == series_.end() ? 0 : static_cast<int>(it->second.raw->count());
}

double MetricChart::lastValue(const QString& name) const {
  auto it = series_.find(name);
  if (it == series_.end() || it->second.raw->count() == 0) return 0;
  const auto* line = it->second.smooth ? it->second.smooth : it->second.raw;
  return line->at(line->count() - 1).y();
}

void MetricChart::clear() {
  for (auto& [name, s] : series_) {
    s.raw->clear();
    if (s.smooth) s.smooth->clear();
    s.started = false;
  }
  empty_ = true;
  x_max_ = 1;
}

}  // namespace lorashear
