// A `prune --recover` run's checkpoints (pruning, recovery stage 1, recovery stage 2) truncated,
// bit-flipped or mixed with a file of another checkpoint, or with a manifest from another version
// or none: `--resume` refuses each with exit code 3 and one line naming the file; the run without
// --resume starts over, and a later --resume no longer sees the bad checkpoint.
#include <QProcessEnvironment>
#include <QTemporaryDir>
#include <QtTest>

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <filesystem>
#include <functional>

#include "fault_support.h"
#include "lorashear/io/checkpoint.h"
#include "test_support.h"

using namespace lorashear;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int kPruneSteps = 24;  // --steps; recovery: 11 stage 1 steps, then 5 of stage 2

// Rewrites a checkpoint's manifest.json after `edit`, with a valid checksum of its own.
void rewrite_manifest(const fs::path& dir, const std::function<void(json&)>& edit) {
  json m = json::parse(test::read_all(dir / io::kCheckpointManifest));
  edit(m);
  m.erase("crc32");
  const std::string d = m.dump();
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08x", io::crc32(d.data(), d.size()));
  m["crc32"] = hex;
  test::write_all(dir / io::kCheckpointManifest, m.dump(2));
}

}  // namespace

class TestCorruptRunCheckpoints : public QObject {
  Q_OBJECT

 private slots:
  void initTestCase();
  void crc32KnownAnswers();
  void eachFileOfEachCheckpoint_data();
  void eachFileOfEachCheckpoint();
  void manifestMissingDamagedOrOfAnotherVersion();
  void startingOverReplacesTheBadCheckpoint();
  void killedBetweenTheTwoRenamesOfACommit();
  void killedOnceTheOutputWasSaved();
  void recoverKilledOnceTheOutputWasSaved();

 private:
  QStringList args() const;
  test::ProcessResult run(const QStringList& extra = {}, int kill_at_step = -1) const;
  // OUT.checkpoint as left by a run killed at `kill_at_step` (resumed from `resume_from`, a saved
  // copy, when given), copied to `save_as`.
  void make_checkpoint(int kill_at_step, const fs::path& save_as, const fs::path& resume_from = {});
  void restore(const fs::path& saved) const;

  QTemporaryDir tmp_;
  fs::path dir_, out_, ckpt_;
};

QStringList TestCorruptRunCheckpoints::args() const {
  const QString d = QString::fromStdString(dir_.string());
  return {"prune",
          QString::fromStdString(test::source_path("resources/demo-model").string()),
          "--ratio",
          "0.3",
          "--text",
          d + "/text.txt",
          "--out",
          QString::fromStdString(out_.string()),
          "--steps",
          QString::number(kPruneSteps),
          "--periods",
          "2",
          "--seq-len",
          "32",
          "--batch",
          "2",
          "--lora-rank",
          "2",
          "--seed",
          "7",
          "--recover",
          "--domain",
          d + "/domain.txt",
          "--instruct",
          d + "/instruct.json",
          "--recover-steps",
          "16",
          "--val-sequences",
          "4",
          "--stage1-batch",
          "2",
          "--stage2-batch",
          "2",
          "--reestimate-every",
          "4",
          "--eval-every",
          "2",
          "--instruct-seq-len",
          "128",
          "--checkpoint-every",
          "2",
          "--threads",
          "1",
          "--quiet"};
}

test::ProcessResult TestCorruptRunCheckpoints::run(const QStringList& extra,
                                                   int kill_at_step) const {
  auto env = QProcessEnvironment::systemEnvironment();
  if (kill_at_step > 0) env.insert("LORASHEAR_TEST_KILL_AT_STEP", QString::number(kill_at_step));
  return test::run_process(LORASHEAR_CLI_PATH, args() << extra, 300000, env);
}

void TestCorruptRunCheckpoints::make_checkpoint(int kill_at_step, const fs::path& save_as,
                                                const fs::path& resume_from) {
  QStringList extra;
  if (!resume_from.empty()) {
    restore(resume_from);
    extra << "--resume" << QString::fromStdString(ckpt_.string());
  }
  const auto r = run(extra, kill_at_step);
  QVERIFY2(r.code == -2, qPrintable("not killed: " + r.err));  // SIGKILL: a crash exit
  QVERIFY(!fs::exists(out_));
  fs::remove_all(save_as);
  fs::copy(ckpt_, save_as, fs::copy_options::recursive);
}

