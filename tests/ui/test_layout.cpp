// The window's layout at the sizes people use (1366×768, a laptop; 1920×1080): with the demo model
// open and every chart of a run filled, each chart's title, axis titles, tick labels and legend
// are drawn in full and inside the chart (Qt Charts elides what does not fit, to "…"); the
// comparison tables show every column without a horizontal cut. The central tabs follow the work
// (a run shows the dashboard, a comparison its tables, a node group the graph), and a window state
// saved by an older layout is ignored instead of breaking this one.
#include <QtTest>

#include <QAbstractAxis>
#include <QChart>
#include <QChartView>
#include <QDockWidget>
#include <QGraphicsScene>
#include <QGraphicsSimpleTextItem>
#include <QGraphicsTextItem>
#include <QHeaderView>
#include <QLegend>
#include <QLegendMarker>
#include <QScrollArea>
#include <QScrollBar>
#include <QSettings>
#include <QStackedWidget>
#include <QTabWidget>
#include <QTableWidget>
#include <QTemporaryDir>

#include <cmath>
#include <fstream>

#include "chart_checks.h"
#include "lorashear/runtime.h"
#include "lorashear/ui/compare_panel.h"
#include "lorashear/ui/engine.h"
#include "lorashear/ui/inspector.h"
#include "lorashear/ui/main_window.h"
#include "lorashear/ui/plan_editor.h"
#include "lorashear/ui/run_panel.h"
#include "lorashear/viewers/graph_legend.h"
#include "lorashear/viewers/graph_overview.h"
#include "lorashear/viewers/graph_view.h"
#include "lorashear/viewers/metric_chart.h"
#include "lorashear/viewers/sparsity_bars.h"
#include "test_support.h"

using namespace lorashear;

namespace {

bool open_and_wait(MainWindow& w, const QString& path) {
  QSignalSpy shown(&w, &MainWindow::graphShown);
  return w.openModel(path) && shown.wait(60000);
}

// Makes `widget` the one on screen: the tab pages and docks that hold it are brought forward.
void bring_forward(QWidget* widget) {
  for (QWidget* p = widget; p; p = p->parentWidget()) {
    if (auto* dock = qobject_cast<QDockWidget*>(p)) {
      dock->show();
      dock->raise();
    }
    if (auto* stack = qobject_cast<QStackedWidget*>(p->parentWidget()))
      if (auto* tabs = qobject_cast<QTabWidget*>(stack->parentWidget())) tabs->setCurrentWidget(p);
  }
}

// A run's worth of metrics in every chart: 2000 pruning steps, 1000 recovery steps, three
// validation categories and their sampling weights, and the sparsity of four layers.
void fill_charts(RunPanel* run) {
  QList<QPointF> loss, recovery, scheduled, zeroed, lr, speed;
  QList<double> seconds, recovery_seconds;
  for (int i = 1; i <= 2000; ++i) {
    loss.append({double(i), 2.0 / std::sqrt(double(i)) + 0.6 + 0.05 * std::sin(i)});
    scheduled.append({double(i), double(std::min(1536, i))});
    zeroed.append({double(i), double(std::min(1536, i * 9 / 10))});
    lr.append({double(i), 1e-3 * (i < 100 ? i / 100.0 : 1.0)});
    speed.append({double(i), 12345.0 + 500.0 * std::sin(i * 0.01)});
    seconds.append(i * 0.85);
  }
  for (int i = 2001; i <= 3000; ++i) {
    recovery.append({double(i), 1.2 / std::sqrt(double(i - 2000)) + 0.6});
    recovery_seconds.append(i * 0.85);
  }
  run->lossChart()->append("loss", loss, seconds);
  run->lossChart()->append("recovery", recovery, recovery_seconds);
  run->groupsChart()->append("scheduled", scheduled, seconds);
  run->groupsChart()->append("zeroed", zeroed, seconds);
  run->lrChart()->append("lr", lr, seconds);
  run->speedChart()->append("tokens/s", speed, seconds);
  const QStringList categories{"wikitext2_valid", "tinystories", "instructions"};
  for (int c = 0; c < categories.size(); ++c) {
    QList<QPointF> validation, weight;
    for (int i = 2000; i <= 3000; i += 100) {
      validation.append({double(i), 3.0 - c * 0.4 - (i - 2000) * 1e-3});
      weight.append({double(i), (c + 1) / 6.0});
    }
    run->categoryChart()->addSeries(categories[c], MetricChart::paletteColour(c));
    run->categoryChart()->append(categories[c], validation);
    if (c < 2) {
      run->weightsChart()->addSeries(categories[c], MetricChart::paletteColour(c));
      run->weightsChart()->append(categories[c], weight);
    }
  }
  run->sparsityBars()->setValues({0.25, 0.5, 0.5, 0.0}, {0.3, 0.45, 0.5, 0.2});
  for (auto* chart : {run->lossChart(), run->groupsChart(), run->lrChart(), run->speedChart(),
                      run->categoryChart(), run->weightsChart()})
    chart->flush();
}

QString dashboard_problems(MainWindow& w) {
  QStringList problems;
  const auto views = w.runPanel()->dashboard()->findChildren<QChartView*>();
  if (views.size() < 7) problems << QString("%1 charts, expected 7").arg(views.size());
  for (auto* view : views) {
    // A dashboard that scrolls is fine; what is scrolled to must be readable.
    bring_forward(view);
    for (QWidget* p = view->parentWidget(); p; p = p->parentWidget())
      if (auto* scroll = qobject_cast<QScrollArea*>(p->parentWidget()))
        if (p == scroll->viewport()) scroll->ensureWidgetVisible(view, 0, 0);
    const auto problem = test::chart_problems(view);
    if (!problem.isEmpty()) problems << problem;
  }
  return problems.join("\n");
}

// What is cut in `table` at its current size ("" when nothing): columns narrower than their
// contents or header, a horizontal scroll, fewer than `rows` rows in view.
QString table_problems(QTableWidget* table, int rows) {
  QStringList problems;
  if (!table->isVisible()) return table->objectName() + ": not on screen";
  auto* header = table->horizontalHeader();
  const int last = table->columnCount() - 1;
  for (int c = 0; c <= last; ++c) {
    const int needed =
        std::max(header->sectionSizeHint(c),
                 c == last ? 0 : static_cast<QAbstractItemView*>(table)->sizeHintForColumn(c));
    if (header->sectionSize(c) < needed)
      problems << QString("column '%1' is %2 px, needs %3")
                      .arg(table->horizontalHeaderItem(c)->text())
                      .arg(header->sectionSize(c))
                      .arg(needed);
  }
  if (header->length() > table->viewport()->width())
    problems << QString("the columns need %1 px, the table shows %2")
                    .arg(header->length())
                    .arg(table->viewport()->width());
  if (table->horizontalScrollBar()->isVisible()) problems << "it scrolls horizontally";
  const int in_view = table->viewport()->height() / std::max(1, table->rowHeight(0));
  if (in_view < std::min(rows, table->rowCount()))
    problems << QString("%1 of %2 rows in view").arg(in_view).arg(table->rowCount());
  return problems.isEmpty() ? QString() : table->objectName() + ": " + problems.join("; ");
}

void screenshot(MainWindow& w, const QString& name) {
  const auto dir = qEnvironmentVariable("LORASHEAR_SCREENSHOT_LAYOUT");
  if (dir.isEmpty()) return;
  QTest::qWait(200);
  w.grab().save(QDir(dir).filePath(name + ".png"));
}

}  // namespace

