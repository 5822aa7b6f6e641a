// Outputs on a filesystem that fills up mid-write, is read-only, or whose folder vanishes during
// the run: `prune`, `recover`, `convert` (Hugging Face folder, sharded, GGUF) and the run
// checkpoints fail with one line naming the path and the reason, leave a previous output and
// checkpoint byte-identical, leave no staging or temporary file, and the next run with room
// succeeds. Needs root (small tmpfs mounts); skipped with the reason otherwise.
#include <QtTest>

#include <unistd.h>

#include <QProcess>
#include <QTemporaryDir>

#include <filesystem>
#include <fstream>
#include <map>

#include "fault_support.h"
#include "lorashear/errors.h"
#include "lorashear/io/archive.h"
#include "lorashear/prune/lhspg.h"
#include "lorashear/run_log.h"
#include "test_support.h"

using namespace lorashear;
namespace fs = std::filesystem;
using test::leftovers;
using test::snapshot;
using test::Tmpfs;

namespace {

using Run = test::ProcessResult;

Run run_cli(const QStringList& args) {
  return test::run_process(LORASHEAR_CLI_PATH, args, 300000);
}

QString demo_model() {
  return QString::fromStdString(test::source_path("resources/demo-model").string());
}

// 60 lines of a short story: a few training windows of 32 tokens.
void write_story_text(const QString& path) {
  std::ofstream f(path.toStdString());
  for (int i = 0; i < 60; ++i)
    f << "Once upon a time, there was a little girl named Lily. She liked to play in the park "
         "with her dog. One day, the sun was bright and the sky was blue.\n";
}

// The failure a user sees: exit code 1, one line "error: …" naming `path`, saying `reason`.
#define CHECK_ONE_LINE_ERROR(r, path, reason)                                              \
  do {                                                                                     \
    const QString e_ = (r).err.trimmed();                                                  \
    QVERIFY2((r).code == 1, qPrintable(QString("exit %1: %2").arg((r).code).arg(e_)));     \
    QVERIFY2(e_.startsWith("error: ") && !e_.contains('\n'), qPrintable(e_));              \
    QVERIFY2(e_.contains(path), qPrintable(e_ + "\n  does not name " + (path)));           \
    QVERIFY2(e_.contains(reason), qPrintable(e_ + "\n  does not say " + QString(reason))); \
  } while (0)

const char* kFull = "No space left on device";

}  // namespace

class TestDiskFull : public QObject {
  Q_OBJECT
  QTemporaryDir dir_;
  QString text_;

  QStringList pruneArgs(const QString& out, int steps = 12) const {
    return {"prune",     demo_model(),  "--ratio",   "0.3",     "--text",
            text_,       "--out",       out,         "--steps", QString::number(steps),
            "--periods", "2",           "--seq-len", "32",      "--batch",
            "2",         "--lora-rank", "2",         "--quiet", "--threads",
            "1"};
  }
  QStringList recoverArgs(const QString& out) const { return test::small_recover_args(text_, out); }

 private slots:
  void initTestCase() {
    if (::geteuid() != 0) QSKIP("needs root: the cases mount small tmpfs filesystems");
    QVERIFY(dir_.isValid());
    Tmpfs probe(dir_.filePath("probe"), 64);
    if (!probe.ok())
      QSKIP(qPrintable("cannot mount a tmpfs here (" + probe.error() + "): skipped"));
    text_ = dir_.filePath("text.txt");
    write_story_text(text_);
  }

