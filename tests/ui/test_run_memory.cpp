// The Run dock's memory line: the figure `lorashear plan-memory` gives (core's plan_memory) for the
// open model and the dock's settings, following the batch, the LoRA rank and activation
// checkpointing as they change; a warning on the line and on Start when the run exceeds the
// available memory; "device memory unknown" rather than a warning on a GPU.
// docs/studio-memory-plan.png: LORASHEAR_SCREENSHOT_MEMORY=docs/studio-memory-plan.png
// test_run_memory (LORASHEAR_SCREENSHOT_MEMORY_WARNING=FILE.png: the dock warning).
#include <QtTest>

#include <QCheckBox>
#include <QComboBox>
#include <QDockWidget>
#include <QLabel>
#include <QPushButton>
#include <QSettings>
#include <QSpinBox>
#include <QTemporaryDir>

#include "lorashear/io/loader.h"
#include "lorashear/model/config.h"
#include "lorashear/plan/memory_plan.h"
#include "lorashear/runtime.h"
#include "lorashear/ui/engine.h"
#include "lorashear/ui/main_window.h"
#include "lorashear/ui/run_panel.h"
#include "test_support.h"

using namespace lorashear;

namespace {

constexpr const char* kAvailable = "LORASHEAR_AVAILABLE_MEMORY_BYTES";

// The figure the dock shows for `bytes` (MiB with one decimal below 10 GiB).
QString mib(int64_t bytes) {
  return QString("%1 MiB").arg(static_cast<double>(bytes) / (1 << 20), 0, 'f', 1);
}

}  // namespace

class TestRunMemory : public QObject {
  Q_OBJECT
  QString demo_;
  ModelConfig config_;

  bool wait_open(MainWindow& w) {
    QSignalSpy shown(&w, &MainWindow::graphShown);
    return shown.wait(60000);
  }

