// A short LHSPG run on the demo model from the GUI: the charts receive points, the graph overlay
// follows the sparsity, the run pauses and resumes, and the completed run's model (opened in its
// place) has the parameter count the plan promised; a cancelled run returns to idle and the model
// is read again from its file.
#include <QtTest>

#include <QDockWidget>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTableWidget>
#include <QTemporaryDir>

#include <fstream>

#include "lorashear/runtime.h"
#include "lorashear/ui/compare_panel.h"
#include "lorashear/ui/engine.h"
#include "lorashear/ui/main_window.h"
#include "lorashear/ui/plan_editor.h"
#include "lorashear/ui/run_panel.h"
#include "lorashear/viewers/graph_view.h"
#include "lorashear/viewers/metric_chart.h"
#include "lorashear/viewers/sparsity_bars.h"
#include "test_support.h"

using namespace lorashear;

class TestRun : public QObject {
  Q_OBJECT
  QTemporaryDir dir_;
  QString demo_, text_;

  bool wait_open(MainWindow& w) {
    QSignalSpy shown(&w, &MainWindow::graphShown);
    return shown.wait(60000);
  }

 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    init_runtime();
    demo_ = QString::fromStdString(test::source_path("resources/demo-model").string());
    text_ = dir_.filePath("text.txt");
    std::ofstream out(text_.toStdString());
    for (int i = 0; i < 1500; ++i)
      out << "Once upon a time there was a little girl named Lily. She liked to play in the park "
             "with her dog. One day she found a big red ball and they played all day.\n\n";
  }

  void runPauseResumeAndOpenTheResult() {
    MainWindow w;
    w.show();
    QVERIFY(w.openModel(demo_));
    QVERIFY(wait_open(w));
    auto* plan = w.planEditor()->model();
    QVERIFY(plan->setTargetRatio(0.25));
    const auto expected = plan->estimate().params_after;
    auto* run = w.runPanel();
    run->setTextPath(text_);
    run->setOutputDir(dir_.filePath("pruned"));
    run->setSteps(60);
    // The GUI thread's worst gap between 5 ms heartbeats while the run goes (a figure).
    QElapsedTimer clock;
    clock.start();
    qint64 last = clock.nsecsElapsed(), worst = 0;
    QTimer beat;
    beat.setInterval(5);
    QObject::connect(&beat, &QTimer::timeout, [&] {
      const auto now = clock.nsecsElapsed();
      worst = std::max(worst, now - last);
      last = now;
    });
    beat.start();
    QVERIFY(run->start());
    QVERIFY(!run->start());  // one run at a time
    // (A screenshot is taken later in the run, when the charts have more to show.)
    const int pause_after = qEnvironmentVariableIsSet("LORASHEAR_SCREENSHOT") ? 32 : 3;
    QTRY_VERIFY_WITH_TIMEOUT(run->lossChart()->pointCount("loss") >= pause_after, 60000);
    // The graph follows the run: coloured by each node group's sparsity, every prunable group
    // (those the plan leaves whole at 0).
    QTRY_VERIFY(w.graphView()->overlay().title.startsWith("sparsity"));
    QVERIFY(w.graphView()->overlay().groups.count("L2.mlp"));
    // Pause: the points stop; resume: they go on.
    w.engine()->setPaused(true);
    QTest::qWait(400);
    const int paused_at = run->lossChart()->pointCount("loss");
    QTest::qWait(800);
    QCOMPARE(run->lossChart()->pointCount("loss"), paused_at);
    QVERIFY(w.engine()->busy());
    if (qEnvironmentVariableIsSet("LORASHEAR_SCREENSHOT")) {  // the dashboard mid-run
      w.findChild<QDockWidget*>("runDock")->raise();
      run->lossChart()->flush();
      run->groupsChart()->flush();
      QTest::qWait(300);
      w.grab().save(qEnvironmentVariable("LORASHEAR_SCREENSHOT"));
    }
    w.engine()->setPaused(false);
    QSignalSpy shown(&w, &MainWindow::graphShown);
    QVERIFY(shown.wait(120000));  // the run ends and its model is opened
    QTRY_VERIFY_WITH_TIMEOUT(!w.engine()->busy(), 30000);
    beat.stop();
    qInfo("worst GUI-thread stall during the run: %.1f ms", static_cast<double>(worst) / 1e6);
    QVERIFY2(run->messageText().startsWith("Done"), qPrintable(run->messageText()));
    QCOMPARE(run->lossChart()->pointCount("loss"), 60);
    QVERIFY(run->groupsChart()->pointCount("zeroed") == 60);
    QVERIFY(run->groupsChart()->lastValue("zeroed") > 0);
    QCOMPARE(w.documentPath(), QFileInfo(dir_.filePath("pruned")).absoluteFilePath());
    QCOMPARE(w.engine()->documentParameters(), expected);
    QVERIFY(!run->sparsity().empty());
    // Per-layer bars: the layers' final sparsity.
    QCOMPARE(run->sparsityBars()->layers(), 4);
    QCOMPARE(run->sparsityBars()->mlp(2), run->sparsity().at("L2.mlp"));
    // The opened pruned model starts with the kind colours again.
    QVERIFY(w.graphView()->overlay().empty());
  }

  void compareTheResultWithTheDenseModel() {
    // The first test's pruned model, opened, against the demo model it came from.
    const auto pruned = dir_.filePath("pruned");
    if (!QFileInfo::exists(pruned)) QSKIP("needs runPauseResumeAndOpenTheResult's model");
    MainWindow w;
    w.show();
    QVERIFY(w.openModel(demo_));
    QVERIFY(wait_open(w));
    const auto dense_params = w.engine()->documentParameters();
    QVERIFY(w.openModel(pruned));
    QVERIFY(wait_open(w));
    const auto pruned_params = w.engine()->documentParameters();
    auto* compare = w.comparePanel();
    compare->setOtherModel("");
    QVERIFY(!compare->compare());
    QVERIFY(compare->messageText().contains("choose"));
    compare->setOtherModel(dir_.filePath("missing-model"));
    QVERIFY(!compare->compare());
    QVERIFY(compare->messageText().contains("missing-model"));
    compare->setOtherModel(demo_);
    compare->setTextPath(text_);
    QSignalSpy done(w.engine(), &Engine::comparisonChanged);
    QVERIFY(compare->compare());
    QVERIFY(done.wait(60000));
    const auto& c = w.engine()->comparison();
    QVERIFY(!c.open_is_dense);  // the open model is the pruned one
    QCOMPARE(c.dense.parameters, dense_params);
    QCOMPARE(c.pruned.parameters, pruned_params);
    QVERIFY(c.dense.perplexity > 0 && c.pruned.perplexity > 0);
    QVERIFY(c.dense.prefill_tokens_per_second > 0 && c.pruned.prefill_tokens_per_second > 0);
    QVERIFY(c.dense.decode_tokens_per_second > 0 && c.pruned.decode_tokens_per_second > 0);
    QVERIFY(c.prefill_speedup_min <= c.prefill_speedup &&
            c.prefill_speedup <= c.prefill_speedup_max);
    // Parameters, FLOPs, prefill, decode, time to first token, perplexity.
    QCOMPARE(compare->figuresTable()->rowCount(), 6);
    // The graph diff: each node group's removed indices, exactly the report's removed ids.
    QFile report(pruned + "/pruning_report.json");
    QVERIFY(report.open(QIODevice::ReadOnly));
    const auto removed_ids = QJsonDocument::fromJson(report.readAll())
                                 .object()["pruning"]
                                 .toObject()["removed"]
                                 .toArray();
    QSet<QString> expected_ids, got_ids;
    for (const auto& id : removed_ids)
      expected_ids.insert(id.toString());
    for (const auto& g : c.groups) {
      QVERIFY(g.indices_known);
      QCOMPARE(g.before - g.after, qint64(g.removed.size()));
      const auto prefix = g.kind == "attention" ? g.id + ".kv" : g.id + ".c";
      for (const auto k : g.removed)
        got_ids.insert(prefix + QString::number(k));
    }
    QVERIFY(!expected_ids.isEmpty());
    QCOMPARE(got_ids, expected_ids);
    QCOMPARE(compare->groupsTable()->rowCount(), int(c.groups.size()));
    // The graph colours node groups by the fraction removed.
    QTRY_VERIFY(w.graphView()->overlay().title.startsWith("removed"));
    QVERIFY(w.graphView()->overlay().groups.count("L2.mlp"));
    if (qEnvironmentVariableIsSet("LORASHEAR_SCREENSHOT_COMPARE")) {
      w.findChild<QDockWidget*>("compareDock")->raise();
      QTest::qWait(300);
      w.grab().save(qEnvironmentVariable("LORASHEAR_SCREENSHOT_COMPARE"));
    }
    // Another architecture is refused, naming it; the comparison stays.
    LORASHEAR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
    const auto other =
        QString::fromStdString(test::shared_path("models/stories260K/stories260K.bin").string());
    compare->setOtherModel(other);
    compare->setTextPath("");
    QSignalSpy failed(w.engine(), &Engine::taskFailed);
    QVERIFY(compare->compare());
    QVERIFY(failed.wait(60000));
    QVERIFY2(compare->messageText().contains("not the same architecture"),
             qPrintable(compare->messageText()));
    QCOMPARE(w.engine()->comparison().pruned.parameters, pruned_params);
  }

  void resumeAfterTheAppWasClosed() {
    const auto out = dir_.filePath("resumed");
    qint64 expected = 0;
    {
      MainWindow w;
      w.show();
      QVERIFY(w.openModel(demo_));
      QVERIFY(wait_open(w));
      expected = w.planEditor()->model()->estimate().params_after;
      auto* run = w.runPanel();
      auto s = run->settings();
      s.text = text_;
      s.out_dir = out;
      s.steps = 100;
      s.checkpoint_every = 10;
      run->setSettings(s);
      QVERIFY(run->start());
      QTRY_VERIFY_WITH_TIMEOUT(run->lossChart()->pointCount("loss") >= 25, 60000);
      w.close();  // mid-run: the run stops, its checkpoint stays
    }
    QVERIFY(QFileInfo::exists(out + ".checkpoint"));
    QVERIFY(!QFileInfo::exists(out));
    MainWindow w;
    w.show();
    QVERIFY(w.hasInterruptedRun());
    QVERIFY(w.resumeRun());
    auto* run = w.runPanel();
    QTRY_VERIFY_WITH_TIMEOUT(run->lossChart()->pointCount("loss") >= 1, 60000);
    QTRY_VERIFY_WITH_TIMEOUT(run->messageText().startsWith("Done"), 120000);
    QTRY_VERIFY_WITH_TIMEOUT(w.documentPath() == QFileInfo(out).absoluteFilePath(), 60000);
    QTRY_VERIFY_WITH_TIMEOUT(!w.engine()->busy(), 30000);
    // It went on from a checkpoint (step 20 or later), not from the start.
    QVERIFY(run->lossChart()->pointCount("loss") <= 80);
    QCOMPARE(w.engine()->documentParameters(), expected);
    QVERIFY(!w.hasInterruptedRun());
    QVERIFY(!QFileInfo::exists(out + ".checkpoint"));
  }

  void cancelledRunRestoresTheModel() {
    MainWindow w;
    w.show();
    QVERIFY(w.openModel(demo_));
    QVERIFY(wait_open(w));
    const auto params = w.engine()->documentParameters();
    auto* run = w.runPanel();
    run->setTextPath(text_);
    run->setOutputDir(dir_.filePath("never"));
    run->setSteps(400);
    QVERIFY(run->start());
    QTRY_VERIFY_WITH_TIMEOUT(run->lossChart()->pointCount("loss") >= 2, 60000);
    QSignalSpy cancelled(w.engine(), &Engine::taskCancelled);
    QElapsedTimer t;
    t.start();
    w.engine()->cancel();
    QVERIFY(cancelled.wait(5000));
    QVERIFY2(t.elapsed() < 1000, qPrintable(QString::number(t.elapsed())));
    // The run had changed the weights in memory: the model is opened again from its file.
    QSignalSpy shown(&w, &MainWindow::graphShown);
    QVERIFY(shown.wait(60000));
    QTRY_VERIFY_WITH_TIMEOUT(!w.engine()->busy(), 30000);
    QCOMPARE(w.documentPath(), QFileInfo(demo_).absoluteFilePath());
    QCOMPARE(w.engine()->documentParameters(), params);
    QVERIFY(!QFileInfo::exists(dir_.filePath("never")));
    QVERIFY(run->messageText().startsWith("Cancelled"));
    // Nothing to start without a text.
    run->setTextPath("");
    QVERIFY(!run->start());
    QVERIFY(run->messageText().contains("text"));
  }

  void pruneThenRecoverWithItsCharts() {
    LORASHEAR_REQUIRE_SHARED("data/text/wikitext2_valid.raw");
    LORASHEAR_REQUIRE_SHARED("data/instruct/instruction-data.json");
    const auto wiki =
        QString::fromStdString(test::shared_path("data/text/wikitext2_valid.raw").string());
    const auto instruct =
        QString::fromStdString(test::shared_path("data/instruct/instruction-data.json").string());
    MainWindow w;
    w.show();
    QVERIFY(w.openModel(demo_));
    QVERIFY(wait_open(w));
    auto* plan = w.planEditor()->model();
    QVERIFY(plan->setTargetRatio(0.2));
    const auto expected = plan->estimate().params_after;
    auto* run = w.runPanel();
    auto s = run->settings();
    s.text = text_;
    s.out_dir = dir_.filePath("recovered");
    s.steps = 40;
    s.checkpoint_every = 0;
    s.lora_targets = QStringList{"q_proj", "v_proj", "down_proj"};
    s.recover = true;
    run->setSettings(s);
    // Bad settings are refused before anything runs, naming what is wrong.
    QVERIFY(!run->start());
    QVERIFY2(run->messageText().contains("recovery needs data"), qPrintable(run->messageText()));
    s.domains = QStringList{text_, dir_.filePath("no-such-domain.txt")};
    run->setSettings(s);
    QVERIFY(!run->start());
    QVERIFY(run->messageText().contains("no-such-domain.txt"));
    s.domains = QStringList{text_, wiki};
    s.lora_targets = QStringList{"none"};
    run->setSettings(s);
    QVERIFY(!run->start());
    QVERIFY(run->messageText().contains("LoRA target"));
    // Adapters only where no pruned channel is produced: the engine refuses the plan at once,
    // before any perplexity or training, and the model stays as it was.
    s.lora_targets = QStringList{"o_proj", "down_proj"};
    run->setSettings(s);
    QVERIFY(run->start());
    QTRY_VERIFY_WITH_TIMEOUT(run->messageText().startsWith("Failed"), 20000);
    QVERIFY2(run->messageText().contains("nothing can be removed"), qPrintable(run->messageText()));
    QTRY_VERIFY_WITH_TIMEOUT(!w.engine()->busy(), 20000);
    QCOMPARE(w.engine()->documentParameters(), plan->estimate().params_before);
    // Two categories, instruction data, 40 recovery steps: 28 in stage 1, 12 in stage 2. The
    // adapters go on the layers that produce the pruned channels (o_proj and down_proj left out).
    s.lora_targets = QStringList{"q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"};
    s.instruct = instruct;
    s.recover_steps = 40;
    run->setSettings(s);
    QCOMPARE(run->settings().lora_targets, s.lora_targets);
    QCOMPARE(run->settings().domains, s.domains);
    QVERIFY2(run->start(), qPrintable(run->messageText()));
    QTRY_VERIFY2_WITH_TIMEOUT(run->lossChart()->pointCount("recovery") >= 5,
                              qPrintable(run->messageText()), 90000);
    QVERIFY(run->messageText().startsWith("Recovery"));
    QCOMPARE(run->lossChart()->pointCount("loss"), 40);
    run->setWallTime(true);  // the axis by wall time while it runs
    QVERIFY(run->categoryChart()->wallTime());
    QTRY_VERIFY2_WITH_TIMEOUT(run->messageText().startsWith("Done"), qPrintable(run->messageText()),
                              60000);
    QTRY_VERIFY_WITH_TIMEOUT(w.documentPath() == QFileInfo(s.out_dir).absoluteFilePath(), 30000);
    QTRY_VERIFY_WITH_TIMEOUT(!w.engine()->busy(), 30000);
    QVERIFY2(run->messageText().contains("recovered"), qPrintable(run->messageText()));
    QCOMPARE(run->lossChart()->pointCount("recovery"), 40);
    QCOMPARE(run->lrChart()->pointCount("lr"), 80);
    QCOMPARE(run->speedChart()->pointCount("tokens/s"), 80);
    // Per category: the validation loss at each re-estimate (steps 1 and 26 of stage 1) and the
    // sampling weights, which sum to one; the instructions' validation loss in stage 2.
    QCOMPARE(run->categoryChart()->seriesCount(), size_t(3));
    QCOMPARE(run->weightsChart()->seriesCount(), size_t(2));
    QCOMPARE(run->categoryChart()->pointCount("instructions"), 1);
    double sum = 0;
    for (const auto& c : {QString("text"), QString("wikitext2_valid")}) {
      QVERIFY2(run->weightsChart()->hasSeries(c), qPrintable(c));
      QCOMPARE(run->weightsChart()->pointCount(c), 2);
      QCOMPARE(run->categoryChart()->pointCount(c), 2);
      sum += run->weightsChart()->lastValue(c);
    }
    QVERIFY(std::abs(sum - 1.0) < 1e-6);
    QCOMPARE(w.documentPath(), QFileInfo(s.out_dir).absoluteFilePath());
    QCOMPARE(w.engine()->documentParameters(), expected);
    QVERIFY(QFileInfo::exists(s.out_dir + "/pruning_report.json"));
    if (qEnvironmentVariableIsSet("LORASHEAR_SCREENSHOT_RECOVERY")) {  // the dashboard after it
      w.findChild<QDockWidget*>("runDock")->raise();
      run->setWallTime(false);
      QTest::qWait(300);
      w.grab().save(qEnvironmentVariable("LORASHEAR_SCREENSHOT_RECOVERY"));
    }
  }

  void runRecordKeepsEverySetting() {
    RunSettings s;
    s.text = "t.txt";
    s.out_dir = "out";
    s.lora_targets = QStringList{"q_proj"};
    s.recover = true;
    s.domains = QStringList{"a.txt", "b/"};
    s.instruct = "i.json";
    s.recover_steps = 77;
    s.sampling = "uniform";
    RunSettings back;
    QString plan, model, device, dtype;
    QVERIFY(parse_run_record(run_record(s, "{}", "m", "cpu", "float32"), &back, &plan, &model,
                             &device, &dtype));
    QCOMPARE(back.lora_targets, s.lora_targets);
    QVERIFY(back.recover);
    QCOMPARE(back.domains, s.domains);
    QCOMPARE(back.instruct, s.instruct);
    QCOMPARE(back.recover_steps, 77);
    QCOMPARE(back.sampling, QString("uniform"));
    QVERIFY(!parse_run_record("not json", &back, &plan, &model, &device, &dtype));
  }
};

QTEST_MAIN(TestRun)
#include "test_run.moc"
