// The Experiments tab and the Compare tab's new figures on stories260K: a 2 × 2 sweep started from
// the GUI fills the table and the chart (one line per method from the dense point), hover names the
// run, a double-click asks to open that pruned model, the chart and table export; the comparison of
// a pruned run with its dense model shows prefill / decode speed-ups and accuracy per task. A
// cancelled sweep says which runs are missing. LORASHEAR_SCREENSHOT=DIR saves the tabs as PNGs.
#include <QtTest>

#include <cmath>

#include <QChart>
#include <QChartView>
#include <QComboBox>
#include <QHeaderView>
#include <QLineSeries>
#include <QScrollArea>
#include <QScrollBar>
#include <QTabWidget>
#include <QTableWidget>
#include <QTemporaryDir>
#include <QValueAxis>

#include "chart_checks.h"
#include "lorashear/runtime.h"
#include "lorashear/ui/compare_panel.h"
#include "lorashear/ui/engine.h"
#include "lorashear/ui/experiments_panel.h"
#include "lorashear/ui/main_window.h"
#include "lorashear/ui/plan_editor.h"
#include "lorashear/ui/run_panel.h"
#include "test_support.h"

using namespace lorashear;

class TestExperiments : public QObject {
  Q_OBJECT
  QTemporaryDir dir_;
  QString model_, text_, eval_;

  bool wait_open(MainWindow& w) {
    QSignalSpy shown(&w, &MainWindow::graphShown);
    return shown.wait(60000);
  }
  void screenshot(MainWindow& w, const QString& name) {
    const auto dir = qEnvironmentVariable("LORASHEAR_SCREENSHOT");
    if (!dir.isEmpty()) w.grab().save(dir + "/" + name + ".png");
  }
  void setUp(MainWindow& w) {
    w.resize(1366, 768);
    w.show();
    QVERIFY(w.openModel(model_));
    QVERIFY(wait_open(w));
    auto* run = w.runPanel();
    run->setTextPath(text_);
    run->setSteps(20);
    auto* e = w.experimentsPanel();
    e->setRatios("0.2,0.5");
    e->setMethods({"magnitude", "random"});
    e->setTaskData(eval_, "arc_easy", 12);
  }

 private slots:
  void initTestCase() {
    LORASHEAR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
    LORASHEAR_REQUIRE_SHARED("data/eval/arc_easy.jsonl");
    QStandardPaths::setTestModeEnabled(true);
    init_runtime();
    // stories260K with its tokenizer beside it, so the pruned runs carry it too.
    QVERIFY(QFile::copy(
        QString::fromStdString(test::shared_path("models/stories260K/stories260K.bin").string()),
        dir_.filePath("stories260K.bin")));
    QVERIFY(QFile::copy(
        QString::fromStdString(test::shared_path("models/stories260K/tok512.model").string()),
        dir_.filePath("tok512.model")));
    model_ = dir_.filePath("stories260K.bin");
    text_ =
        QString::fromStdString(test::shared_path("data/text/tinystories_val_subset.txt").string());
    eval_ = QString::fromStdString(test::shared_path("data/eval").string());
  }

