// The plan editor on the demo model (4 layers; 2 kv groups and 256 MLP channels per layer): edits
// move the estimates to what the engine's accounting gives for the same plan, infeasible edits are
// refused with the reason, locks and presets, MLP rounding, and save → load gives the same table.
#include <QtTest>

#include <QCheckBox>
#include <QLineEdit>
#include <QSlider>
#include <QTableView>

#include <QDockWidget>
#include <QElapsedTimer>
#include <QTemporaryDir>

#include <nlohmann/json.hpp>

#include "lorashear/graph/dependency.h"
#include "lorashear/graph/trace.h"
#include "lorashear/io/loader.h"
#include "lorashear/prune/plan.h"
#include "lorashear/runtime.h"
#include "lorashear/ui/main_window.h"
#include "lorashear/ui/plan_editor.h"
#include "test_support.h"

using namespace lorashear;

namespace {

QStringList snapshot(const PlanModel& m) {
  QStringList cells;
  for (int r = 0; r < m.rowCount(); ++r)
    for (int c = 0; c < m.columnCount(); ++c) {
      const auto index = m.index(r, c);
      cells << index.data().toString() + "|" + index.data(Qt::CheckStateRole).toString();
    }
  return cells;
}

// What the accounting says a plan removes: parameters and FLOPs per token.
Cost removed_by(const PruningPlan& plan, const DependencyGraph& deps) {
  const auto resolved = resolve_plan(plan, deps);
  std::vector<std::string> ids;
  for (const auto& e : resolved.entries)
    for (int64_t k = 0; k < e.remove; ++k)
      ids.push_back(deps.node_groups[e.node_group].variable_group_id(k));
  return deps.removal_cost(ids).total;
}

}  // namespace

