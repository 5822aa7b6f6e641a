// The export dialog: the open model written in float32 and bfloat16, an adapter merged or kept,
// GGUF files for llama.cpp, each export loaded back and checked before success is reported; a bad
// folder fails with a message; the dialog says where the model loads.
#include <QtTest>

#include <QTemporaryDir>

#include "lorashear/io/gguf.h"
#include "lorashear/io/loader.h"
#include "lorashear/model/lora.h"
#include "lorashear/prune/subnet.h"
#include "lorashear/runtime.h"
#include "lorashear/ui/engine.h"
#include "lorashear/ui/export_dialog.h"
#include "lorashear/ui/main_window.h"
#include "test_support.h"

using namespace lorashear;

class TestExport : public QObject {
  Q_OBJECT
  QTemporaryDir dir_;
  QString demo_;

  bool run(ExportDialog& dialog) {
    QSignalSpy done(&dialog, &ExportDialog::done);
    return dialog.start() && done.wait(60000) && dialog.succeeded();
  }

 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    init_runtime();
    demo_ = QString::fromStdString(test::source_path("resources/demo-model").string());
  }

  void exportsAndChecks() {
    MainWindow w;
    QSignalSpy shown(&w, &MainWindow::graphShown);
    QVERIFY(w.openModel(demo_));
    QVERIFY(shown.wait(30000));
    for (const QString dtype : {"float32", "bfloat16"}) {
      ExportDialog dialog(w.engine());
      const auto out = dir_.filePath("demo-" + dtype);
      dialog.setFolder(out);
      dialog.setDtype(dtype);
      QVERIFY2(run(dialog), qPrintable(dialog.resultText()));
      QVERIFY(dialog.resultText().contains("reloaded"));
      QVERIFY(QFileInfo::exists(out + "/model.safetensors"));
      QVERIFY(QFileInfo::exists(out + "/config.json"));
      QVERIFY(QFileInfo::exists(out + "/tokenizer.model"));
      auto back = load_model(out.toStdString());
      QCOMPARE(back.source_dtype, std::string(dtype == "float32" ? "F32" : "BF16"));
    }
    // Shards of at most 1 MiB with an index; loads back the same.
    {
      ExportDialog dialog(w.engine());
      const auto out = dir_.filePath("demo-sharded");
      dialog.setFolder(out);
      dialog.setShardMiB(1);
      QVERIFY2(run(dialog), qPrintable(dialog.resultText()));
      QVERIFY2(dialog.resultText().contains("2 shards"), qPrintable(dialog.resultText()));
      QVERIFY(QFileInfo::exists(out + "/model-00001-of-00002.safetensors"));
      QVERIFY(QFileInfo::exists(out + "/model.safetensors.index.json"));
      QVERIFY(!QFileInfo::exists(out + "/model.safetensors"));
      auto back = load_model(out.toStdString());
      QCOMPARE(back.model->num_parameters(), w.engine()->documentParameters());
    }
    // Cancel: the folder already there (the float32 export) is left as it was, nothing staged
    // stays behind.
    {
      const auto out = dir_.filePath("demo-float32");
      const auto stamp = QFileInfo(out + "/model.safetensors").lastModified();
      ExportDialog dialog(w.engine());
      dialog.setFolder(out);
      dialog.setDtype("bfloat16");
      QSignalSpy done(&dialog, &ExportDialog::done);
      QVERIFY(dialog.start());
      dialog.cancel();
      QVERIFY(done.wait(60000));
      QVERIFY(!dialog.succeeded());
      QVERIFY2(dialog.resultText().startsWith("Cancelled"), qPrintable(dialog.resultText()));
      QCOMPARE(QFileInfo(out + "/model.safetensors").lastModified(), stamp);
      QCOMPARE(load_model(out.toStdString()).source_dtype, std::string("F32"));
      QCOMPARE(QDir(dir_.path())
                   .entryList(QStringList{".demo-float32*"}, QDir::AllEntries | QDir::Hidden)
                   .size(),
               0);
    }
    // A folder that cannot be created: the reason, no success.
    ExportDialog bad(w.engine());
    bad.setFolder("/proc/no-such-dir/model");
    QVERIFY(!run(bad));
    QVERIFY2(bad.resultText().startsWith("Failed"), qPrintable(bad.resultText()));
  }

  void gguf() {
    MainWindow w;
    QSignalSpy shown(&w, &MainWindow::graphShown);
    QVERIFY(w.openModel(demo_));
    QVERIFY(shown.wait(30000));
    {
      ExportDialog dialog(w.engine());
      QVERIFY2(dialog.loadsInText().contains("llama.cpp \u2713 (llama)") &&
                   dialog.loadsInText().contains("transformers / vLLM \u2713"),
               qPrintable(dialog.loadsInText()));
      for (const QString dtype : {"f32", "q8_0"}) {
        const auto out = dir_.filePath("demo-" + dtype + ".gguf");
        dialog.setFormat("gguf");
        dialog.setFolder(out);
        dialog.setDtype(dtype);
        QVERIFY2(run(dialog), qPrintable(dialog.resultText()));
        QVERIFY2(dialog.resultText().contains("architecture llama"),
                 qPrintable(dialog.resultText()));
        auto back = load_model(out.toStdString());
        QCOMPARE(back.format, ModelFormat::Gguf);
        QCOMPARE(back.source_dtype, std::string(dtype == "f32" ? "F32" : "Q8_0"));
        QVERIFY(!QFileInfo::exists(dir_.filePath(".demo-" + dtype + ".gguf.export")));
      }
      // Cancel: the file already there stays as it was.
      const auto out = dir_.filePath("demo-f32.gguf");
      const auto stamp = QFileInfo(out).lastModified();
      dialog.setFolder(out);
      dialog.setDtype("f16");
      QSignalSpy done(&dialog, &ExportDialog::done);
      QVERIFY(dialog.start());
      dialog.cancel();
      QVERIFY(done.wait(60000));
      QVERIFY(!dialog.succeeded());
      QCOMPARE(QFileInfo(out).lastModified(), stamp);
      QCOMPARE(load_model(out.toStdString()).source_dtype, std::string("F32"));
      QVERIFY(!QFileInfo::exists(dir_.filePath(".demo-f32.gguf.export")));
    }
    // A model with layers of different sizes: "deci", and the dialog says transformers cannot.
    const auto pruned_dir = dir_.filePath("pruned-demo");
    {
      auto loaded = load_model(demo_.toStdString());
      auto pruned = construct_subnet(*loaded.model, analyze_model(*loaded.model),
                                     {"L0.attn.kv1", "L2.mlp.c5", "L2.mlp.c6"});
      save_hf(*pruned, loaded.tokenizer.get(), pruned_dir.toStdString());
    }
    QVERIFY(w.openModel(pruned_dir));
    QVERIFY(shown.wait(30000));
    ExportDialog dialog(w.engine());
    QVERIFY2(dialog.loadsInText().contains("llama.cpp \u2713 (deci)") &&
                 dialog.loadsInText().contains("needs the same size in every layer"),
             qPrintable(dialog.loadsInText()));
    dialog.setFormat("gguf");
    dialog.setFolder(dir_.filePath("pruned"));  // the extension is added
    QVERIFY2(run(dialog), qPrintable(dialog.resultText()));
    QVERIFY2(dialog.resultText().contains("architecture deci"), qPrintable(dialog.resultText()));
    if (qEnvironmentVariableIsSet("LORASHEAR_SCREENSHOT_EXPORT")) {
      dialog.show();
      QTest::qWait(200);
      dialog.grab().save(qEnvironmentVariable("LORASHEAR_SCREENSHOT_EXPORT"));
    }
    QVERIFY(QFileInfo::exists(dir_.filePath("pruned.gguf")));
  }

  void adapterMergedOrKept() {
    const auto adapter = dir_.filePath("adapter");
    {
      auto loaded = load_model(demo_.toStdString());
      LoraConfig lc;
      lc.rank = 4;
      attach_lora(*loaded.model, lc);
      torch::NoGradGuard ng;
      for (auto& t : lora_parameters(*loaded.model))
        t.normal_(0, 0.05);  // a trained adapter changes the outputs
      save_lora_adapter(*loaded.model, adapter.toStdString());
    }
    MainWindow w;
    QSignalSpy shown(&w, &MainWindow::graphShown);
    QVERIFY(w.openModel(demo_, adapter));
    QVERIFY(shown.wait(30000));
    QVERIFY(w.engine()->documentHasAdapter());
    ExportDialog merged(w.engine());
    merged.setFolder(dir_.filePath("merged"));
    QVERIFY2(run(merged), qPrintable(merged.resultText()));
    QVERIFY(merged.resultText().contains("merged"));
    QVERIFY(!QFileInfo::exists(dir_.filePath("merged/adapter")));
    ExportDialog kept(w.engine());
    kept.setFolder(dir_.filePath("kept"));
    kept.setKeepAdapter(true);
    QVERIFY2(run(kept), qPrintable(kept.resultText()));
    QVERIFY(QFileInfo::exists(dir_.filePath("kept/adapter/adapter_config.json")));
    // The open model still has its adapter, unmerged: a second merged export checks again.
    ExportDialog again(w.engine());
    again.setFolder(dir_.filePath("merged-again"));
    QVERIFY2(run(again), qPrintable(again.resultText()));
  }
};

QTEST_MAIN(TestExport)
#include "test_export.moc"
