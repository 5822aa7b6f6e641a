// The models researchers prune in 2026, in the app: Llama-3.1-8B and Qwen3-8B open from their
// config.json alone (and Qwen3-0.6B from a folder holding only its configuration) with the
// published parameter counts, RoPE scaling and q/k norms in the Model dock, a working plan and its
// "loads in" verdict (a non-uniform Qwen plan runs in this project only; the same size in every
// layer runs in llama.cpp); a tiny Qwen3-style model with Qwen3's real tokenizer.json is pruned
// and recovered from the GUI end to end, its tokenizer shown in the Model dock.
#include <QtTest>

#include <QCheckBox>
#include <QDir>
#include <QDockWidget>
#include <QTemporaryDir>

#include <filesystem>
#include <fstream>

#include "checkpoint_writers.h"
#include "lorashear/io/loader.h"
#include "lorashear/runtime.h"
#include "lorashear/tokenizer/tokenizer.h"
#include "lorashear/ui/engine.h"
#include "lorashear/ui/main_window.h"
#include "lorashear/ui/plan_editor.h"
#include "lorashear/ui/run_panel.h"
#include "lorashear/ui/summary_view.h"
#include "test_support.h"

using namespace lorashear;
namespace fs = std::filesystem;

namespace {
// Bad files (raw strings outside the class: moc does not read them inside it).
const char* kConfigBase =
    R"({"vocab_size":61,"hidden_size":32,"intermediate_size":40,"num_hidden_layers":2,
        "num_attention_heads":4,"num_key_value_heads":2,)";
const char* kGemma = R"("model_type":"gemma3"})";
const char* kLongRope =
    R"("model_type":"llama","rope_scaling":{"rope_type":"longrope","factor":2}})";
const char* kBrokenTokenizer = R"({"model":{"type":"BPE","vocab":{"a":0},"merges":[]},
    "pre_tokenizer":{"type":"Split","pattern":{"Regex":"(\\p{L}+"},
                     "behavior":"Isolated","invert":false}})";
}  // namespace

class TestFamilies : public QObject {
  Q_OBJECT
  QTemporaryDir dir_;

  bool open(MainWindow& w, const QString& path) {
    QSignalSpy shown(&w, &MainWindow::graphShown);
    if (!w.openModel(path)) return false;
    return shown.wait(120000);
  }