class TestPlanEditor : public QObject {
  Q_OBJECT
  DependencyGraph deps_;
  QString demo_;

 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    init_runtime();
    demo_ = QString::fromStdString(test::source_path("resources/demo-model").string());
    auto loaded = load_model(demo_.toStdString());
    deps_ = analyze_dependencies(trace_model(*loaded.model));
  }

  void editsFollowTheAccounting() {
    MainWindow w;
    QSignalSpy shown(&w, &MainWindow::graphShown);
    QVERIFY(w.openModel(demo_));
    QVERIFY(shown.wait(30000));
    auto* editor = w.planEditor();
    auto* m = editor->model();
    QCOMPARE(m->rowCount(), 4);
    QCOMPARE(m->targetRatio(), 0.2);
    {
      PruningPlan plan;  // the default: 20% at one shared ratio
      const auto e = m->estimate();
      QVERIFY(e.valid);
      QCOMPARE(e.params_before - e.params_after, removed_by(plan, deps_).params);
    }
    // Half of layer 1's MLP channels.
    QVERIFY(m->setData(m->index(1, PlanModel::MlpRatio), "50 %"));
    QCOMPARE(m->index(1, PlanModel::MlpKept).data().toString(), QString("128 / 256"));
    PruningPlan plan;
    plan.node_group_ratios["L1.mlp"] = 0.5;
    auto e = m->estimate();
    const auto expected = removed_by(plan, deps_);
    QCOMPARE(e.params_after, deps_.total.params - expected.params);
    QCOMPARE(e.flops_after, deps_.total.flops - expected.flops);
    QVERIFY(e.speedup > 1.0);
    QVERIFY(editor->estimateText().contains("expected speed-up"));
    // The target moves every node group without a ratio of its own.
    QVERIFY(m->setTargetRatio(0.3));
    plan.target_ratio = 0.3;
    QCOMPARE(m->estimate().params_after, deps_.total.params - removed_by(plan, deps_).params);
    QCOMPARE(m->index(1, PlanModel::MlpKept).data().toString(), QString("128 / 256"));

    // Infeasible edits are refused with the reason; nothing changes.
    const auto before = snapshot(*m);
    QSignalSpy refused(m, &PlanModel::editRefused);
    QVERIFY(!m->setData(m->index(0, PlanModel::AttentionRatio), "100"));
    QVERIFY2(m->lastError().contains("kv group"), qPrintable(m->lastError()));
    QVERIFY(editor->messageText().contains("Not applied"));
    QVERIFY(!m->setData(m->index(0, PlanModel::MlpRatio), "lots"));
    QVERIFY(!m->setTargetRatio(0.97));  // more than the prunable groups hold
    QCOMPARE(refused.count(), 3);
    QCOMPARE(snapshot(*m), before);

    // Locks keep a node group whole.
    QVERIFY(m->setData(m->index(3, PlanModel::MlpLock), Qt::Checked, Qt::CheckStateRole));
    QCOMPARE(m->index(3, PlanModel::MlpKept).data().toString(), QString("256 / 256"));
    QVERIFY(m->planJson().contains("L3.mlp"));
    if (qEnvironmentVariableIsSet("LORASHEAR_SCREENSHOT")) {
      w.show();
      w.findChild<QDockWidget*>("planDock")->raise();
      w.planEditor()->setImportance({{"L0.attn", 1.0},
                                     {"L0.mlp", 0.6},
                                     {"L1.attn", 0.3},
                                     {"L1.mlp", 0.2},
                                     {"L2.attn", 0.25},
                                     {"L2.mlp", 0.1}});
      QTest::qWait(300);
      w.grab().save(qEnvironmentVariable("LORASHEAR_SCREENSHOT"));
    }
  }

  void slidersEditLive() {
    MainWindow w;
    QSignalSpy shown(&w, &MainWindow::graphShown);
    QVERIFY(w.openModel(demo_));
    QVERIFY(shown.wait(30000));
    w.show();
    w.findChild<QDockWidget*>("planDock")->raise();
    auto* editor = w.planEditor();
    auto* m = editor->model();
    // The target's slider and spin box are one value, in tenths of a percent.
    editor->targetSlider()->setValue(300);
    QCOMPARE(m->targetRatio(), 0.3);
    QVERIFY(m->setTargetRatio(0.25));
    QCOMPARE(editor->targetSlider()->value(), 250);
    // A ratio cell: a slider applied while it moves (the estimate follows with the editor open),
    // and a field for an exact percentage.
    const auto cell = m->index(2, PlanModel::MlpRatio);
    auto* table = editor->table();
    table->setCurrentIndex(cell);
    table->edit(cell);
    QSlider* slider = nullptr;
    QTRY_VERIFY((slider = table->viewport()->findChild<QSlider*>("ratioSlider")) != nullptr);
    const auto before = m->estimate().params_after;
    slider->setValue(60);
    QCOMPARE(m->index(2, PlanModel::MlpKept).data().toString(), QString("102 / 256"));
    QVERIFY(m->estimate().params_after < before);
    QVERIFY(slider->isVisible());  // still editing
    if (qEnvironmentVariableIsSet("LORASHEAR_SCREENSHOT_SLIDER"))
      editor->grab().save(qEnvironmentVariable("LORASHEAR_SCREENSHOT_SLIDER"));
    auto* edit = table->viewport()->findChild<QLineEdit*>("ratioEdit");
    QVERIFY(edit);
    edit->setText("12.5");
    QTest::keyClick(edit, Qt::Key_Return);
    QTRY_COMPARE(m->index(2, PlanModel::MlpKept).data().toString(), QString("224 / 256"));
    // Typing nonsense into the field is refused with the reason, the plan unchanged.
    table->edit(cell);
    QTRY_VERIFY((edit = table->viewport()->findChild<QLineEdit*>("ratioEdit")) != nullptr);
    edit->setText("lots");
    QTest::keyClick(edit, Qt::Key_Return);
    QTRY_VERIFY(editor->messageText().contains("not a percentage"));
    QCOMPARE(m->index(2, PlanModel::MlpKept).data().toString(), QString("224 / 256"));
  }

  void presetsRoundingAndFiles() {
    MainWindow w;
    QSignalSpy shown(&w, &MainWindow::graphShown);
    QVERIFY(w.openModel(demo_));
    QVERIFY(shown.wait(30000));
    auto* m = w.planEditor()->model();
    QVERIFY(m->presetProtectEnds());
    for (int layer : {0, 3}) {
      QCOMPARE(m->index(layer, PlanModel::AttentionLock).data(Qt::CheckStateRole).toInt(),
               int(Qt::Checked));
      QCOMPARE(m->index(layer, PlanModel::MlpKept).data().toString(), QString("256 / 256"));
    }
    QVERIFY(m->estimate().valid);
    QVERIFY(m->roundMlpWidths(64));
    for (int layer : {1, 2}) {
      const auto kept = m->index(layer, PlanModel::MlpKept).data().toString().section(' ', 0, 0);
      QCOMPARE(kept.toInt() % 64, 0);
    }
    // Save → load gives the same table, in the file format the CLI reads.
    QTemporaryDir dir;
    const auto path = dir.filePath("plan.json");
    QVERIFY(m->save(path));
    const auto saved = snapshot(*m);
    const auto cli_plan = PruningPlan::load(path.toStdString());
    QVERIFY(cli_plan.unprunable.count("L0.attn"));
    QVERIFY(m->presetUniform());
    QVERIFY(snapshot(*m) != saved);
    QVERIFY(m->load(path));
    QCOMPARE(snapshot(*m), saved);
    // A broken file is refused, naming it; the plan stays.
    QFile bad(dir.filePath("bad.json"));
    QVERIFY(bad.open(QIODevice::WriteOnly));
    bad.write("{\"format\": \"lorashear-plan\", \"target_ratio\": \"a lot\"}");
    bad.close();
    QVERIFY(!m->load(bad.fileName()));
    QVERIFY2(m->lastError().contains("bad.json"), qPrintable(m->lastError()));
    QCOMPARE(snapshot(*m), saved);
    // From the analysis: the most important node groups are locked.
    QVERIFY(!m->presetFromImportance({}));
    QVERIFY(m->presetFromImportance(
        {{"L0.attn", 1.0}, {"L1.mlp", 0.2}, {"L2.mlp", 0.1}, {"L3.mlp", 0.05}, {"L1.attn", 0.0}}));
    QCOMPARE(m->index(0, PlanModel::AttentionLock).data(Qt::CheckStateRole).toInt(),
             int(Qt::Checked));
    QCOMPARE(m->index(1, PlanModel::MlpLock).data(Qt::CheckStateRole).toInt(), int(Qt::Unchecked));
    // The analysis is drawn as bars per layer.
    w.planEditor()->setImportance({{"L0.attn", 1.0}, {"L1.mlp", 0.2}});
    const auto bars = m->index(1, PlanModel::Knowledge).data(PlanModel::ImportanceRole).toList();
    QCOMPARE(bars.size(), 2);
    QCOMPARE(bars[0].toDouble(), -1.0);  // L1.attn not measured
    QCOMPARE(bars[1].toDouble(), 0.2);
  }

  // The estimates follow each edit on a Llama-2-7B configuration (32 layers, 352 256 prunable
  // variable groups); the time per edit is printed, the GUI does it on its own thread.
  // "Same size in every layer": equal kept counts, where the result loads, what a lock costs.
  void sameSizeInEveryLayer() {
    MainWindow w;
    QSignalSpy shown(&w, &MainWindow::graphShown);
    QVERIFY(w.openModel(demo_));
    QVERIFY(shown.wait(30000));
    auto* editor = w.planEditor();
    auto* m = editor->model();
    QVERIFY(m->setData(m->index(0, PlanModel::MlpLock), Qt::Checked, Qt::CheckStateRole));
    QVERIFY2(editor->loadsInText().contains("transformers / vLLM: needs the same size"),
             qPrintable(editor->loadsInText()));
    QVERIFY(editor->loadsInText().contains("llama.cpp \u2713 (deci)"));
    // Locked L0.mlp keeps every MLP whole under the uniform option, so attention carries a 10%
    // target alone: one kv group of two in every layer.
    QVERIFY(m->setTargetRatio(0.1));
    editor->uniformBox()->setChecked(true);
    QVERIFY(m->uniform());
    for (int l = 0; l < 4; ++l) {
      QCOMPARE(m->index(l, PlanModel::MlpKept).data().toString(), QString("256 / 256"));
      QCOMPARE(m->index(l, PlanModel::KvKept).data().toString(), QString("1 / 2"));
    }
    const auto text = editor->loadsInText();
    QVERIFY2(
        text.contains("transformers / vLLM \u2713") && text.contains("llama.cpp \u2713 (llama)"),
        qPrintable(text));
    QVERIFY2(text.contains("every MLP keeps 256 of 256 channels: L0.mlp is kept whole"),
             qPrintable(text));
    QVERIFY2(text.contains("instead of the target"), qPrintable(text));
    if (qEnvironmentVariableIsSet("LORASHEAR_SCREENSHOT_UNIFORM")) {
      w.show();
      w.findChild<QDockWidget*>("planDock")->raise();
      QTest::qWait(300);
      editor->grab().save(qEnvironmentVariable("LORASHEAR_SCREENSHOT_UNIFORM"));
    }
    // 30% cannot be met by attention alone: refused, the box and the plan stay.
    QVERIFY(!m->setTargetRatio(0.3));
    QVERIFY2(m->lastError().contains("at most"), qPrintable(m->lastError()));
    QVERIFY(m->uniform());
    // Unlocked: both kinds share the target, every layer the same.
    QVERIFY(m->setData(m->index(0, PlanModel::MlpLock), Qt::Unchecked, Qt::CheckStateRole));
    QVERIFY(m->setTargetRatio(0.3));
    const auto mlp = m->index(0, PlanModel::MlpKept).data().toString();
    QVERIFY(mlp != "256 / 256");
    for (int l = 1; l < 4; ++l)
      QCOMPARE(m->index(l, PlanModel::MlpKept).data().toString(), mlp);
    QVERIFY(m->planJson().contains("\"uniform\": true"));
    editor->uniformBox()->setChecked(false);
    QVERIFY(!m->uniform());
  }

  void largeModelEditsStayLive() {
    QTemporaryDir dir;
    auto c = ModelConfig::uniform(32000, 4096, 32, 32, 32, 11008);
    c.max_position_embeddings = 4096;
    const auto path = dir.filePath("llama2-7b.json");
    {
      QFile f(path);
      QVERIFY(f.open(QIODevice::WriteOnly));
      f.write(QByteArray::fromStdString(c.to_hf_json().dump()));
    }
    MainWindow w;
    QSignalSpy shown(&w, &MainWindow::graphShown);
    QVERIFY(w.openModel(path));
    QVERIFY(shown.wait(30000));
    auto* m = w.planEditor()->model();
    QCOMPARE(m->rowCount(), 32);
    QElapsedTimer t;
    t.start();
    constexpr int kEdits = 10;
    for (int i = 0; i < kEdits; ++i) {
      QVERIFY(m->setData(m->index(i, PlanModel::MlpRatio), QString::number(10 + i)));
      QVERIFY(!w.planEditor()->estimateText().isEmpty());
    }
    const double ms = static_cast<double>(t.nsecsElapsed()) / 1e6 / kEdits;
    qInfo("plan edit + estimate on Llama-2-7B: %.2f ms", ms);
    QVERIFY(m->estimate().valid);
  }
};

QTEST_MAIN(TestPlanEditor)
#include "test_plan_editor.moc"
