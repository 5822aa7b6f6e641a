// The live chart: every point kept, long series drawn downsampled per pixel column (keeping each
// bucket's extremes), the EMA, CSV with every point, PNG.
#include <QtTest>

#include <QChart>
#include <QLineSeries>
#include <QTemporaryDir>
#include <QToolTip>
#include <QValueAxis>

#include <cmath>

#include "lorashear/viewers/metric_chart.h"

using namespace lorashear;

class TestMetricChart : public QObject {
  Q_OBJECT

 private slots:
  void downsampleKeepsExtremes() {
    std::vector<QPointF> points;
    for (int i = 0; i < 100000; ++i)
      points.push_back({double(i), std::sin(i * 0.001) + (i == 54321 ? 5.0 : 0.0)});
    const auto d = downsample(points, 500);
    QVERIFY(d.size() <= 1500);
    QVERIFY(d.size() >= 500);
    double top = -1e9;
    for (int i = 1; i < d.size(); ++i)
      QVERIFY(d[i].x() > d[i - 1].x());
    for (const auto& p : d)
      top = std::max(top, p.y());
    QCOMPARE(top, points[54321].y());  // a one-point spike survives
    QCOMPARE(d.back(), points.back());
    // Short series are drawn as they are.
    std::vector<QPointF> few(points.begin(), points.begin() + 100);
    QCOMPARE(downsample(few, 500).size(), 100);
  }

  void chartKeepsEverythingAndDrawsLittle() {
    MetricChart chart("Training loss");
    chart.resize(800, 400);
    chart.addSeries("loss", Qt::blue, 0.1);
    chart.addSeries("zeroed", Qt::red);
    chart.show();
    QVERIFY(QTest::qWaitForWindowExposed(&chart));
    QList<QPointF> loss, zeroed;
    for (int i = 1; i <= 100000; ++i) {
      loss.append({double(i), 2.0 / std::sqrt(double(i)) + 0.1 * std::sin(i)});
      zeroed.append({double(i), double(i / 1000)});
    }
    chart.append("loss", loss);
    chart.append("zeroed", zeroed);
    QElapsedTimer t;
    t.start();
    chart.flush();
    chart.repaint();
    qInfo("redraw with 2 x 100000 points: %.1f ms", double(t.nsecsElapsed()) / 1e6);
    QCOMPARE(chart.pointCount("loss"), 100000);
    QVERIFY(chart.drawnCount("loss") <= 3 * 800);
    QVERIFY(chart.drawnCount("loss") > 100);
    // EMA of the last point differs from the raw value (smoothed).
    QVERIFY(std::abs(chart.lastValue("loss") - loss.back().y()) > 1e-6);

    QTemporaryDir dir;
    const auto csv = dir.filePath("loss.csv");
    QVERIFY(chart.exportCsv(csv));
    QFile f(csv);
    QVERIFY(f.open(QIODevice::ReadOnly));
    const auto lines = QString::fromUtf8(f.readAll()).split('\n', Qt::SkipEmptyParts);
    QCOMPARE(lines.size(), 100001);
    QCOMPARE(lines.front(), QString("step,seconds,loss (raw),loss (EMA),zeroed"));
    QCOMPARE(lines[1].split(',').size(), 5);
    QVERIFY(chart.exportPng(dir.filePath("loss.png")));
    QVERIFY(!QImage(dir.filePath("loss.png")).isNull());
    QString error;
    QVERIFY(!chart.exportCsv(dir.filePath("no/such/dir/x.csv"), &error));
    QVERIFY(error.contains("x.csv"));
  }

  void wallTimeAxis() {
    // Points carry their step and their time; the axis shows either, the values stay.
    MetricChart chart("Tokens/s");
    chart.resize(600, 300);
    chart.addSeries("a", MetricChart::paletteColour(0));
    chart.addSeries("b", MetricChart::paletteColour(1));
    QVERIFY(MetricChart::paletteColour(0) != MetricChart::paletteColour(1));
    chart.append("a", {{1, 10}, {2, 20}, {3, 30}}, {0.5, 4.0, 9.5});
    chart.flush();
    auto* x = qobject_cast<QValueAxis*>(chart.chart()->axes(Qt::Horizontal).front());
    QCOMPARE(x->max(), 3.0);
    chart.setWallTime(true);
    QVERIFY(chart.wallTime());
    QCOMPARE(x->max(), 9.5);
    QCOMPARE(x->titleText(), QString("seconds"));
    // Hover names the nearest point on the axis shown: 4.5 s is nearest the point at 4 s.
    chart.show();
    QVERIFY(QTest::qWaitForWindowExposed(&chart));
    auto* raw = qobject_cast<QLineSeries*>(chart.chart()->series().front());
    emit raw->hovered(QPointF(4.5, 20), true);
    QVERIFY2(QToolTip::text().contains("at step 2 (4.0 s): 20"), qPrintable(QToolTip::text()));
    QCOMPARE(chart.pointCount("a"), 3);
    QTemporaryDir dir;
    QVERIFY(chart.exportCsv(dir.filePath("t.csv")));
    QFile f(dir.filePath("t.csv"));
    QVERIFY(f.open(QIODevice::ReadOnly));
    const auto lines = QString::fromUtf8(f.readAll()).split('\n', Qt::SkipEmptyParts);
    QCOMPARE(lines[2], QString("2,4.000,20,"));
    // Series can be replaced (a new run with other categories).
    chart.removeAllSeries();
    QVERIFY(!chart.hasSeries("a"));
    QCOMPARE(chart.pointCount("a"), 0);
    chart.addSeries("c", Qt::black);
    chart.append("c", {{1, 1}});
    QCOMPARE(chart.pointCount("c"), 1);
  }
};

QTEST_MAIN(TestMetricChart)
#include "test_metric_chart.moc"
