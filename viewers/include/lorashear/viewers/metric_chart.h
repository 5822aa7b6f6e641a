#pragma once
// A live line chart of training metrics (Qt Charts): named series appended in batches, a series
// optionally drawn as a faint raw line with its exponential moving average on top; the axes follow
// the data.

#include <QChartView>
#include <QColor>
#include <QList>
#include <QPointF>
#include <QString>

#include <map>

class QLineSeries;
class QValueAxis;

namespace lorashear {

class MetricChart : public QChartView {
  Q_OBJECT
 public:
  explicit MetricChart(const QString& title, QWidget* parent = nullptr);
  /// `ema` in (0, 1): the raw line is drawn faint and its moving average (weight `ema` on the
  /// newest point) on top; 0: the raw line alone.
  void addSeries(const QString& name, const QColor& colour, double ema = 0);
  bool hasSeries(const QString& name) const { return series_.count(name) > 0; }
  void append(const QString& name, const QList<QPointF>& points);
  int pointCount(const QString& name) const;
  /// The smoothed value of the last point (the raw one without smoothing).
  double lastValue(const QString& name) const;
  void clear();

 private:
  struct Series {
    QLineSeries* raw = nullptr;
    QLineSeries* smooth = nullptr;
    double alpha = 0;
    double ema = 0;
    bool started = false;
  };
  std::map<QString, Series> series_;
  QValueAxis* x_ = nullptr;
  QValueAxis* y_ = nullptr;
  bool empty_ = true;
  double x_max_ = 1, y_min_ = 0, y_max_ = 1;
};

}  // namespace lorashear