class TestLayout : public QObject {
  Q_OBJECT
  QTemporaryDir dir_;
  QString demo_, text_;

 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    QSettings().clear();
    init_runtime();
    demo_ = QString::fromStdString(test::source_path("resources/demo-model").string());
    text_ = dir_.filePath("text.txt");
    std::ofstream out(text_.toStdString());
    for (int i = 0; i < 1500; ++i)
      out << "Once upon a time there was a little girl named Lily. She liked to play in the park "
             "with her dog. One day she found a big red ball and they played all day.\n\n";
  }

  void init() { QSettings().clear(); }

  void dashboardIsReadable_data() {
    QTest::addColumn<QSize>("size");
    QTest::newRow("1366x768") << QSize(1366, 768);
    QTest::newRow("1920x1080") << QSize(1920, 1080);
  }

  void dashboardIsReadable() {
    QFETCH(QSize, size);
    MainWindow w;
    w.resize(size);
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    QCOMPARE(w.size(), size);
    QVERIFY(open_and_wait(w, demo_));
    const auto tag = QString(QTest::currentDataTag());
    screenshot(w, "layout-" + tag + "-graph");
    fill_charts(w.runPanel());
    bring_forward(w.runPanel()->lossChart());
    screenshot(w, "layout-" + tag + "-dashboard");
    if (!qEnvironmentVariableIsEmpty("LORASHEAR_SCREENSHOT_LAYOUT")) {  // the docks with forms
      bring_forward(w.runPanel());
      screenshot(w, "layout-" + tag + "-run");
      bring_forward(w.planEditor());
      screenshot(w, "layout-" + tag + "-plan");
      bring_forward(w.runPanel()->lossChart());
    }
    QString report;
    QTRY_VERIFY2_WITH_TIMEOUT((report = dashboard_problems(w)).isEmpty(), qPrintable(report), 3000);
    // The wall-clock axis has longer labels.
    w.runPanel()->setWallTime(true);
    QTRY_VERIFY2_WITH_TIMEOUT((report = dashboard_problems(w)).isEmpty(), qPrintable(report), 3000);
  }

  void compareTablesShowEveryColumn() {
    MainWindow w;
    w.resize(1366, 768);
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    QVERIFY(open_and_wait(w, demo_));
    auto* compare = w.comparePanel();
    compare->setOtherModel(demo_);
    QSignalSpy done(w.engine(), &Engine::comparisonChanged);
    QVERIFY(compare->compare());
    QVERIFY(done.wait(60000));
    QTRY_VERIFY(!w.engine()->busy());
    auto* figures = compare->figuresTable();
    auto* groups = compare->groupsTable();
    QCOMPARE(figures->rowCount(),
             5);  // no text, no tasks: parameters, FLOPs, prefill, decode, TTFT
    QVERIFY(groups->rowCount() >= 8);  // the demo's 4 layers, attention and MLP, and more
    bring_forward(compare);            // the form, in its dock
    bring_forward(groups);
    screenshot(w, "layout-1366x768-compare");
    QString report;
    // Every figure and at least five node groups without scrolling.
    QTRY_VERIFY2_WITH_TIMEOUT((report = table_problems(figures, 3)).isEmpty(), qPrintable(report),
                              3000);
    QTRY_VERIFY2_WITH_TIMEOUT((report = table_problems(groups, 5)).isEmpty(), qPrintable(report),
                              3000);
  }

  void centralTabsFollowTheWork() {
    MainWindow w;
    w.resize(1366, 768);
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    auto* tabs = w.centralTabs();
    QVERIFY(tabs);
    QCOMPARE(tabs->objectName(), QString("centralTabs"));
    QCOMPARE(tabs->count(), 4);
    QCOMPARE(tabs->tabText(0), QString("Graph"));
    QCOMPARE(tabs->tabText(1), QString("Dashboard"));
    QCOMPARE(tabs->tabText(2), QString("Compare"));
    QCOMPARE(tabs->tabText(3), QString("Experiments"));
    QCOMPARE(tabs->widget(0), static_cast<QWidget*>(w.graphView()));
    QCOMPARE(tabs->widget(1), w.runPanel()->dashboard());
    QCOMPARE(tabs->widget(2), w.comparePanel()->results());
    QCOMPARE(tabs->currentIndex(), 0);
    // The forms stay in their docks.
    QVERIFY(w.findChild<QDockWidget*>("runDock")->isAncestorOf(w.runPanel()));
    QVERIFY(w.findChild<QDockWidget*>("compareDock")->isAncestorOf(w.comparePanel()));
    QVERIFY(open_and_wait(w, demo_));

    // A run shows the dashboard.
    QVERIFY(w.planEditor()->model()->setTargetRatio(0.25));
    auto* run = w.runPanel();
    run->setTextPath(text_);
    run->setOutputDir(dir_.filePath("pruned"));
    run->setSteps(40);
    QVERIFY(run->start());
    QCOMPARE(tabs->currentWidget(), run->dashboard());
    w.engine()->cancel();
    QTRY_VERIFY_WITH_TIMEOUT(!w.engine()->busy(), 60000);

    // A comparison shows its tables; a node group activated in them shows the graph.
    tabs->setCurrentIndex(0);
    w.comparePanel()->setOtherModel(demo_);
    QSignalSpy done(w.engine(), &Engine::comparisonChanged);
    QVERIFY(w.comparePanel()->compare());
    QVERIFY(done.wait(60000));
    QCOMPARE(tabs->currentWidget(), w.comparePanel()->results());
    QTRY_VERIFY(!w.engine()->busy());
    bring_forward(w.comparePanel());
    emit w.comparePanel()->nodeGroupActivated("L2.mlp");
    QCOMPARE(tabs->currentIndex(), 0);
    QVERIFY(!w.graphView()->highlighted().empty());
    QVERIFY(w.inspector()->isVisible());  // raised over the forms it shares the area with

    // Search shows the graph too.
    tabs->setCurrentWidget(run->dashboard());
    QVERIFY(w.search("L1.attn"));
    QCOMPARE(tabs->currentIndex(), 0);

    // The overlays stay in the graph's corners when the window is resized on another tab.
    tabs->setCurrentWidget(run->dashboard());
    w.resize(1920, 1080);
    QTest::qWait(50);
    tabs->setCurrentIndex(0);
    QTRY_VERIFY(w.graphView()->viewport()->geometry().contains(w.overview()->geometry()));
    const auto area = w.graphView()->viewport()->geometry();
    QVERIFY(w.overview()->isVisible());
    QVERIFY(w.legend()->isVisible());
    QVERIFY(area.contains(w.legend()->geometry()));
    QVERIFY(w.overview()->geometry().right() > area.center().x());  // top right
    QVERIFY(w.legend()->geometry().bottom() > area.center().y());   // bottom left
  }

  void olderWindowStateIsIgnored() {
    {
      // A state saved by the previous layout (version 0): the Inspector hidden.
      MainWindow old;
      old.findChild<QDockWidget*>("inspectorDock")->hide();
      QSettings().setValue("window/state", old.saveState());
    }
    {
      MainWindow w;
      w.show();
      QVERIFY(QTest::qWaitForWindowExposed(&w));
      QVERIFY(w.findChild<QDockWidget*>("inspectorDock")->isVisible());
      QVERIFY(w.centralTabs() && w.centralTabs()->isVisible());
      // This layout's own state is remembered.
      w.findChild<QDockWidget*>("inspectorDock")->hide();
      w.close();
    }
    MainWindow again;
    again.show();
    QVERIFY(QTest::qWaitForWindowExposed(&again));
    QVERIFY(!again.findChild<QDockWidget*>("inspectorDock")->isVisible());
  }
};

QTEST_MAIN(TestLayout)
#include "test_layout.moc"
