// File ▸ Export model onto a disk that fills up mid-write and onto a read-only one: the dialog says
// "Failed: " with the chosen path and the system's reason, a previous export there stays
// byte-identical, no staging or temporary file is left, and the window exports again to a good
// folder. Needs root (small tmpfs mounts); skipped with the reason otherwise.
#include <QtTest>

#include <unistd.h>

#include <QTemporaryDir>

#include <filesystem>
#include <map>

#include "fault_support.h"
#include "lorashear/io/loader.h"
#include "lorashear/runtime.h"
#include "lorashear/ui/engine.h"
#include "lorashear/ui/export_dialog.h"
#include "lorashear/ui/main_window.h"
#include "test_support.h"

using namespace lorashear;
namespace fs = std::filesystem;
using test::leftovers;
using test::snapshot;
using test::Tmpfs;

class TestExportFaults : public QObject {
  Q_OBJECT
  QTemporaryDir dir_;
  QString demo_;

  bool run(ExportDialog& dialog) {
    QSignalSpy done(&dialog, &ExportDialog::done);
    return dialog.start() && done.wait(60000) && dialog.succeeded();
  }

  // The dialog's failure: "Failed: …" naming `path`, saying `reason`.
  static bool saysFailed(const ExportDialog& d, const QString& path, const QString& reason) {
    const auto t = d.resultText();
    return t.startsWith("Failed: ") && t.contains(path) && t.contains(reason);
  }

 private slots:
  void initTestCase() {
    if (::geteuid() != 0) QSKIP("needs root: the cases mount small tmpfs filesystems");
    Tmpfs probe(dir_.filePath("probe"), 64);
    if (!probe.ok()) QSKIP(qPrintable("cannot mount a tmpfs here (" + probe.error() + ")"));
    QStandardPaths::setTestModeEnabled(true);
    init_runtime();
    demo_ = QString::fromStdString(test::source_path("resources/demo-model").string());
  }

  void diskFull() {
    MainWindow w;
    QSignalSpy shown(&w, &MainWindow::graphShown);
    QVERIFY(w.openModel(demo_));
    QVERIFY(shown.wait(30000));
    Tmpfs m(dir_.filePath("full"), 16384);
    QVERIFY2(m.ok(), qPrintable(m.error()));
    const QString folder = m.path("model"), gguf = m.path("model.gguf");
    // Previous exports: float32 folder, f32 GGUF.
    {
      ExportDialog d(w.engine());
      d.setFolder(folder);
      QVERIFY2(run(d), qPrintable(d.resultText()));
      d.setFormat("gguf");
      d.setFolder(gguf);
      QVERIFY2(run(d), qPrintable(d.resultText()));
    }
    const auto before = snapshot(m.path(""));
    // The bfloat16 folder, then a q8_0 GGUF, each on a disk with room for a part of it.
    for (const int64_t extra : {int64_t{8}, int64_t{400}}) {
      QVERIFY(m.leaveRoom(extra));
      ExportDialog d(w.engine());
      d.setFolder(folder);
      d.setDtype("bfloat16");
      QVERIFY(!run(d));
      QVERIFY2(saysFailed(d, folder, "No space left on device"), qPrintable(d.resultText()));
      QVERIFY(snapshot(m.path("")) == before);
      QVERIFY2(leftovers(m.path("")).isEmpty(), qPrintable(leftovers(m.path("")).join(", ")));
      d.setFormat("gguf");
      d.setFolder(gguf);
      d.setDtype("q8_0");
      QVERIFY(!run(d));
      QVERIFY2(saysFailed(d, gguf, "No space left on device"), qPrintable(d.resultText()));
      QVERIFY(snapshot(m.path("")) == before);
      QVERIFY2(leftovers(m.path("")).isEmpty(), qPrintable(leftovers(m.path("")).join(", ")));
    }
    // The window goes on: an export to a folder with room works, and then to the full one once
    // there is room again.
    {
      ExportDialog d(w.engine());
      d.setFolder(dir_.filePath("good"));
      d.setDtype("bfloat16");
      QVERIFY2(run(d), qPrintable(d.resultText()));
      QCOMPARE(load_model(dir_.filePath("good").toStdString()).source_dtype, std::string("BF16"));
      QVERIFY(m.remount("size=16384k"));
      d.setFolder(folder);
      QVERIFY2(run(d), qPrintable(d.resultText()));
      QCOMPARE(load_model(folder.toStdString()).source_dtype, std::string("BF16"));
    }
  }

  void readOnly() {
    MainWindow w;
    QSignalSpy shown(&w, &MainWindow::graphShown);
    QVERIFY(w.openModel(demo_));
    QVERIFY(shown.wait(30000));
    Tmpfs m(dir_.filePath("ro"), 16384);
    QVERIFY2(m.ok(), qPrintable(m.error()));
    const QString folder = m.path("model"), gguf = m.path("model.gguf");
    {
      ExportDialog d(w.engine());
      d.setFolder(folder);
      QVERIFY2(run(d), qPrintable(d.resultText()));
    }
    const auto before = snapshot(m.path(""));
    QVERIFY(m.remount("ro"));
    ExportDialog d(w.engine());
    d.setFolder(folder);
    d.setDtype("bfloat16");
    QVERIFY(!run(d));
    QVERIFY2(saysFailed(d, folder, "Read-only file system"), qPrintable(d.resultText()));
    d.setFormat("gguf");
    d.setFolder(gguf);
    QVERIFY(!run(d));
    QVERIFY2(saysFailed(d, gguf, "Read-only file system"), qPrintable(d.resultText()));
    QVERIFY(snapshot(m.path("")) == before);
    d.setFolder(dir_.filePath("good.gguf"));
    QVERIFY2(run(d), qPrintable(d.resultText()));
  }
};

QTEST_MAIN(TestExportFaults)
#include "test_export_faults.moc"