  // prune --overwrite onto a disk that fills in the weights, in the small files after them and
  // in the report: the previous output stays as it was.
  void pruneDiskFull() {
    Tmpfs m(dir_.filePath("prune"), 8192);
    QVERIFY2(m.ok(), qPrintable(m.error()));
    const QString out = m.path("out");
    auto r = run_cli(pruneArgs(out) << "--checkpoint-every"
                                    << "0");
    QVERIFY2(r.code == 0, qPrintable(r.err));
    const auto before = snapshot(out);
    const int64_t out_k = m.used_k();
    QVERIFY(out_k > 1000);
    QStringList failed_at;
    for (const int64_t extra : {int64_t{8}, out_k / 2, out_k - 40, out_k - 16}) {
      QVERIFY(m.leaveRoom(extra));
      r = run_cli(pruneArgs(out) << "--overwrite"
                                 << "--seed"
                                 << "3"
                                 << "--checkpoint-every"
                                 << "0");
      CHECK_ONE_LINE_ERROR(r, out, kFull);
      failed_at << r.err.trimmed().section(':', 1, 1).trimmed();
      QVERIFY2(snapshot(out) == before, qPrintable(QString("room %1k").arg(extra)));
      QVERIFY2(leftovers(m.path("")).isEmpty(), qPrintable(leftovers(m.path("")).join(", ")));
      QDir(out + ".run").removeRecursively();
    }
    qInfo("prune failed writing: %s", qPrintable(failed_at.join(" | ")));
    QVERIFY(m.remount("size=8192k"));
    r = run_cli(pruneArgs(out) << "--overwrite"
                               << "--seed"
                               << "3"
                               << "--checkpoint-every"
                               << "0");
    QVERIFY2(r.code == 0, qPrintable(r.err));
    QVERIFY(snapshot(out) != before);

    // --export-gguf onto another, full disk: the pruned model is kept, the message says how to
    // retry the GGUF.
    Tmpfs small(dir_.filePath("prune-gguf"), 256);
    QVERIFY2(small.ok(), qPrintable(small.error()));
    const QString gguf = small.path("pruned.gguf"), kept = dir_.filePath("pruned-kept");
    r = run_cli(pruneArgs(kept) << "--checkpoint-every"
                                << "0"
                                << "--export-gguf" << gguf);
    CHECK_ONE_LINE_ERROR(r, gguf, kFull);
    QVERIFY2(r.err.contains("saved in " + kept) && r.err.contains("lorashear convert"),
             qPrintable(r.err));
    QVERIFY(QFileInfo::exists(kept + "/model.safetensors"));
    QVERIFY(snapshot(small.path("")).empty());
  }

  void recoverDiskFull() {
    Tmpfs m(dir_.filePath("recover"), 8192);
    QVERIFY2(m.ok(), qPrintable(m.error()));
    const QString out = m.path("rec");
    auto r = run_cli(recoverArgs(out) << "--checkpoint-every"
                                      << "0");
    QVERIFY2(r.code == 0, qPrintable(r.err));
    const auto before = snapshot(out);
    const int64_t out_k = m.used_k();
    for (const int64_t extra : {int64_t{8}, out_k / 2, out_k - 16}) {
      QVERIFY(m.leaveRoom(extra));
      r = run_cli(recoverArgs(out) << "--overwrite"
                                   << "--seed"
                                   << "2"
                                   << "--checkpoint-every"
                                   << "0");
      CHECK_ONE_LINE_ERROR(r, out, kFull);
      QVERIFY2(snapshot(out) == before, qPrintable(QString("room %1k").arg(extra)));
      QVERIFY2(leftovers(m.path("")).isEmpty(), qPrintable(leftovers(m.path("")).join(", ")));
      QDir(out + ".run").removeRecursively();
    }
    QVERIFY(m.remount("size=8192k"));
    r = run_cli(recoverArgs(out) << "--overwrite"
                                 << "--seed"
                                 << "2"
                                 << "--checkpoint-every"
                                 << "0");
    QVERIFY2(r.code == 0, qPrintable(r.err));
    QVERIFY(snapshot(out) != before);
  }