void TestCorruptRunCheckpoints::restore(const fs::path& saved) const {
  fs::remove_all(ckpt_);
  fs::copy(saved, ckpt_, fs::copy_options::recursive);
}

void TestCorruptRunCheckpoints::initTestCase() {
  LORASHEAR_REQUIRE_SHARED("data/text/tinystories_val_subset.txt");
  LORASHEAR_REQUIRE_SHARED("data/instruct/instruction-data.json");
  QVERIFY(tmp_.isValid());
  dir_ = tmp_.path().toStdString();
  out_ = dir_ / "out";
  ckpt_ = dir_ / "out.checkpoint";
  const std::string stories =
      test::read_all(test::shared_path("data/text/tinystories_val_subset.txt"));
  test::write_all(dir_ / "text.txt", stories.substr(0, 60000));
  test::write_all(dir_ / "domain.txt", stories.substr(60000, 40000));
  const json inst =
      json::parse(test::read_all(test::shared_path("data/instruct/instruction-data.json")));
  test::write_all(dir_ / "instruct.json",
                  json(std::vector<json>(inst.begin(), inst.begin() + 60)).dump());
  // Pruning checkpoints of steps 6 and 10; recovery stage 1 (its steps 4 and 6), stage 2 (its
  // steps 1 and 3, with the best adapter). LORASHEAR_TEST_KILL_AT_STEP=N kills at pruning step N,
  // or at recovery step N - 24 of the process (a resumed one counts from its checkpoint); the
  // checkpoint of the step before is left.
  make_checkpoint(7, dir_ / "prune-6");
  if (QTest::currentTestFailed()) return;
  make_checkpoint(11, dir_ / "prune-10", dir_ / "prune-6");
  if (QTest::currentTestFailed()) return;
  make_checkpoint(kPruneSteps + 5, dir_ / "stage1-4", dir_ / "prune-10");  // global 5
  if (QTest::currentTestFailed()) return;
  make_checkpoint(kPruneSteps + 3, dir_ / "stage1-6", dir_ / "stage1-4");  // 4 + 3
  if (QTest::currentTestFailed()) return;
  make_checkpoint(kPruneSteps + 7, dir_ / "stage2-1", dir_ / "stage1-6");  // 6 + 7 = 11 + 2
  if (QTest::currentTestFailed()) return;
  make_checkpoint(kPruneSteps + 3, dir_ / "stage2-3", dir_ / "stage2-1");  // 12 + 3 = 11 + 4
  if (QTest::currentTestFailed()) return;
  QVERIFY(fs::exists(dir_ / "stage2-3/recovery/latest/best_adapter.safetensors"));
  QCOMPARE(json::parse(test::read_all(dir_ / "prune-10/latest/state.json"))["step"].get<int>(), 10);
  const auto st = json::parse(test::read_all(dir_ / "stage2-3/recovery/latest/state.json"));
  QCOMPARE(st["stage"].get<int>(), 2);
  QCOMPARE(st["step"].get<int>(), 3);
  // The last one resumes and finishes.
  restore(dir_ / "stage2-3");
  const auto r = run({"--resume", QString::fromStdString(ckpt_.string())});
  QVERIFY2(r.code == 0, qPrintable(r.err));
  QVERIFY(!fs::exists(ckpt_));
  fs::rename(out_, dir_ / "finished");  // what every resumed run below must write
  fs::remove_all(dir_ / "out.run");
}

// The manifest's CRC-32 is the one of zip, PNG and Python's zlib.crc32: its check value, and the
// same figure when a file is summed in pieces.
void TestCorruptRunCheckpoints::crc32KnownAnswers() {
  const std::string digits = "123456789";
  QCOMPARE(io::crc32(digits.data(), digits.size()), 0xCBF43926u);
  QCOMPARE(io::crc32(nullptr, 0), 0u);
  QCOMPARE(io::crc32(digits.data() + 4, 5, io::crc32(digits.data(), 4)), 0xCBF43926u);
  const std::string fox = "The quick brown fox jumps over the lazy dog";
  QCOMPARE(io::crc32(fox.data(), fox.size()), 0x414FA339u);
}