  QString dock_text(MainWindow& w) { return w.findChild<SummaryView*>()->text(); }

 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    init_runtime();
  }

  void configsOpen_data() {
    QTest::addColumn<QString>("path");
    QTest::addColumn<qint64>("params");
    QTest::addColumn<QString>("detail");
    QTest::newRow("Llama-3.1-8B config.json")
        << "configs/llama-3.1-8b/config.json" << qint64(8030261248) << "llama3 ×8";
    QTest::newRow("Qwen3-8B config.json")
        << "configs/qwen3-8b/config.json" << qint64(8190735360) << "per-head q/k RMSNorm";
    QTest::newRow("Qwen3-0.6B folder without weights")
        << "configs/qwen3-0.6b" << qint64(596049920) << "per-head q/k RMSNorm";
  }
  void configsOpen() {
    QFETCH(QString, path);
    QFETCH(qint64, params);
    QFETCH(QString, detail);
    LORASHEAR_REQUIRE_SHARED(path.toStdString());
    MainWindow w;
    w.show();
    QVERIFY(open(w, QString::fromStdString(test::shared_path(path.toStdString()).string())));
    QCOMPARE(w.engine()->documentParameters(), params);
    const QString text = dock_text(w);
    QVERIFY2(text.contains(detail), qPrintable(text));
    QVERIFY2(text.contains("configuration only"), qPrintable(text));
    // The plan editor estimates a 20 % target, and says where the result loads.
    auto* plan = w.planEditor()->model();
    QVERIFY(plan->setTargetRatio(0.2));
    const auto e = plan->estimate();
    QCOMPARE(e.params_before, params);
    QVERIFY(e.params_after < params * 0.85 && e.params_after > params * 0.7);
    auto* editor = w.planEditor();
    const bool qwen = path.contains("qwen");
    if (qwen) {
      // Non-uniform Qwen: llama.cpp's qwen3 has one size for every layer.
      QTRY_VERIFY2(editor->loadsInText().contains("--uniform"), qPrintable(editor->loadsInText()));
    }
    editor->uniformBox()->setChecked(true);
    QTRY_VERIFY2(
        editor->loadsInText().contains(qwen ? "llama.cpp ✓ (qwen3)" : "llama.cpp ✓ (llama)"),
        qPrintable(editor->loadsInText()));
    if (const auto shot = qEnvironmentVariable("LORASHEAR_SCREENSHOT_FAMILIES"); !shot.isEmpty()) {
      w.resize(1600, 1000);
      w.findChild<QDockWidget*>("modelDock")->raise();
      QTest::qWait(300);
      w.grab().save(shot + "-" + QString(QTest::currentDataTag()).section(' ', 0, 0) + ".png");
    }
  }

  // Files the app refuses, each with a message naming what is wrong, keeping the open model:
  // an unknown model_type (the supported ones listed), an unknown RoPE scaling type, a
  // tokenizer.json whose pre-tokenizer regex PCRE2 cannot compile.
  void badFilesKeepTheOpenModel() {
    LORASHEAR_REQUIRE_SHARED("configs/qwen3-0.6b/config.json");
    MainWindow w;
    w.show();
    const QString good =
        QString::fromStdString(test::shared_path("configs/qwen3-0.6b/config.json").string());
    QVERIFY(open(w, good));
    auto write = [&](const QString& name, const std::string& text) {
      const QString path = dir_.filePath(name);
      QDir().mkpath(QFileInfo(path).path());
      std::ofstream(path.toStdString()) << text;
      return path;
    };
    // A tiny model with weights and a broken tokenizer.json beside them.
    const QString broken_tok = dir_.filePath("broken-tokenizer");
    save_hf(*test::random_model(ModelConfig::uniform(61, 32, 2, 4, 2, 40), 1), nullptr,
            broken_tok.toStdString());
    write("broken-tokenizer/tokenizer.json", kBrokenTokenizer);
    const std::vector<std::pair<QString, QString>> cases = {
        {write("gemma/config.json", kConfigBase + std::string(kGemma)), "qwen3"},
        {write("longrope/config.json", kConfigBase + std::string(kLongRope)), "longrope"},
        {broken_tok, "offset"},
    };
    for (const auto& [path, needle] : cases) {
      QSignalSpy idle(&w, &MainWindow::engineIdle);
      QVERIFY(w.openModel(path));
      QVERIFY(idle.wait(60000));
      QVERIFY2(w.lastError().contains(needle), qPrintable(w.lastError()));
      QCOMPARE(w.documentPath(), QFileInfo(good).absoluteFilePath());
      QCOMPARE(w.engine()->documentParameters(), qint64(596049920));
    }
  }

  void tinyQwen3PrunedAndRecovered() {
    LORASHEAR_REQUIRE_SHARED("tokenizers/qwen3/tokenizer.json");
    LORASHEAR_REQUIRE_SHARED("data/text/tinystories_val_subset.txt");
    // A tiny random Qwen3 in the Hugging Face layout, with Qwen3's tokenizer.json beside it.
    auto cfg = ModelConfig::uniform(151936, 64, 2, 4, 2, 128, 32);
    cfg.model_type = "qwen3";
    cfg.qk_norm = true;
    cfg.tie_word_embeddings = true;
    cfg.rope_theta = 1000000.0;
    cfg.max_position_embeddings = 256;
    cfg.bos_token_id = 151643;
    cfg.eos_token_id = 151645;
    cfg.eos_token_ids = {151645, 151643};
    auto tok = Tokenizer::from_file(test::shared_path("tokenizers/qwen3/tokenizer.json").string());
    const QString model_dir = dir_.filePath("tiny-qwen3");
    save_hf(*test::random_model(cfg, 3), tok.get(), model_dir.toStdString());
    QVERIFY(QFileInfo::exists(model_dir + "/tokenizer.json"));

    MainWindow w;
    w.show();
    QVERIFY(open(w, model_dir));
    const QString text = dock_text(w);
    QVERIFY2(text.contains("BPE (tokenizer.json, byte-level)"), qPrintable(text));
    QVERIFY2(text.contains("<|im_end|>"), qPrintable(text));
    QVERIFY2(text.contains("per-head q/k RMSNorm"), qPrintable(text));

    auto* plan = w.planEditor()->model();
    // The 151,936-row embedding is most of a model this small: 0.4 % of it is a third of the
    // layers.
    QVERIFY2(plan->setTargetRatio(0.004), qPrintable(w.planEditor()->messageText()));
    const auto expected = plan->estimate().params_after;
    auto* run = w.runPanel();
    auto s = run->settings();
    s.text =
        QString::fromStdString(test::shared_path("data/text/tinystories_val_subset.txt").string());
    s.out_dir = dir_.filePath("tiny-qwen3-pruned");
    s.steps = 16;
    s.batch = 2;
    s.seq_len = 32;
    s.eval_windows = 4;
    s.checkpoint_every = 0;
    s.recover = true;
    s.domains = QStringList{s.text};
    s.recover_steps = 6;
    run->setSettings(s);
    QVERIFY2(run->start(), qPrintable(run->messageText()));
    QTRY_VERIFY2_WITH_TIMEOUT(run->messageText().startsWith("Done"), qPrintable(run->messageText()),
                              300000);
    QTRY_VERIFY_WITH_TIMEOUT(w.documentPath() == QFileInfo(s.out_dir).absoluteFilePath(), 60000);
    QTRY_VERIFY_WITH_TIMEOUT(!w.engine()->busy(), 30000);
    QVERIFY2(run->messageText().contains("recovered"), qPrintable(run->messageText()));
    QCOMPARE(w.engine()->documentParameters(), expected);
    // The result is a Qwen3 folder with its tokenizer.json, which the Model dock shows again.
    QVERIFY(QFileInfo::exists(s.out_dir + "/tokenizer.json"));
    auto back = load_model(s.out_dir.toStdString());
    QCOMPARE(back.model->config().model_type, std::string("qwen3"));
    QVERIFY(back.model->config().qk_norm);
    QCOMPARE(back.model->num_parameters(), expected);
    QCOMPARE(back.tokenizer->encode("Once upon a time"), tok->encode("Once upon a time"));
    QVERIFY2(dock_text(w).contains("BPE (tokenizer.json, byte-level)"), qPrintable(dock_text(w)));
  }
};

QTEST_MAIN(TestFamilies)
#include "test_families.moc"
