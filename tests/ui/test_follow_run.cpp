// File ▸ Open run… (issue 18 §3): the app follows a run's OUT.run folder while it grows — a
// `lorashear prune` in another process, from its first lines to "finished", with its model opened;
// lines appended later appear within a second; a truncated last line (a writer mid-line) is not an
// error and completes later; a malformed line is reported as file:line and the lines after it
// still come; a run without new lines turns stale; a file that is not JSON Lines is reported in
// one line and nothing hangs. LORASHEAR_SCREENSHOT=FILE saves the dashboard following the CLI run.
#include <QtTest>

#include <QElapsedTimer>
#include <QProcess>
#include <QTabWidget>
#include <QTemporaryDir>

#include <filesystem>
#include <fstream>

#include "lorashear/runtime.h"
#include "lorashear/ui/main_window.h"
#include "lorashear/ui/run_panel.h"
#include "lorashear/ui/run_watcher.h"
#include "lorashear/viewers/metric_chart.h"
#include "test_support.h"

using namespace lorashear;

namespace {

void append(const QString& file, const std::string& text) {
  std::ofstream(file.toStdString(), std::ios::app | std::ios::binary) << text;
  std::ofstream().flush();
}

std::string lhspg_line(int step, double loss) {
  return "{\"kind\":\"lhspg\",\"step\":" + std::to_string(step) +
         ",\"time\":" + std::to_string(step * 0.5) +
         ",\"total\":100,\"period\":1,\"loss\":" + std::to_string(loss) +
         ",\"lr\":0.001,\"redundant\":4,\"zeroed\":2,\"scheduled\":4,\"target\":8,"
         "\"tokens_per_second\":1000,\"sparsity\":{\"L0.attn\":0.25,\"L1.mlp\":0.5}}\n";
}

void write_info(const QString& dir, const std::string& status, const std::string& model) {
  std::ofstream((dir + "/run.json.tmp").toStdString())
      << "{\"format\":\"lorashear-run\",\"kind\":\"prune\",\"status\":\"" << status
      << "\",\"model\":\"" << model << "\",\"world_size\":1}\n";
  std::filesystem::rename((dir + "/run.json.tmp").toStdString(), (dir + "/run.json").toStdString());
}

}  // namespace

class TestFollowRun : public QObject {
  Q_OBJECT
  QTemporaryDir dir_;
  QString demo_, text_;

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

  void followsACliRunInAnotherProcess() {
    const auto out = dir_.filePath("cli");
    QProcess cli;
    cli.setProcessChannelMode(QProcess::MergedChannels);
    cli.start(LORASHEAR_CLI_PATH, {"prune", demo_, "--ratio", "0.2", "--text", text_, "--out", out,
                                   "--steps", "150", "--no-analysis", "--threads", "1"});
    QVERIFY(cli.waitForStarted());
    QTRY_VERIFY_WITH_TIMEOUT(QFile::exists(out + ".run/run.json"), 60000);
    MainWindow w;
    w.resize(1366, 768);
    w.show();
    QVERIFY(w.openRun(out + ".run"));
    auto* watcher = w.runWatcher();
    QVERIFY(watcher);
    QStringList statuses{watcher->status()};
    connect(watcher, &RunWatcher::statusChanged, this,
            [&](const QString& s) { statuses.append(s); });
    QCOMPARE(w.centralTabs()->currentWidget(), w.runPanel()->dashboard());
    // The run's model opens as for a local run.
    QTRY_COMPARE_WITH_TIMEOUT(QFileInfo(w.documentPath()).canonicalFilePath(),
                              QFileInfo(demo_).canonicalFilePath(), 60000);
    auto* loss = w.runPanel()->lossChart();
    QTRY_VERIFY_WITH_TIMEOUT(loss->pointCount("loss") > 0, 60000);
    const int first = loss->pointCount("loss");
    if (qEnvironmentVariableIsSet("LORASHEAR_SCREENSHOT")) {  // mid-run, a while in
      QTRY_VERIFY_WITH_TIMEOUT(loss->pointCount("loss") >= 60 || !watcher->status().contains("run"),
                               60000);
      QTest::qWait(300);
      w.grab().save(qEnvironmentVariable("LORASHEAR_SCREENSHOT"));
    }
    QVERIFY(cli.waitForFinished(180000));
    QCOMPARE(cli.exitCode(), 0);
    QTRY_COMPARE_WITH_TIMEOUT(loss->pointCount("loss"), 150, 3000);
    QTRY_COMPARE_WITH_TIMEOUT(watcher->status(), QString("finished"), 3000);
    qInfo("points when opened: %d; statuses seen: %s", first, qPrintable(statuses.join(" → ")));
    QVERIFY(statuses.contains("running"));
    QVERIFY(w.runPanel()->followStatusText().contains("finished"));
    QVERIFY(w.runPanel()->groupsChart()->pointCount("zeroed") == 150);
    QVERIFY(watcher->problem().isEmpty());
  }