void TestCorruptRunCheckpoints::eachFileOfEachCheckpoint_data() {
  QTest::addColumn<QString>("saved");   // the checkpoint copy
  QTest::addColumn<QString>("other");   // an earlier checkpoint of the same run
  QTest::addColumn<QString>("folder");  // its `latest` folder, relative
  QTest::addColumn<QString>("file");
  QTest::addColumn<QString>("damage");  // truncated, bit flip, another checkpoint's
  const struct {
    const char *saved, *other, *folder;
    std::vector<const char*> files;
  } kinds[] = {
      {"prune-10", "prune-6", "latest", {"model.safetensors", "optimizer.pt", "state.json"}},
      {"stage1-6",
       "stage1-4",
       "recovery/latest",
       {"model.safetensors", "optimizer.pt", "state.json"}},
      {"stage2-3",
       "stage2-1",
       "recovery/latest",
       {"model.safetensors", "best_adapter.safetensors", "optimizer.pt", "state.json"}},
  };
  for (const auto& k : kinds)
    for (const char* f : k.files)
      for (const char* damage : {"truncated", "bit flip", "another checkpoint's"})
        QTest::newRow(qPrintable(QString("%1 %2 %3").arg(k.saved, f, damage)))
            << k.saved << k.other << k.folder << f << damage;
}

void TestCorruptRunCheckpoints::eachFileOfEachCheckpoint() {
  QFETCH(QString, saved);
  QFETCH(QString, other);
  QFETCH(QString, folder);
  QFETCH(QString, file);
  QFETCH(QString, damage);
  restore(dir_ / saved.toStdString());
  const fs::path target = ckpt_ / folder.toStdString() / file.toStdString();
  const std::string bytes = test::read_all(target);
  QVERIFY(bytes.size() > 100);
  std::string why;
  if (damage == "truncated") {
    fs::resize_file(target, bytes.size() - 7);
    why = "is corrupt (" + std::to_string(bytes.size() - 7) + " bytes, " +
          std::to_string(bytes.size()) + " were written)";
  } else if (damage == "bit flip") {
    // In the middle: tensor data for the weights, a value in state.json.
    std::string b = bytes;
    b[b.size() / 2] ^= 0x10;
    test::write_all(target, b);
    why = "is corrupt (checksum mismatch)";
  } else {
    const auto from = dir_ / other.toStdString() / folder.toStdString() / file.toStdString();
    QVERIFY(test::read_all(from) != bytes);
    fs::copy_file(from, target, fs::copy_options::overwrite_existing);
    why = "is corrupt (";  // the size or the checksum differs
  }
  const auto r = run({"--resume", QString::fromStdString(ckpt_.string())});
  QCOMPARE(r.code, 3);
  const QString expected = QString::fromStdString("checkpoint " + target.string() + " " + why);
  QVERIFY2(r.err.contains(expected), qPrintable(r.err));
  QVERIFY2(r.err.contains("start the run over without --resume"), qPrintable(r.err));
  QCOMPARE(r.err.trimmed().count('\n'), 0);  // one line
  QVERIFY(!fs::exists(out_));
}