  void sweepFillsTheTableAndTheChart() {
    MainWindow w;
    setUp(w);
    auto* e = w.experimentsPanel();
    QVERIFY(!e->start());  // no output folder yet
    QVERIFY2(e->messageText().contains("output folder"), qPrintable(e->messageText()));
    e->setOutputDir(dir_.filePath("sweep"));
    QVERIFY(e->start());
    QCOMPARE(w.centralTabs()->currentWidget()->objectName(), QString("experimentsScroll"));
    QTRY_VERIFY_WITH_TIMEOUT(!w.findChild<Engine*>()->busy(), 300000);
    QVERIFY2(e->messageText().startsWith("Sweep finished"), qPrintable(e->messageText()));
    auto* table = e->table();
    QCOMPARE(table->rowCount(), 5);  // dense + 4 runs
    for (int r = 0; r < 5; ++r)      // a run not done shows its state beside the method
      QVERIFY2(!table->item(r, 0)->text().contains("("), qPrintable(table->item(r, 0)->text()));
    QCOMPARE(table->horizontalHeaderItem(3)->text(), QString("arc_easy"));
    // At 1366×768 every column of the table is in view (no horizontal scrolling).
    QTRY_COMPARE(table->horizontalScrollBar()->maximum(), 0);
    // … and the tab itself does not scroll sideways.
    auto* scroll = w.findChild<QScrollArea*>("experimentsScroll");
    QVERIFY(scroll);
    // (QTRY: the Run dock's memory line is recomputed when the run ends, and the window lays
    // itself out again once after that.)
    QTRY_COMPARE(scroll->horizontalScrollBar()->maximum(), 0);
    // The tab takes the window's height: no vertical scrolling either.
    QTRY_COMPARE(scroll->verticalScrollBar()->maximum(), 0);
    // The chart: one line per method, from the dense point at 0 to each ratio.
    auto* chart = e->chartView()->chart();
    QCOMPARE(chart->series().size(), 2);
    for (auto* s : chart->series()) {
      auto* line = qobject_cast<QLineSeries*>(s);
      QCOMPARE(line->count(), 3);
      QCOMPARE(line->at(0).x(), 0.0);
      QVERIFY(line->at(2).x() > line->at(1).x());
    }
    QCOMPARE(e->runAt("magnitude", 0), QString("dense"));
    QCOMPARE(e->runAt("magnitude", 1), QString("magnitude-0.20"));
    QCOMPARE(e->runAt("random", 2), QString("random-0.50"));
    QVERIFY(e->metrics().contains("Perplexity") && e->metrics().contains("arc_easy") &&
            e->metrics().contains("Prefill speed-up"));
    e->setMetric("Perplexity");
    auto* y = qobject_cast<QValueAxis*>(e->chartView()->chart()->axes(Qt::Vertical).first());
    QCOMPARE(y->titleText(), QString("Perplexity"));
    // Perplexity grows with the fraction removed on each line.
    for (auto* s : e->chartView()->chart()->series()) {
      auto* line = qobject_cast<QLineSeries*>(s);
      QVERIFY(line->at(2).y() > line->at(0).y());
    }
    screenshot(w, "experiments-1366x768");
    // Readable at 1366×768: no label elided, every axis titled, the legend drawn.
    QTRY_COMPARE(test::chart_problems(e->chartView()), QString());
    // Exports.
    for (const auto* ext : {"png", "svg", "csv", "md"}) {
      const auto path = dir_.filePath(QString("export.%1").arg(ext));
      QString error;
      const bool ok = QString(ext) == "png" || QString(ext) == "svg" ? e->exportChart(path, &error)
                                                                     : e->exportTable(path, &error);
      QVERIFY2(ok, qPrintable(error));
      QVERIFY(QFileInfo(path).size() > 100);
    }
    QCOMPARE(test::read_all(dir_.filePath("export.csv").toStdString()),
             test::read_all(dir_.filePath("sweep/results.csv").toStdString()));
    // A double-click on a run opens its model.
    QSignalSpy open(e, &ExperimentsPanel::openModelRequested);
    QSignalSpy shown(&w, &MainWindow::graphShown);
    emit table->cellDoubleClicked(2, 0);
    QCOMPARE(open.size(), 1);
    QVERIFY(open.at(0).at(0).toString().endsWith("runs/magnitude-0.50/model"));
    QVERIFY(shown.wait(60000));
    QVERIFY(w.documentPath().endsWith("runs/magnitude-0.50/model"));

    // Compare the open pruned model with the dense one: speed-ups and accuracy per task.
    auto* c = w.comparePanel();
    c->setOtherModel(model_);
    c->setTextPath(text_);
    c->setTasks(eval_, "arc_easy,piqa", 10);
    QSignalSpy compared(w.findChild<Engine*>(), &Engine::comparisonChanged);
    QVERIFY(c->compare());
    QVERIFY(compared.wait(300000));
    auto* f = c->figuresTable();
    QStringList names;
    for (int r = 0; r < f->rowCount(); ++r)
      names << f->item(r, 0)->text();
    QVERIFY2(names.contains("Prefill tokens/s") && names.contains("Decode tokens/s") &&
                 names.contains("arc_easy accuracy") && names.contains("piqa accuracy") &&
                 names.contains("Mean accuracy (2 tasks)"),
             qPrintable(names.join(", ")));
    const int prefill = static_cast<int>(names.indexOf("Prefill tokens/s"));
    QVERIFY2(f->item(prefill, 3)->text().startsWith("×"), qPrintable(f->item(prefill, 3)->text()));
    // The figure itself is timing (bench/ checks speed, not tests): it only has to be one.
    const auto& cmp = w.findChild<Engine*>()->comparison();
    QVERIFY2(std::isfinite(cmp.prefill_speedup) && cmp.prefill_speedup > 0 &&
                 cmp.prefill_speedup_min <= cmp.prefill_speedup &&
                 cmp.prefill_speedup <= cmp.prefill_speedup_max,
             qPrintable(QString::number(cmp.prefill_speedup)));
    screenshot(w, "compare-tasks-1366x768");
  }

  void cancelledSweepNamesTheMissingRuns() {
    MainWindow w;
    setUp(w);
    auto* e = w.experimentsPanel();
    e->setOutputDir(dir_.filePath("cancelled"));
    e->setBench(false);
    auto* engine = w.findChild<Engine*>();
    QVERIFY(e->start());
    // Cancel once the first run is on disk.
    QTRY_VERIFY_WITH_TIMEOUT(
        QFile::exists(dir_.filePath("cancelled/runs/magnitude-0.20/result.json")), 300000);
    engine->cancel();
    QTRY_VERIFY_WITH_TIMEOUT(!engine->busy(), 120000);
    QVERIFY2(e->messageText().startsWith("Cancelled") && e->messageText().contains("random-0.50") &&
                 !e->messageText().contains("magnitude-0.20"),
             qPrintable(e->messageText()));
    QVERIFY(QFile::exists(dir_.filePath("cancelled/results.md")));
  }
};

QTEST_MAIN(TestExperiments)
#include "test_experiments.moc"