  void appendedLinesAppearWithinASecond() {
    const auto dir = dir_.filePath("hand.run");
    QDir().mkpath(dir);
    const auto file = dir + "/metrics.jsonl";
    write_info(dir, "running", "");
    append(file, lhspg_line(1, 3.0) + lhspg_line(2, 2.9) + lhspg_line(3, 2.8));
    MainWindow w;
    w.show();
    QVERIFY(w.openRun(dir));
    auto* loss = w.runPanel()->lossChart();
    QCOMPARE(loss->pointCount("loss"), 3);
    QTRY_VERIFY(w.runPanel()->followStatusText().contains("running"));

    QElapsedTimer clock;
    clock.start();
    append(file, lhspg_line(4, 2.7) + lhspg_line(5, 2.6));
    QTRY_COMPARE_WITH_TIMEOUT(loss->pointCount("loss"), 5, 1000);
    qInfo("appended lines shown after %lld ms", static_cast<long long>(clock.elapsed()));

    // A writer mid-line: nothing wrong, the line waits for its end.
    const auto six = lhspg_line(6, 2.5);
    append(file, six.substr(0, 30));
    QTest::qWait(1200);
    QCOMPARE(loss->pointCount("loss"), 5);
    QVERIFY(w.runWatcher()->problem().isEmpty());
    clock.restart();
    append(file, six.substr(30));
    QTRY_COMPARE_WITH_TIMEOUT(loss->pointCount("loss"), 6, 1000);
    QCOMPARE(loss->lastValue("loss") > 0, true);

    // Recovery lines go to the recovery charts.
    append(file,
           "{\"kind\":\"recovery\",\"step\":7,\"time\":4,\"stage\":1,\"loss\":2.4,\"lr\":0.0005,"
           "\"tokens_per_second\":900,\"category_loss\":{\"stories\":2.1},\"weights\":{\"stories\":"
           "1}}\n");
    QTRY_COMPARE_WITH_TIMEOUT(loss->pointCount("recovery"), 1, 1000);
    QVERIFY(w.runPanel()->categoryChart()->hasSeries("stories"));

    // A malformed line: reported with file and line, the lines after it still come.
    append(file, "this is not JSON\n" + lhspg_line(8, 2.3));
    QTRY_VERIFY_WITH_TIMEOUT(w.runPanel()->followStatusText().contains("metrics.jsonl:8:"), 1000);
    QTRY_COMPARE_WITH_TIMEOUT(loss->pointCount("loss"), 7, 2000);

    // The run ends.
    write_info(dir, "finished", "");
    QTRY_COMPARE_WITH_TIMEOUT(w.runWatcher()->status(), QString("finished"), 2000);
    QTRY_VERIFY(w.runPanel()->followStatusText().contains("finished"));

    // A local run's start ends the following (it needs a model: the watcher goes away with it).
    w.stopFollowing();
    QVERIFY(!w.runWatcher());
    QVERIFY(!w.runPanel()->following());
  }