void TestCorruptRunCheckpoints::manifestMissingDamagedOrOfAnotherVersion() {
  const QStringList resume{"--resume", QString::fromStdString(ckpt_.string())};
  for (const char* folder : {"latest", "recovery/latest"}) {
    const fs::path dir = ckpt_ / folder, manifest = dir / io::kCheckpointManifest;
    const auto expect = [&](const std::string& text) {
      const auto r = run(resume);
      QCOMPARE(r.code, 3);
      QVERIFY2(r.err.contains(QString::fromStdString(text)), qPrintable(r.err));
      QVERIFY2(r.err.contains("start the run over without --resume"), qPrintable(r.err));
    };
    // Written by a lorashear without manifests.
    restore(dir_ / "stage1-6");
    fs::remove(manifest);
    expect("checkpoint " + manifest.string() + " is missing (written by a lorashear older");
    if (QTest::currentTestFailed()) return;
    // Another format version (a later lorashear).
    restore(dir_ / "stage1-6");
    rewrite_manifest(dir, [](json& m) {
      m["version"] = io::kRunCheckpointVersion + 1;
      m["lorashear"] = "9.9.9";
    });
    expect("checkpoint " + dir.string() + " was written by another version of lorashear (9.9.9");
    if (QTest::currentTestFailed()) return;
    // A bit flipped in the manifest itself, in a checksum, and its JSON broken.
    restore(dir_ / "stage1-6");
    std::string m = test::read_all(manifest);
    m[m.find("\"crc32\": \"", m.find("\"files\"")) + 10] ^= 0x01;  // a file's checksum
    test::write_all(manifest, m);
    expect("checkpoint " + manifest.string() + " is corrupt (checksum mismatch)");
    if (QTest::currentTestFailed()) return;
    restore(dir_ / "stage1-6");
    test::write_all(manifest, test::read_all(manifest).substr(0, 40));
    expect("checkpoint " + manifest.string() + " is corrupt (not valid JSON)");
    if (QTest::currentTestFailed()) return;
    // A file the manifest lists is gone.
    restore(dir_ / "stage1-6");
    fs::remove(dir / "optimizer.pt");
    expect("checkpoint " + (dir / "optimizer.pt").string() + " is missing");
    if (QTest::currentTestFailed()) return;
  }
}

void TestCorruptRunCheckpoints::startingOverReplacesTheBadCheckpoint() {
  // A corrupt recovery checkpoint; the run started over without --resume is killed during
  // pruning, then resumed: it resumes its own pruning checkpoint and does not meet the old
  // recovery one (removed when it started), and finishes.
  restore(dir_ / "stage2-3");
  const fs::path bad = ckpt_ / "recovery/latest/model.safetensors";
  std::string b = test::read_all(bad);
  b[b.size() / 2] ^= 0x04;
  test::write_all(bad, b);
  const QStringList resume{"--resume", QString::fromStdString(ckpt_.string())};
  QCOMPARE(run(resume).code, 3);
  QCOMPARE(run({}, 9).code, -2);
  QVERIFY(fs::exists(ckpt_ / "latest/state.json"));
  QVERIFY(!fs::exists(ckpt_ / "recovery"));
  const auto r = run(resume);
  QVERIFY2(r.code == 0, qPrintable(r.err));
  QVERIFY(fs::exists(out_ / "model.safetensors"));
  QVERIFY(!fs::exists(ckpt_));
  // And a finished run's folder plus a corrupt checkpoint: without --resume (and --overwrite)
  // the run starts over and succeeds.
  restore(dir_ / "prune-10");
  fs::resize_file(ckpt_ / "latest/optimizer.pt", 10);
  QCOMPARE(run(QStringList(resume) << "--overwrite").code, 3);
  const auto again = run({"--overwrite"});
  QVERIFY2(again.code == 0, qPrintable(again.err));
  QVERIFY(!fs::exists(ckpt_));
}

void TestCorruptRunCheckpoints::killedBetweenTheTwoRenamesOfACommit() {
  // A commit moves `latest` aside (.latest.old-HOST-PID), then renames the staged one
  // (.latest.tmp-HOST-PID) into place: killed between the two, `latest` is absent. --resume puts
  // the previous checkpoint back (the staged one may be incomplete) and continues from it.
  QProcess gone;
  gone.start("sleep", {"0.1"});
  QVERIFY(gone.waitForStarted());
  const std::string pid = std::to_string(gone.processId());  // 0 once it has ended
  QVERIFY(gone.waitForFinished());
  char host_buf[256] = {};
  QCOMPARE(::gethostname(host_buf, sizeof host_buf - 1), 0);
  std::string host = host_buf;
  for (auto& c : host)
    if (c == '.' || c == '/') c = '_';
  fs::remove_all(out_);
  restore(dir_ / "stage1-6");
  for (const char* folder : {"latest", "recovery/latest"}) {
    const fs::path latest = ckpt_ / folder;
    fs::rename(latest, latest.parent_path() / (".latest.old-" + host + "-" + pid));
    fs::copy(dir_ / "stage1-4" / folder, latest.parent_path() / (".latest.tmp-" + host + "-" + pid),
             fs::copy_options::recursive);
  }
  const auto r = run({"--resume", QString::fromStdString(ckpt_.string())});
  QVERIFY2(r.code == 0, qPrintable(r.err));
  QVERIFY(test::read_all(out_ / "model.safetensors") ==
          test::read_all(dir_ / "finished/model.safetensors"));
  QVERIFY(!fs::exists(ckpt_));
  for (const auto& e : fs::directory_iterator(dir_))
    QVERIFY2(e.path().filename().string().find(".tmp-") == std::string::npos,
             qPrintable(QString::fromStdString(e.path().string())));
}

