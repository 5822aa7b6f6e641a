#pragma once
// A live line chart of training metrics (Qt Charts): named series appended in batches, a series
// optionally drawn as a faint raw line with its exponential moving average on top; the axes follow
// the data. Every point is kept, but long series are drawn downsampled per pixel column (min, max
// and last of each bucket), so 100 000 points draw as fast as 2 000. Hover shows the exact value of
// the nearest point; PNG and CSV export (CSV: every point, not the drawn ones). Each point carries
// its step and its wall-clock time, and the x-axis shows either.

#include <QChartView>
#include <QColor>
#include <QList>
#include <QPointF>
#include <QString>
#include <QTimer>

#include <map>
#include <vector>

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
  size_t seriesCount() const { return series_.size(); }
  /// Removes every series (clear() keeps them, empty).
  void removeAllSeries();
  /// Points (step, value); `seconds`: the wall-clock time of each point (empty: the step).
  void append(const QString& name, const QList<QPointF>& points, const QList<double>& seconds = {});
  /// The y-axis title: what the values are ("loss", "tokens/s").
  void setValueTitle(const QString& title);
  /// The x-axis: steps (default) or seconds since the run started.
  void setWallTime(bool wall);
  bool wallTime() const { return wall_; }
  /// A distinct colour for the i-th of several series (categories).
  static QColor paletteColour(int i);
  /// Points received (all kept) / points drawn now (downsampled).
  int pointCount(const QString& name) const;
  int drawnCount(const QString& name) const;
  /// The smoothed value of the last point (the raw one without smoothing).
  double lastValue(const QString& name) const;
  void clear();
  /// Redraws the series now (appends are otherwise drawn at most every 100 ms).
  void flush();
  bool exportPng(const QString& path, QString* error = nullptr);
  /// One row per step: step, seconds, then each series (raw, and EMA where drawn), empty where a
  /// series has none.
  bool exportCsv(const QString& path, QString* error = nullptr) const;

 protected:
  void contextMenuEvent(QContextMenuEvent* event) override;

 private:
  struct Series {
    QString name;
    QLineSeries* raw = nullptr;
    QLineSeries* smooth = nullptr;
    double alpha = 0;
    double ema = 0;
    bool started = false;
    std::vector<QPointF> points, smoothed;  // everything received, by step
    std::vector<double> seconds;            // wall-clock time of each point
  };
  /// `points` with x replaced by the wall-clock time.
  static std::vector<QPointF> bySeconds(const Series& s, const std::vector<QPointF>& points);
  void redraw();
  std::map<QString, Series> series_;
  std::vector<QString> order_;
  QValueAxis* x_ = nullptr;
  QValueAxis* y_ = nullptr;
  QTimer redraw_;
  bool empty_ = true;
  bool wall_ = false;
  double x_max_ = 1, y_min_ = 0, y_max_ = 1;
};

/// Downsamples `points` (x ascending) to at most about 3 points per bucket of `buckets` equal x
/// ranges: each bucket's minimum, maximum and last point, in x order.
QList<QPointF> downsample(const std::vector<QPointF>& points, int buckets);

}  // namespace lorashear