  void quietRunTurnsStale() {
    const auto dir = dir_.filePath("quiet.run");
    QDir().mkpath(dir);
    write_info(dir, "running", "");
    append(dir + "/metrics.jsonl", lhspg_line(1, 3.0));
    MainWindow w;
    QVERIFY(w.openRun(dir + "/metrics.jsonl"));
    w.runWatcher()->setStaleAfter(1);
    QTRY_COMPARE_WITH_TIMEOUT(w.runWatcher()->status(), QString("stale"), 4000);
    QVERIFY(w.runPanel()->followStatusText().contains("stale"));
  }

  // The figure the issue asks for (under 2 s): open → every point in the charts, printed; the
  // bound asserted is generous (shared machines).
  void millionLinesOpen() {
    const auto dir = dir_.filePath("big.run");
    QDir().mkpath(dir);
    write_info(dir, "finished", "");
    {
      std::ofstream out((dir + "/metrics.jsonl").toStdString(), std::ios::binary);
      std::string line;
      for (int i = 1; i <= 1000000; ++i) {
        line = "{\"kind\":\"lhspg\",\"step\":" + std::to_string(i) +
               ",\"time\":" + std::to_string(i * 0.01) +
               ",\"total\":1000000,\"period\":3,\"loss\":2.345678,\"lr\":0.001,"
               "\"redundant\":120,\"zeroed\":64,\"scheduled\":96,\"target\":240,"
               "\"lambda_mean\":0.01234567,\"lambda_max\":0.0456789,"
               "\"tokens_per_second\":1234.567";
        if (i % 100 == 1)
          line += ",\"sparsity\":{\"L0.attn\":0.25,\"L0.mlp\":0.5,\"L1.attn\":0,\"L1.mlp\":0.125}";
        line += "}\n";
        out << line;
      }
    }
    MainWindow w;
    w.resize(1366, 768);
    w.show();
    QElapsedTimer clock;
    clock.start();
    QVERIFY(w.openRun(dir));
    w.runPanel()->lossChart()->flush();
    QCoreApplication::processEvents();
    (void)w.grab();  // painted: the charts draw the million points (downsampled per pixel)
    const double s = static_cast<double>(clock.nsecsElapsed()) / 1e9;
    qInfo("1,000,000-line metrics.jsonl opened, charted and drawn in %.3f s", s);
    QCOMPARE(w.runPanel()->lossChart()->pointCount("loss"), 1000000);
    QCOMPARE(w.runWatcher()->status(), QString("finished"));
    QVERIFY2(s < 20, "far slower than the 2 s the issue asks for");
  }

  void badInputIsOneLine() {
    MainWindow w;
    QVERIFY(!w.openRun(dir_.filePath("no-such.run")));
    QVERIFY(w.lastError().contains("no-such.run"));
    // A CSV where metrics.jsonl should be: one line naming file:line, and the window goes on.
    const auto dir = dir_.filePath("csv.run");
    QDir().mkpath(dir);
    append(dir + "/metrics.jsonl", "step,loss\n1,3.0\n2,2.9\n");
    QElapsedTimer clock;
    clock.start();
    QVERIFY(w.openRun(dir));
    QVERIFY(clock.elapsed() < 5000);
    const auto problem = w.runWatcher()->problem();
    qInfo("%s", qPrintable(problem));
    QVERIFY(problem.contains("metrics.jsonl:1: "));
    QVERIFY(!problem.contains('\n'));
    QCOMPARE(w.runWatcher()->status(), QString("unknown"));
    QVERIFY(w.runPanel()->followStatusText().contains("no run.json"));
  }
};

QTEST_MAIN(TestFollowRun)
#include "test_follow_run.moc"