// Killed after OUT was committed, before its checkpoint was removed: both are on disk and the
// record says "running". --resume finds the run complete: OUT is left as it is, the checkpoint
// goes, the record is closed, and the summary is printed as at the end of a run.
void TestCorruptRunCheckpoints::killedOnceTheOutputWasSaved() {
  fs::remove_all(out_);
  fs::remove_all(ckpt_);
  auto env = QProcessEnvironment::systemEnvironment();
  env.insert("LORASHEAR_TEST_KILL_WHEN_SAVED", "1");
  const auto killed = test::run_process(LORASHEAR_CLI_PATH, args(), 300000, env);
  QVERIFY2(killed.code == -2, qPrintable("not killed: " + killed.err));
  QVERIFY(fs::exists(out_ / "pruning_report.json") && fs::exists(ckpt_ / "committed.json"));
  const fs::path record = out_.string() + ".run/run.json";
  QCOMPARE(json::parse(test::read_all(record)).value("status", ""), std::string("running"));
  QVERIFY(test::read_all(out_ / "model.safetensors") ==
          test::read_all(dir_ / "finished/model.safetensors"));
  const auto before = test::snapshot(QString::fromStdString(out_.string()));

  const auto r = run({"--resume", QString::fromStdString(ckpt_.string())});
  QVERIFY2(r.code == 0, qPrintable(r.err));
  QVERIFY2(r.out.contains("pruned ") && r.out.contains("wrote "), qPrintable(r.out));
  QVERIFY(test::snapshot(QString::fromStdString(out_.string())) == before);
  QVERIFY(!fs::exists(ckpt_));
  const auto info = json::parse(test::read_all(record));
  QCOMPARE(info.value("status", ""), std::string("finished"));
  QVERIFY(info.value("note", "").find("found the run complete") != std::string::npos);

  // Nothing is left to resume: a second --resume is refused, OUT untouched.
  const auto again = run({"--resume", QString::fromStdString(ckpt_.string())});
  QVERIFY2(again.code != 0 && again.err.contains("already exists"), qPrintable(again.err));
  QVERIFY(test::snapshot(QString::fromStdString(out_.string())) == before);
}

// The same for `recover`, whose output is committed by the CLI.
void TestCorruptRunCheckpoints::recoverKilledOnceTheOutputWasSaved() {
  const fs::path out = dir_ / "recovered", ckpt = dir_ / "recovered.checkpoint";
  const QStringList args =
      test::small_recover_args(QString::fromStdString((dir_ / "domain.txt").string()),
                               QString::fromStdString(out.string()))
      << "--checkpoint-every"
      << "2";
  auto env = QProcessEnvironment::systemEnvironment();
  env.insert("LORASHEAR_TEST_KILL_WHEN_SAVED", "1");
  const auto killed = test::run_process(LORASHEAR_CLI_PATH, args, 300000, env);
  QVERIFY2(killed.code == -2, qPrintable("not killed: " + killed.err));
  QVERIFY(fs::exists(out / "recovery_report.json") && fs::exists(ckpt / "committed.json"));
  const auto before = test::snapshot(QString::fromStdString(out.string()));
  const auto r = test::run_process(
      LORASHEAR_CLI_PATH, QStringList(args) << "--resume" << QString::fromStdString(ckpt.string()));
  QVERIFY2(r.code == 0, qPrintable(r.err));
  QVERIFY2(r.out.contains("wrote "), qPrintable(r.out));
  QVERIFY(test::snapshot(QString::fromStdString(out.string())) == before);
  QVERIFY(!fs::exists(ckpt));
  const auto info = json::parse(test::read_all(out.string() + ".run/run.json"));
  QCOMPARE(info.value("status", ""), std::string("finished"));
}

QTEST_GUILESS_MAIN(TestCorruptRunCheckpoints)
#include "test_corrupt_run_checkpoints.moc"