  // convert to a Hugging Face folder (one file and shards) and to GGUF over a previous output of
  // another dtype.
  void convertDiskFull() {
    Tmpfs m(dir_.filePath("convert"), 16384);
    QVERIFY2(m.ok(), qPrintable(m.error()));
    const QString hf = m.path("hf"), gguf = m.path("model.gguf");
    auto r = run_cli({"convert", demo_model(), "--to", "hf", hf, "--out-dtype", "fp16"});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    r = run_cli({"convert", demo_model(), "--to", "gguf", gguf, "--out-dtype", "f16"});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    const auto hf_before = snapshot(hf);
    const QByteArray gguf_before = QByteArray::fromStdString(test::read_all(gguf.toStdString()));
    struct Case {
      QStringList args;
      QString path;
    };
    const QList<Case> cases = {
        {{"--to", "hf", hf}, hf},
        {{"--to", "hf", hf, "--shard-size", "0.5"}, hf},
        {{"--to", "gguf", gguf}, gguf},
    };
    for (const auto& c : cases) {
      // What this output takes (float32: twice the previous one), written once elsewhere.
      const bool to_gguf = c.path == gguf;
      const QString probe = m.path(to_gguf ? "probe.gguf" : "probe");
      QStringList probe_args = c.args;
      probe_args[2] = probe;
      const int64_t used = m.used_k();
      r = run_cli(QStringList{"convert", demo_model(), "--quiet"} + probe_args);
      QVERIFY2(r.code == 0, qPrintable(r.err));
      const int64_t new_k = m.used_k() - used;
      QVERIFY(new_k > 1000);
      to_gguf ? QFile::remove(probe) : QDir(probe).removeRecursively();
      // Full at once, in the weights, in the last small files.
      for (const int64_t extra : {int64_t{8}, new_k / 2, new_k - 8}) {
        QVERIFY(m.leaveRoom(extra));
        r = run_cli(QStringList{"convert", demo_model(), "--quiet"} + c.args);
        CHECK_ONE_LINE_ERROR(r, c.path, kFull);
        QVERIFY2(snapshot(hf) == hf_before, qPrintable(c.args.join(' ')));
        QCOMPARE(QByteArray::fromStdString(test::read_all(gguf.toStdString())), gguf_before);
        QVERIFY2(leftovers(m.path("")).isEmpty(), qPrintable(leftovers(m.path("")).join(", ")));
      }
      QVERIFY(m.remount("size=16384k"));
    }
    for (const auto& c : cases) {
      r = run_cli(QStringList{"convert", demo_model(), "--quiet"} + c.args);
      QVERIFY2(r.code == 0, qPrintable(c.args.join(' ') + ": " + r.err));
    }
    QVERIFY(snapshot(hf) != hf_before);
    QVERIFY(QFile::exists(hf + "/model.safetensors.index.json"));
    QVERIFY(leftovers(m.path("")).isEmpty());
    // A folder that holds something else is not replaced whole.
    QDir().mkpath(m.path("notes"));
    std::ofstream(m.path("notes/todo.txt").toStdString()) << "keep me\n";
    r = run_cli({"convert", demo_model(), "--to", "hf", m.path("notes")});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("without a model"), qPrintable(r.err));
    QCOMPARE(test::read_all(m.path("notes/todo.txt").toStdString()), std::string("keep me\n"));
  }

  // A checkpoint that does not fit: the run stops naming the checkpoint file, the previous
  // checkpoint is untouched and resumes once there is room.
  void checkpointDiskFull() {
    Tmpfs m(dir_.filePath("ckpt"), 16384);
    QVERIFY2(m.ok(), qPrintable(m.error()));
    const QString out = m.path("out"), ckpt = out + ".checkpoint";
    auto args = pruneArgs(out, 30) << "--checkpoint-every"
                                   << "4";
    QProcess p;
    auto env = QProcessEnvironment::systemEnvironment();
    env.insert("LORASHEAR_TEST_KILL_AT_STEP", "6");
    p.setProcessEnvironment(env);
    p.start(LORASHEAR_CLI_PATH, args);
    QVERIFY(p.waitForFinished(300000));
    QCOMPARE(p.exitStatus(), QProcess::CrashExit);
    const auto before = snapshot(ckpt + "/latest");
    QVERIFY(before.count("model.safetensors") == 1);
    const int64_t ckpt_k = m.used_k();
    // Step 8's checkpoint fills the disk in its weights.
    QVERIFY(m.leaveRoom(ckpt_k / 2));
    const auto resume = QStringList(args) << "--resume" << ckpt;
    auto r = run_cli(resume);
    CHECK_ONE_LINE_ERROR(r, ckpt + "/latest/model.safetensors", kFull);
    QVERIFY(snapshot(ckpt + "/latest") == before);
    QVERIFY(!QFileInfo::exists(out));
    QVERIFY2(leftovers(m.path("")).isEmpty(), qPrintable(leftovers(m.path("")).join(", ")));
    QVERIFY(m.remount("size=16384k"));
    r = run_cli(resume);
    QVERIFY2(r.code == 0, qPrintable(r.err));
    QVERIFY(QFileInfo::exists(out + "/model.safetensors"));
    QVERIFY(!QFileInfo::exists(ckpt));

    // A recovery run's first checkpoint does not fit: no checkpoint folder is left.
    const QString rec = m.path("rec");
    QVERIFY(m.leaveRoom(600));
    r = run_cli(recoverArgs(rec) << "--checkpoint-every"
                                 << "2");
    CHECK_ONE_LINE_ERROR(r, rec + ".checkpoint/latest/", kFull);
    QVERIFY(!QFileInfo::exists(rec + ".checkpoint"));
    QVERIFY(!QFileInfo::exists(rec));
    QVERIFY2(leftovers(m.path("")).isEmpty(), qPrintable(leftovers(m.path("")).join(", ")));
  }

  // The optimiser state (optimizer.pt, a LibTorch archive) is the file that does not fit.
  void checkpointOptimizerStateDiskFull() {
    Tmpfs m(dir_.filePath("ckpt-opt"), 16384);
    QVERIFY2(m.ok(), qPrintable(m.error()));
    const QString out = m.path("out"), ckpt = out + ".checkpoint";
    const auto args = pruneArgs(out, 30) << "--checkpoint-every"
                                         << "4";
    QProcess p;
    auto env = QProcessEnvironment::systemEnvironment();
    env.insert("LORASHEAR_TEST_KILL_AT_STEP", "6");
    p.setProcessEnvironment(env);
    p.start(LORASHEAR_CLI_PATH, args);
    QVERIFY(p.waitForFinished(300000));
    const auto weights_k =
        static_cast<int64_t>(QFileInfo(ckpt + "/latest/model.safetensors").size() / 1024);
    QVERIFY(weights_k > 1000);
    QDir(ckpt).removeRecursively();
    QDir(out + ".run").removeRecursively();
    QVERIFY(m.leaveRoom(weights_k + 40));
    auto r = run_cli(args);
    CHECK_ONE_LINE_ERROR(r, ckpt + "/latest/optimizer.pt", kFull);
    QVERIFY(!QFileInfo::exists(ckpt));
    QVERIFY2(leftovers(m.path("")).isEmpty(), qPrintable(leftovers(m.path("")).join(", ")));
  }

  // io::save_archive_atomic itself on a full disk: an Error naming the file, nothing left.
  void archiveDiskFull() {
    Tmpfs m(dir_.filePath("archive"), 64);
    QVERIFY2(m.ok(), qPrintable(m.error()));
    torch::serialize::OutputArchive archive;
    archive.write("big", torch::ones({64, 1024}));  // 256 KiB
    const auto path = m.path("optimizer.pt").toStdString();
    try {
      io::save_archive_atomic(archive, path);
      QFAIL("no error on a full disk");
    } catch (const Error& e) {
      const QString what = e.what();
      QVERIFY2(what.contains(QString::fromStdString(path)) && what.contains(kFull),
               qPrintable(what));
    }
    QVERIFY(snapshot(m.path("")).empty());
    QVERIFY(m.remount("size=1024k"));
    io::save_archive_atomic(archive, path);
    torch::serialize::InputArchive in;
    in.load_from(path);
    torch::Tensor back;
    QVERIFY(in.try_read("big", back));
    QVERIFY(torch::equal(back, torch::ones({64, 1024})));
  }

  // A read-only filesystem: refused at once with the reason; the outputs there stay as they were.
  void readOnlyOutput() {
    Tmpfs m(dir_.filePath("ro"), 16384);
    QVERIFY2(m.ok(), qPrintable(m.error()));
    const QString out = m.path("out"), hf = m.path("hf"), gguf = m.path("model.gguf"),
                  rec = m.path("rec");
    QVERIFY(run_cli({"convert", demo_model(), "--to", "hf", hf, "--quiet"}).code == 0);
    QVERIFY(run_cli({"convert", demo_model(), "--to", "gguf", gguf, "--quiet"}).code == 0);
    QVERIFY(run_cli(pruneArgs(out) << "--checkpoint-every"
                                   << "0")
                .code == 0);
    const auto before = snapshot(m.path(""));
    QVERIFY(m.remount("ro"));
    const char* ro = "Read-only file system";
    auto r = run_cli(pruneArgs(out) << "--overwrite");
    CHECK_ONE_LINE_ERROR(r, out, ro);
    r = run_cli(pruneArgs(m.path("new")));
    CHECK_ONE_LINE_ERROR(r, m.path("new"), ro);
    r = run_cli(recoverArgs(rec));
    CHECK_ONE_LINE_ERROR(r, rec, ro);
    r = run_cli({"convert", demo_model(), "--to", "hf", hf, "--out-dtype", "bf16"});
    CHECK_ONE_LINE_ERROR(r, hf, ro);
    r = run_cli({"convert", demo_model(), "--to", "gguf", gguf, "--out-dtype", "q8_0"});
    CHECK_ONE_LINE_ERROR(r, gguf, ro);
    QVERIFY(snapshot(m.path("")) == before);
    QVERIFY(m.remount("rw"));
    r = run_cli({"convert", demo_model(), "--to", "gguf", gguf, "--out-dtype", "q8_0"});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    QVERIFY(leftovers(m.path("")).isEmpty());
  }

  // The run's live record on a disk that fills: a line that does not fit is lost whole, never
  // left half-written (a follower reads every line to the end), the run's record says lines are
  // missing, and lines go on where they stopped once there is room.
  void runRecordDiskFull() {
    Tmpfs m(dir_.filePath("record"), 256);
    QVERIFY(m.ok());
    const std::string run = m.path("out.run").toStdString();
    RunLogWriter log(run, {{"command", "prune"}}, true, 1);
    LhspgMetrics lm;
    lm.total_steps = 1000;
    lm.loss = 2.718281828459045;
    for (int i = 0; i < 24; ++i)  // a long first line: the sparsity of 24 node groups
      lm.sparsity["layers." + std::to_string(i) + ".mlp"] = 0.015625 * i;
    int64_t step = 0;
    auto write = [&](int lines) {
      for (int i = 0; i < lines; ++i) {
        lm.step = ++step;
        lm.sparsity.begin()->second = 1.0 / static_cast<double>(step);  // each line carries it
        log.lhspg(lm);
      }
    };
    // Fill the disk but for ~10 KB, then write ~60 KB of lines.
    QVERIFY(m.leaveRoom(12));
    {
      std::ofstream filler(m.path("filler").toStdString(), std::ios::binary);
      filler << std::string(8 * 1024, 'x');
    }
    write(100);
    const auto path = run + "/metrics.jsonl";
    std::vector<int64_t> steps;
    auto read_all = [&] {
      steps.clear();
      RunFollower f(run);
      f.poll([&](const RunRecord& r) { steps.push_back(static_cast<int64_t>(r.step)); });
      const std::string bytes = test::read_all(path);
      QVERIFY2(bytes.empty() || bytes.back() == '\n', "the record ends in the middle of a line");
    };
    read_all();
    QVERIFY2(steps.size() > 3 && steps.size() < 100,
             qPrintable(QString("%1 of 100 lines on the disk").arg(steps.size())));
    for (size_t i = 0; i < steps.size(); ++i)
      QCOMPARE(steps[i], static_cast<int64_t>(i + 1));  // the first lines, whole, in order
    const auto kept = steps.size();
    // Room again: the next lines follow the last whole one.
    QVERIFY(m.remount("size=1024k"));
    write(5);
    read_all();
    QCOMPARE(steps.size(), kept + 5);
    QCOMPARE(steps.back(), step);
    QVERIFY(steps[kept] > steps[kept - 1] + 1);  // the lost lines leave a gap in the steps
    log.finish("finished");
    const auto info = RunFollower(run).info();
    QVERIFY(info.is_object());
    QCOMPARE(QString::fromStdString(info.value("status", "")), QString("finished"));
    const auto error = QString::fromStdString(info.value("metrics_error", ""));
    QVERIFY2(error.contains(QString::fromStdString(path)) && error.contains(kFull),
             qPrintable(error));
  }

  // The output's parent folder deleted while the run trains, and missing before a GGUF export.
  void vanishedOutputFolder() {
    const QString parent = dir_.filePath("vanish/parent"), out = parent + "/out";
    QVERIFY(QDir().mkpath(parent));
    QProcess p;
    p.start(LORASHEAR_CLI_PATH, pruneArgs(out, 200) << "--checkpoint-every"
                                                    << "0");
    QTRY_VERIFY_WITH_TIMEOUT(
        !QDir(parent).entryList(QStringList{".out.tmp-*"}, QDir::Dirs | QDir::Hidden).isEmpty(),
        30000);
    QVERIFY(QDir(parent).removeRecursively());
    QVERIFY(p.waitForFinished(300000));
    Run r{p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -2,
          QString::fromUtf8(p.readAllStandardOutput()),
          QString::fromUtf8(p.readAllStandardError())};
    CHECK_ONE_LINE_ERROR(r, out, "vanished");
    QVERIFY(!QFileInfo::exists(out));
    QVERIFY2(leftovers(dir_.filePath("vanish")).isEmpty(),
             qPrintable(leftovers(dir_.filePath("vanish")).join(", ")));
    r = run_cli(pruneArgs(out) << "--checkpoint-every"
                               << "0");
    QVERIFY2(r.code == 0, qPrintable(r.err));

    const QString gguf = dir_.filePath("vanish/gone/model.gguf");
    r = run_cli({"convert", demo_model(), "--to", "gguf", gguf});
    CHECK_ONE_LINE_ERROR(r, gguf, "No such file or directory");
    QVERIFY2(r.err.contains("does not exist"), qPrintable(r.err));
  }
};

QTEST_GUILESS_MAIN(TestDiskFull)
#include "test_disk_full.moc"
