#include "lorashear/viewers/metric_chart.h"

#include <QChart>
#include <QContextMenuEvent>
#include <QFile>
#include <QFileDialog>
#include <QLineSeries>
#include <QMenu>
#include <QSaveFile>
#include <QTextStream>
#include <QToolTip>
#include <QValueAxis>

#include <algorithm>
#include <cmath>
#include <set>

namespace lorashear {

QList<QPointF> downsample(const std::vector<QPointF>& points, int buckets) {
  QList<QPointF> out;
  if (points.size() <= static_cast<size_t>(3 * std::max(1, buckets))) {
    out.reserve(static_cast<qsizetype>(points.size()));
    for (const auto& p : points)
      out.append(p);
    return out;
  }
  const double x0 = points.front().x(), x1 = points.back().x();
  const double width = (x1 - x0) / buckets;
  size_t i = 0;
  out.reserve(3 * buckets);
  for (int b = 0; b < buckets && i < points.size(); ++b) {
    const double end = b + 1 == buckets ? x1 : x0 + width * (b + 1);
    size_t lo = i, hi = i, last = i;
    for (; i < points.size() && (points[i].x() <= end || b + 1 == buckets); ++i) {
      if (points[i].y() < points[lo].y()) lo = i;
      if (points[i].y() > points[hi].y()) hi = i;
      last = i;
    }
    std::set<size_t> keep{lo, hi, last};  // in x order, without repeats
    for (auto k : keep)
      out.append(points[k]);
  }
  return out;
}

MetricChart::MetricChart(const QString& title, QWidget* parent) : QChartView(parent) {
  auto* chart = new QChart;
  chart->setTitle(title);
  chart->legend()->setAlignment(Qt::AlignBottom);
  chart->setMargins(QMargins(4, 4, 4, 4));
  x_ = new QValueAxis;
  x_->setTitleText(tr("step"));
  x_->setLabelFormat("%d");
  y_ = new QValueAxis;
  y_->setLabelFormat("%.3g");
  chart->addAxis(x_, Qt::AlignBottom);
  chart->addAxis(y_, Qt::AlignLeft);
  auto* made = this->chart();  // QChartView's own, which setChart does not delete
  setChart(chart);
  delete made;
  setRenderHint(QPainter::Antialiasing);
  setMinimumHeight(180);
  redraw_.setSingleShot(true);
  redraw_.setInterval(100);
  connect(&redraw_, &QTimer::timeout, this, &MetricChart::redraw);
}

void MetricChart::addSeries(const QString& name, const QColor& colour, double ema) {
  Series s;
  s.name = name;
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
  // Hover: the exact value of the nearest received point.
  auto hover = [this, name](const QPointF& at, bool state) {
    if (!state) return QToolTip::hideText();
    const auto& s = series_[name];
    if (s.points.empty()) return;
    // The nearest point on the axis shown (both steps and seconds ascend).
    auto x_of = [&](size_t k) { return wall_ ? s.seconds[k] : s.points[k].x(); };
    size_t lo = 0, hi = s.points.size();
    while (lo < hi) {
      const size_t mid = (lo + hi) / 2;
      if (x_of(mid) < at.x())
        lo = mid + 1;
      else
        hi = mid;
    }
    size_t i = std::min(lo, s.points.size() - 1);
    if (i > 0 && std::abs(x_of(i - 1) - at.x()) < std::abs(x_of(i) - at.x())) --i;
    QToolTip::showText(QCursor::pos(),
                       tr("%1 at step %2 (%3 s): %4")
                           .arg(name)
                           .arg(s.points[i].x())
                           .arg(s.seconds[i], 0, 'f', 1)
                           .arg(s.points[i].y(), 0, 'g', 6),
                       this);
  };
  s.raw->setVisible(false);  // until it has points
  if (s.smooth) s.smooth->setVisible(false);
  connect(s.raw, &QLineSeries::hovered, this, hover);
  if (s.smooth) connect(s.smooth, &QLineSeries::hovered, this, hover);
  series_[name] = s;
  order_.push_back(name);
}

void MetricChart::removeAllSeries() {
  chart()->removeAllSeries();
  series_.clear();
  order_.clear();
  empty_ = true;
  x_max_ = 1;
}

QColor MetricChart::paletteColour(int i) {
  static const QColor colours[] = {
      {31, 119, 180}, {255, 127, 14},  {44, 160, 44},   {214, 39, 40},  {148, 103, 189},
      {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
  return colours[static_cast<size_t>(i) % std::size(colours)];
}

void MetricChart::append(const QString& name, const QList<QPointF>& points,
                         const QList<double>& seconds) {
  auto it = series_.find(name);
  if (it == series_.end() || points.isEmpty()) return;
  auto& s = it->second;
  for (qsizetype i = 0; i < points.size(); ++i) {
    const auto& p = points[i];
    s.points.push_back(p);
    s.seconds.push_back(i < seconds.size() ? seconds[i] : p.x());
    if (s.smooth) {
      s.ema = s.started ? s.alpha * p.y() + (1 - s.alpha) * s.ema : p.y();
      s.started = true;
      s.smoothed.push_back({p.x(), s.ema});
    }
    if (empty_) {
      y_min_ = y_max_ = p.y();
      empty_ = false;
    }
    y_min_ = std::min(y_min_, p.y());
    y_max_ = std::max(y_max_, p.y());
  }
  if (!redraw_.isActive()) redraw_.start();
}

void MetricChart::setValueTitle(const QString& title) {
  y_->setTitleText(title);
}

void MetricChart::setWallTime(bool wall) {
  if (wall == wall_) return;
  wall_ = wall;
  x_->setTitleText(wall ? tr("seconds") : tr("step"));
  x_->setLabelFormat(wall ? "%.0f" : "%d");
  flush();
}

std::vector<QPointF> MetricChart::bySeconds(const Series& s, const std::vector<QPointF>& points) {
  std::vector<QPointF> out(points.size());
  for (size_t i = 0; i < points.size(); ++i)
    out[i] = {s.seconds[i], points[i].y()};
  return out;
}

void MetricChart::flush() {
  redraw_.stop();
  redraw();
}

void MetricChart::redraw() {
  // One bucket per pixel column of the plot area.
  const int buckets = std::max(50, static_cast<int>(chart()->plotArea().width()));
  x_max_ = 1;
  for (auto& [name, s] : series_) {
    // A sparse series (an evaluation every N steps) shows its points, or one value is invisible.
    const auto n = s.points.size();
    // A series without points stays out of the plot and the legend (recovery before it starts).
    s.raw->setVisible(n > 0);
    if (s.smooth) s.smooth->setVisible(n > 0);
    s.raw->setPointsVisible(
        !s.smooth && n > 0 && n <= 200 &&
        (n == 1 ||
         (s.points.back().x() - s.points.front().x()) / static_cast<double>(n - 1) > 1.5));
    if (wall_) {
      s.raw->replace(downsample(bySeconds(s, s.points), buckets));
      if (s.smooth) s.smooth->replace(downsample(bySeconds(s, s.smoothed), buckets));
    } else {
      s.raw->replace(downsample(s.points, buckets));
      if (s.smooth) s.smooth->replace(downsample(s.smoothed, buckets));
    }
    if (!s.points.empty())
      x_max_ = std::max(x_max_, wall_ ? s.seconds.back() : s.points.back().x());
  }
  x_->setRange(0, x_max_);
  // A flat series (a constant learning rate) gets a band around its value, not a zero-height axis.
  const double pad =
      y_max_ > y_min_ ? (y_max_ - y_min_) * 0.05 : std::max(1e-9, std::abs(y_max_) * 0.05);
  // Counts, losses and rates never go below zero: no negative axis for them.
  y_->setRange(y_min_ >= 0 ? std::max(0.0, y_min_ - pad) : y_min_ - pad, y_max_ + pad);
  // Counts and rates in the thousands as whole numbers ("1536", not "1.54e+03").
  const double top = std::max(std::abs(y_min_), std::abs(y_max_));
  y_->setLabelFormat(top >= 1000 && top < 1e7 ? "%.0f" : "%.3g");
}

int MetricChart::pointCount(const QString& name) const {
  auto it = series_.find(name);
  return it == series_.end() ? 0 : static_cast<int>(it->second.points.size());
}

int MetricChart::drawnCount(const QString& name) const {
  auto it = series_.find(name);
  return it == series_.end() ? 0 : static_cast<int>(it->second.raw->count());
}

double MetricChart::lastValue(const QString& name) const {
  auto it = series_.find(name);
  if (it == series_.end() || it->second.points.empty()) return 0;
  return it->second.smooth ? it->second.smoothed.back().y() : it->second.points.back().y();
}

void MetricChart::clear() {
  for (auto& [name, s] : series_) {
    s.raw->clear();
    s.raw->setVisible(false);
    if (s.smooth) {
      s.smooth->clear();
      s.smooth->setVisible(false);
    }
    s.points.clear();
    s.smoothed.clear();
    s.seconds.clear();
    s.started = false;
  }
  empty_ = true;
  x_max_ = 1;
}

bool MetricChart::exportPng(const QString& path, QString* error) {
  flush();
  if (!grab().save(path, "PNG")) {
    if (error) *error = path + ": cannot write the PNG";
    return false;
  }
  return true;
}

bool MetricChart::exportCsv(const QString& path, QString* error) const {
  // Rows by x over every series; written to a temporary file and renamed.
  std::map<double, std::vector<QString>> rows;
  std::map<double, double> seconds;
  int columns = 0;
  QStringList header{"step", "seconds"};
  for (const auto& name : order_) {
    const auto& s = series_.at(name);
    const std::vector<const std::vector<QPointF>*> sets =
        s.smooth ? std::vector<const std::vector<QPointF>*>{&s.points, &s.smoothed}
                 : std::vector<const std::vector<QPointF>*>{&s.points};
    for (size_t k = 0; k < sets.size(); ++k) {
      header << (s.smooth && k == 0 ? name + " (raw)" : s.smooth ? name + " (EMA)" : name);
      for (size_t i = 0; i < sets[k]->size(); ++i) {
        const auto& p = (*sets[k])[i];
        seconds.emplace(p.x(), s.seconds[i]);
        auto& row = rows[p.x()];
        row.resize(static_cast<size_t>(columns + 1));
        row[static_cast<size_t>(columns)] = QString::number(p.y(), 'g', 9);
      }
      ++columns;
    }
  }
  QSaveFile file(path);
  if (!file.open(QIODevice::WriteOnly | QIODevice::Text)) {
    if (error) *error = path + ": " + file.errorString();
    return false;
  }
  QTextStream out(&file);
  out << header.join(',') << '\n';
  for (auto& [x, values] : rows) {
    values.resize(static_cast<size_t>(columns));
    out << QString::number(x, 'g', 12) << ',' << QString::number(seconds[x], 'f', 3);
    for (const auto& v : values)
      out << ',' << v;
    out << '\n';
  }
  out.flush();
  if (!file.commit()) {
    if (error) *error = path + ": " + file.errorString();
    return false;
  }
  return true;
}

void MetricChart::contextMenuEvent(QContextMenuEvent* event) {
  QMenu menu(this);
  auto* png = menu.addAction(tr("Export as PNG…"));
  menu.addAction(tr("Export as CSV…"));
  auto* chosen = menu.exec(event->globalPos());
  if (chosen == nullptr) return;
  const bool as_png = chosen == png;
  const auto path = QFileDialog::getSaveFileName(
      this, as_png ? tr("Export the chart as PNG") : tr("Export the chart's data as CSV"),
      chart()->title() + (as_png ? ".png" : ".csv"),
      as_png ? tr("PNG (*.png)") : tr("CSV (*.csv)"));
  if (path.isEmpty()) return;
  QString error;
  if (!(as_png ? exportPng(path, &error) : exportCsv(path, &error)))
    QToolTip::showText(event->globalPos(), error, this);
}

}  // namespace lorashear