  // What `lorashear plan-memory` computes for the dock's settings.
  MemoryPlan expected(const RunSettings& s, int64_t weight_bytes, bool checkpointing) const {
    MemoryPlanOptions o;
    o.batch = s.batch;
    o.seq_len = s.seq_len;
    o.weight_bytes = weight_bytes;
    o.lora.rank = s.lora_rank;
    o.checkpoint_activations = checkpointing;
    return plan_memory(config_, o);
  }

 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    init_runtime();
    demo_ = QString::fromStdString(test::source_path("resources/demo-model").string());
    config_ = ModelConfig::from_file((demo_ + "/config.json").toStdString());
  }

  // A test's device and dtype (setOpenOptions saves them) stay out of the next one.
  void init() { QSettings().clear(); }
  void cleanup() {
    qunsetenv(kAvailable);
    QSettings().clear();
  }

  void lineFollowsTheSettings() {
    qputenv(kAvailable, QByteArray::number(qint64(64) << 30));  // plenty: auto means off
    MainWindow w;
    w.show();
    auto* run = w.runPanel();
    QVERIFY(!run->memoryPlan().valid);  // nothing open yet
    QVERIFY(run->memoryText().contains("open a model"));
    QVERIFY(w.openModel(demo_));
    QVERIFY(wait_open(w));
    QTRY_VERIFY(run->memoryPlan().valid);

    auto s = run->settings();
    QCOMPARE(s.checkpoint_activations, QString("auto"));
    auto plan = expected(s, 4, false);  // the demo model opens in float32
    QCOMPARE(run->memoryPlan().per_rank_bytes, plan.per_rank_bytes);
    QCOMPARE(run->memoryPlan().items.size(), static_cast<qsizetype>(plan.items.size()));
    QVERIFY2(run->memoryText().contains("Memory: " + mib(plan.per_rank_bytes) + " per process"),
             qPrintable(run->memoryText()));
    QVERIFY2(run->memoryText().contains("64.0 GiB available"), qPrintable(run->memoryText()));
    QVERIFY(!run->memoryWarning());
    // The breakdown with exact bytes in the tooltip.
    auto* line = run->findChild<QLabel*>("memoryPlan");
    QVERIFY(line->toolTip().contains(QString("%L1 bytes").arg(plan.per_rank_bytes)));
    QVERIFY(line->toolTip().contains("base weights"));

    // A larger batch: more activations and logits, at once.
    const auto before = plan.per_rank_bytes;
    run->findChild<QSpinBox*>("batch")->setValue(32);
    s = run->settings();
    QCOMPARE(s.batch, 32);
    plan = expected(s, 4, false);
    QVERIFY(plan.per_rank_bytes > before);
    QCOMPARE(run->memoryPlan().per_rank_bytes, plan.per_rank_bytes);
    QVERIFY2(run->memoryText().contains(mib(plan.per_rank_bytes)), qPrintable(run->memoryText()));

    // The LoRA rank and its targets.
    run->findChild<QSpinBox*>("loraRank")->setValue(64);
    QCOMPARE(run->memoryPlan().per_rank_bytes, expected(run->settings(), 4, false).per_rank_bytes);
    run->findChild<QCheckBox*>("down_proj")->setChecked(false);
    s = run->settings();
    MemoryPlanOptions o;
    o.batch = s.batch;
    o.seq_len = s.seq_len;
    o.lora.rank = s.lora_rank;
    o.lora.targets = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj"};
    QCOMPARE(run->memoryPlan().per_rank_bytes, plan_memory(config_, o).per_rank_bytes);
    run->findChild<QCheckBox*>("down_proj")->setChecked(true);

    // Activation checkpointing on: only each layer's input is kept.
    auto* checkpointing = run->findChild<QComboBox*>("checkpointActivations");
    checkpointing->setCurrentText("on");
    s = run->settings();
    QCOMPARE(s.checkpoint_activations, QString("on"));
    QCOMPARE(run->memoryPlan().per_rank_bytes, expected(s, 4, true).per_rank_bytes);
    QVERIFY(run->memoryPlan().per_rank_bytes < expected(s, 4, false).per_rank_bytes);
    QVERIFY(run->memoryPlan().checkpoint_activations);
    QVERIFY2(run->memoryText().contains("activation checkpointing on"),
             qPrintable(run->memoryText()));
    // The setting travels with a resumable run's record.
    RunSettings back;
    QString plan_json, model, device, dtype;
    QVERIFY(parse_run_record(run_record(s, "{}", demo_, "cpu", "float32"), &back, &plan_json,
                             &model, &device, &dtype));
    QCOMPARE(back.checkpoint_activations, QString("on"));

    if (const auto out = qEnvironmentVariable("LORASHEAR_SCREENSHOT_MEMORY"); !out.isEmpty()) {
      checkpointing->setCurrentText("auto");
      run->findChild<QSpinBox*>("batch")->setValue(8);
      run->findChild<QSpinBox*>("loraRank")->setValue(8);
      auto* dock = w.findChild<QDockWidget*>("runDock");
      dock->raise();
      QTest::qWait(200);
      QVERIFY(dock->grab().save(out));
    }
  }

  void warnsWhenTheRunDoesNotFit() {
    MainWindow w;
    w.show();
    QVERIFY(w.openModel(demo_));
    QVERIFY(wait_open(w));
    auto* run = w.runPanel();
    auto* icon = run->findChild<QLabel*>("memoryWarningIcon");
    auto* start = run->findChild<QPushButton*>();
    QTRY_VERIFY(run->memoryPlan().valid);
    // 100 MB: less than LibTorch's own share. Auto turns checkpointing on and it still does not
    // fit.
    qputenv(kAvailable, "100000000");
    run->updateMemory();
    QVERIFY(run->memoryWarning());
    QVERIFY(run->memoryPlan().checkpoint_activations);
    QCOMPARE(run->memoryPlan().per_rank_bytes, expected(run->settings(), 4, true).per_rank_bytes);
    QVERIFY2(run->memoryText().contains("will not fit"), qPrintable(run->memoryText()));
    QVERIFY(run->memoryText().contains(mib(100000000)));
    QVERIFY(icon->isVisibleTo(run));
    QCOMPARE(start->text(), QString("Start"));
    QVERIFY2(start->toolTip().contains("out of memory"), qPrintable(start->toolTip()));
    if (const auto out = qEnvironmentVariable("LORASHEAR_SCREENSHOT_MEMORY_WARNING");
        !out.isEmpty()) {
      w.findChild<QDockWidget*>("runDock")->raise();
      QTest::qWait(200);
      QVERIFY(w.findChild<QDockWidget*>("runDock")->grab().save(out));
    }
    // Enough again: no warning left behind.
    qputenv(kAvailable, QByteArray::number(qint64(1) << 30));
    run->updateMemory();
    QVERIFY(!run->memoryWarning());
    QVERIFY(!icon->isVisibleTo(run));
    QVERIFY(start->toolTip().isEmpty());
    QVERIFY(run->memoryText().contains("1024.0 MiB available"));
    // A value that is no number of bytes is named on the line, without a warning.
    qputenv(kAvailable, "lots");
    run->updateMemory();
    QVERIFY(!run->memoryPlan().valid);
    QVERIFY(!run->memoryWarning());
    QVERIFY2(run->memoryText().contains("LORASHEAR_AVAILABLE_MEMORY_BYTES=lots"),
             qPrintable(run->memoryText()));
  }

  void gpuMemoryIsUnknownNotShort() {
    // A configuration alone opens without touching the device, so the CUDA path is checked here
    // without a GPU: bfloat16 weights count 2 bytes, and no warning whatever the host has.
    qputenv(kAvailable, "1");
    MainWindow w;
    w.setOpenOptions("cuda:0", "bfloat16");
    w.show();
    QVERIFY(w.openModel(demo_ + "/config.json"));
    QVERIFY(wait_open(w));
    auto* run = w.runPanel();
    QTRY_VERIFY(run->memoryPlan().valid);
    QCOMPARE(run->memoryPlan().device, QString("cuda:0"));
    QVERIFY(!run->memoryPlan().memoryKnown());
    QVERIFY(!run->memoryWarning());
    // Auto is off on a GPU (its free memory is not known).
    QVERIFY(!run->memoryPlan().checkpoint_activations);
    QCOMPARE(run->memoryPlan().per_rank_bytes, expected(run->settings(), 2, false).per_rank_bytes);
    QVERIFY2(run->memoryText().contains("device memory unknown"), qPrintable(run->memoryText()));
    QVERIFY(!run->findChild<QLabel*>("memoryWarningIcon")->isVisibleTo(run));
  }

  // "As stored in the checkpoint" (auto): a bf16 checkpoint opens in bf16 and the plan counts
  // 2 bytes per weight; the demo model (fp32) stays fp32.
  void autoDtypeKeepsTheCheckpoints() {
    QTemporaryDir dir;
    const QString bf16 = dir.filePath("bf16");
    {
      auto loaded = load_model(demo_.toStdString());
      SaveOptions so;
      so.dtype = torch::kBFloat16;
      save_hf(*loaded.model, loaded.tokenizer.get(), bf16.toStdString(), so);
    }
    for (const auto& [path, bytes] : {std::pair{bf16, 2}, std::pair{demo_, 4}}) {
      MainWindow w;
      w.setOpenOptions("cpu", "auto");
      w.show();
      QVERIFY(w.openModel(path));
      QVERIFY(wait_open(w));
      auto* run = w.runPanel();
      QTRY_VERIFY(run->memoryPlan().valid);
      QCOMPARE(run->memoryPlan().weight_dtype, QString(bytes == 2 ? "bfloat16" : "float32"));
      QCOMPARE(run->memoryPlan().per_rank_bytes,
               expected(run->settings(), bytes, run->memoryPlan().checkpoint_activations)
                   .per_rank_bytes);
    }
  }
};

QTEST_MAIN(TestRunMemory)
#include "test_run_memory.moc"
