// `lorashear prune --recover` killed with SIGKILL at 20 random moments (start-up, pruning, recovery
// stages 1 and 2, checkpoint writes, the final save) and resumed each time ends with the same
// files as an uninterrupted run, byte for byte; the staging folders the kills leave are swept.
#include <QElapsedTimer>
#include <QProcess>
#include <QTemporaryDir>
#include <QtTest>

#include <nlohmann/json.hpp>

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "test_support.h"

using namespace lorashear;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int kPruneSteps = 100;  // --steps
constexpr int kKills = 20;
constexpr int kCheckpointKills = 4;  // of the kills, aimed at a checkpoint being written

// The pruning report without what depends on the clock or the machine's free memory.
json without_timings(json j) {
  if (j.is_object()) {
    j.erase("seconds");
    j.erase("loader");
    if (j.contains("activation_checkpointing")) j["activation_checkpointing"].erase("why");
    for (auto& [k, v] : j.items())
      v = without_timings(v);
  } else if (j.is_array()) {
    for (auto& v : j)
      v = without_timings(v);
  }
  return j;
}

// The first place two JSON values differ ("" when equal), for the failure message.
std::string first_difference(const json& a, const json& b, const std::string& at = "") {
  if (a.type() != b.type()) return at + ": " + a.dump() + " vs " + b.dump();
  if (a.is_object()) {
    for (const auto& [k, v] : a.items()) {
      if (!b.contains(k)) return at + "/" + k + ": only in the first";
      const auto d = first_difference(v, b.at(k), at + "/" + k);
      if (!d.empty()) return d;
    }
    for (const auto& [k, v] : b.items())
      if (!a.contains(k)) return at + "/" + k + ": only in the second";
    return "";
  }
  if (a.is_array()) {
    if (a.size() != b.size())
      return at + ": " + std::to_string(a.size()) + " vs " + std::to_string(b.size()) + " items";
    for (size_t i = 0; i < a.size(); ++i) {
      const auto d = first_difference(a[i], b[i], at + "/" + std::to_string(i));
      if (!d.empty()) return d;
    }
    return "";
  }
  return a == b ? "" : at + ": " + a.dump() + " vs " + b.dump();
}

// The last complete line of OUT.run/metrics.jsonl (null when there is none).
json last_metrics(const fs::path& run_dir) {
  const std::string all = test::read_all(run_dir / "metrics.jsonl");
  const auto end = all.rfind('\n');
  if (end == std::string::npos) return nullptr;
  const auto begin = all.rfind('\n', end - 1);
  try {
    return json::parse(all.substr(begin == std::string::npos ? 0 : begin + 1,
                                  end - (begin == std::string::npos ? 0 : begin + 1)));
  } catch (const json::exception&) {
    return nullptr;
  }
}

// The "step" of the last recovery line of OUT.run/metrics.jsonl (-1 when there is none).
int last_recovery_step(const fs::path& run_dir) {
  std::istringstream lines(test::read_all(run_dir / "metrics.jsonl"));
  std::string l;
  int step = -1;
  while (std::getline(lines, l)) {
    const auto j = json::parse(l, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.value("kind", "") == "recovery") step = j.value("step", -1);
  }
  return step;
}

// Staging folders (".NAME.tmp-…" or ".NAME.old-…") under `dir`, recursively.
std::vector<fs::path> staging_folders(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const std::string f = it->path().filename().string();
    if (!f.empty() && f[0] == '.' &&
        (f.find(".tmp-") != std::string::npos || f.find(".old-") != std::string::npos))
      out.push_back(it->path());
  }
  return out;
}

bool owned_by(const fs::path& staging, qint64 pid) {
  const std::string f = staging.filename().string();
  const std::string suffix = "-" + std::to_string(pid);
  return f.size() > suffix.size() &&
         f.compare(f.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

class TestKillResume : public QObject {
  Q_OBJECT

 private slots:
  void initTestCase();
  void twentyKillsThenTheSameFiles();

 private:
  QStringList args(const QString& out) const;
  // Position of a metrics line in the whole run: pruning steps 1..100, then recovery's steps.
  int progress_of(const json& line) const;

  QTemporaryDir tmp_;
  fs::path dir_;
  int stage1_steps_ = 0;
};

QStringList TestKillResume::args(const QString& out) const {
  const QString d = QString::fromStdString(dir_.string());
  return {"prune",
          QString::fromStdString(test::source_path("resources/demo-model").string()),
          "--ratio",
          "0.3",
          "--text",
          d + "/text.txt",
          "--out",
          out,
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
          "60",
          "--val-sequences",
          "4",
          "--stage1-batch",
          "2",
          "--stage2-batch",
          "2",
          "--reestimate-every",
          "5",
          "--eval-every",
          "5",
          "--instruct-seq-len",
          "128",
          "--stage1-patience",
          "0",
          "--stage2-patience",
          "0",
          "--checkpoint-every",
          "4",
          "--threads",
          "1",
          "--quiet"};
}

int TestKillResume::progress_of(const json& line) const {
  if (line.is_null()) return 0;
  if (line.value("kind", "") == "lhspg") return line.value("step", 0);
  const int stage_step = line.value("stage_step", 0);
  return kPruneSteps + (line.value("stage", 1) == 1 ? stage_step : stage1_steps_ + stage_step);
}

void TestKillResume::initTestCase() {
  LORASHEAR_REQUIRE_SHARED("data/text/tinystories_val_subset.txt");
  LORASHEAR_REQUIRE_SHARED("data/instruct/instruction-data.json");
  QVERIFY(tmp_.isValid());
  dir_ = tmp_.path().toStdString();
  const std::string stories =
      test::read_all(test::shared_path("data/text/tinystories_val_subset.txt"));
  QVERIFY(stories.size() > 100000);
  test::write_all(dir_ / "text.txt", stories.substr(0, 60000));
  test::write_all(dir_ / "domain.txt", stories.substr(60000, 40000));
  const json inst =
      json::parse(test::read_all(test::shared_path("data/instruct/instruction-data.json")));
  QVERIFY(inst.is_array() && inst.size() >= 60);
  test::write_all(dir_ / "instruct.json",
                  json(std::vector<json>(inst.begin(), inst.begin() + 60)).dump());
}

void TestKillResume::twentyKillsThenTheSameFiles() {
  const QString ref = QString::fromStdString((dir_ / "ref").string());
  const QString out = QString::fromStdString((dir_ / "killed").string());
  const fs::path out_p = out.toStdString(), ckpt = out_p.string() + ".checkpoint",
                 run_dir = out_p.string() + ".run";

  // ---- the uninterrupted run, and its timeline (seconds from the start to each step)
  QElapsedTimer clock;
  clock.start();
  auto whole = test::run_process(LORASHEAR_CLI_PATH, args(ref));
  const double ref_seconds = clock.elapsed() / 1000.0;
  QVERIFY2(whole.code == 0, qPrintable(whole.err));
  std::map<int, double> timeline;  // progress → seconds since the start of the process
  {
    std::istringstream lines(test::read_all(ref.toStdString() + ".run/metrics.jsonl"));
    std::string l;
    std::vector<json> all;
    while (std::getline(lines, l))
      all.push_back(json::parse(l));
    for (const auto& j : all)
      if (j.value("kind", "") == "recovery" && j.value("stage", 0) == 1)
        stage1_steps_ = std::max(stage1_steps_, j.value("stage_step", 0));
    // The log's clock starts when the model is loaded: shift it so the last line is at the end.
    const double shift = ref_seconds - all.back().value("time", 0.0) - 0.05;
    for (const auto& j : all)
      timeline[progress_of(j)] = j.value("time", 0.0) + std::max(0.0, shift);
  }
  QVERIFY(timeline.size() > kPruneSteps);
  qInfo(
      "uninterrupted run: %.1f s, first step at %.2f s, pruning ends at %.2f s, %d + %d "
      "recovery steps",
      ref_seconds, timeline.begin()->second, timeline.at(kPruneSteps), stage1_steps_,
      timeline.rbegin()->first - kPruneSteps - stage1_steps_);

  // ---- 20 kill moments drawn over the run, in order; a few aimed at a checkpoint write
  std::mt19937 rng(20261130);
  std::vector<double> moments(kKills);
  for (auto& m : moments)
    m = std::uniform_real_distribution<double>(0.0, ref_seconds * 0.97)(rng);
  std::sort(moments.begin(), moments.end());
  std::set<int> at_checkpoint;
  while (static_cast<int>(at_checkpoint.size()) < kCheckpointKills) {
    const int k = std::uniform_int_distribution<int>(0, kKills - 1)(rng);
    const double m = moments[static_cast<size_t>(k)];  // after start-up, a checkpoint to come
    if (m > timeline.begin()->second && m < std::prev(timeline.end(), 8)->second)
      at_checkpoint.insert(k);
  }

  std::map<std::string, int> per_stage;
  int kills = 0, resumes = 0, attempts = 0;
  bool finished = false;
  QElapsedTimer chain;
  chain.start();
  while (!finished) {
    QVERIFY2(++attempts <= 3 * kKills, "the chain does not end");
    const bool resume = fs::exists(ckpt / "latest" / "state.json");
    QStringList a = args(out);
    if (resume) {
      a << "--resume" << QString::fromStdString(ckpt.string());
      ++resumes;
    }
    // The last run's metrics would read as this one's until it replaces them.
    fs::remove(run_dir / "metrics.jsonl");
    QProcess p;
    p.start(LORASHEAR_CLI_PATH, a);
    QVERIFY(p.waitForStarted());
    const qint64 pid = p.processId();
    QElapsedTimer since_start;
    since_start.start();

    if (kills == kKills) {  // the last run is left to finish
      QVERIFY(p.waitForFinished(300000));
      QVERIFY2(p.exitStatus() == QProcess::NormalExit && p.exitCode() == 0,
               p.readAllStandardError().constData());
      finished = true;
      break;
    }

    // Where this kill's moment is in the uninterrupted run: before the first step (a delay from
    // the start), or `extra` seconds after some step's line.
    const double moment = moments[static_cast<size_t>(kills)];
    int target = 0;
    double extra = moment;
    for (const auto& [progress, t] : timeline)
      if (t <= moment) {
        target = progress;
        extra = moment - t;
      }
    const bool aim_checkpoint = at_checkpoint.count(kills) > 0;
    bool died = false;
    std::string where;
    bool in_checkpoint_write = false;
    const auto poll = [&] {
      if (p.waitForFinished(0) || p.state() == QProcess::NotRunning) died = true;
      return died;
    };
    // Wait for the target step (the resumed run starts after its checkpoint: any later step).
    if (target > 0)
      while (!poll() && progress_of(last_metrics(run_dir)) < target &&
             since_start.elapsed() < 120000)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const auto until = std::chrono::steady_clock::now() +
                       std::chrono::microseconds(static_cast<int64_t>(extra * 1e6));
    if (!aim_checkpoint) {
      while (!poll() && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::microseconds(500));
    } else {
      // The next checkpoint being written by this process: its staging folder has appeared.
      while (!poll() && since_start.elapsed() < 120000) {
        bool staging = false;
        for (const auto& d : {ckpt, ckpt / "recovery"}) {
          std::error_code ec;
          for (const auto& e : fs::directory_iterator(d, ec))
            if (owned_by(e.path(), pid) && e.path().filename().string().rfind(".latest.", 0) == 0)
              staging = true;
        }
        if (staging) break;
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    }
    if (!died) ::kill(static_cast<pid_t>(pid), SIGKILL);
    QVERIFY(p.waitForFinished(30000));
    if (died || p.exitStatus() == QProcess::NormalExit) {
      // It ended before the kill: only the last run may, and then the chain is over.
      QVERIFY2(p.exitStatus() == QProcess::NormalExit && p.exitCode() == 0,
               p.readAllStandardError().constData());
      qInfo("run %d finished before its kill at %.2f s", attempts, moment);
      finished = true;
      break;
    }
    ++kills;

    // Which stage it was in: a checkpoint being written (its staging folder is left), else the
    // last line of its metrics.
    for (const auto& s : staging_folders(ckpt))
      if (owned_by(s, pid)) in_checkpoint_write = true;
    const json last = last_metrics(run_dir);
    const int progress = progress_of(last);
    if (in_checkpoint_write)
      where = "checkpoint writes";
    else if (last.is_null())
      where = "start-up";
    else if (last.value("kind", "") == "lhspg")
      where = progress < kPruneSteps ? "pruning" : "pruned-model evaluation";
    else if (last.value("stage", 0) == 1)
      where = "recovery stage 1";
    else if (last.value("stage_step", 0) < last.value("stage_total", 0))
      where = "recovery stage 2";
    else
      where = "final save";
    ++per_stage[where];
    qInfo("kill %2d at %.3f s after start (run moment %.2f s%s): %s, last step %d%s", kills,
          since_start.elapsed() / 1000.0, moment, aim_checkpoint ? ", aimed at a checkpoint" : "",
          where.c_str(), progress, resume ? " (a resumed run)" : "");

    // Once at its first step, the run killed had swept what the runs killed before it left: the
    // output's staging folders (when it staged its own) and the checkpoints' (when it resumed,
    // or removed the old checkpoints when it did not): only its own are left.
    if (!last.is_null())
      for (const auto& s : staging_folders(dir_))
        QVERIFY2(owned_by(s, pid), ("not swept: " + s.string()).c_str());
    if (fs::exists(out_p / "pruning_report.json")) {  // killed after the output was in place
      finished = true;
      break;
    }
  }
  const double chain_seconds = chain.elapsed() / 1000.0;

  // ---- the same files, byte for byte (the report without its timings)
  std::set<std::string> names_ref, names_out;
  for (const auto& e : fs::directory_iterator(ref.toStdString()))
    names_ref.insert(e.path().filename().string());
  for (const auto& e : fs::directory_iterator(out_p))
    names_out.insert(e.path().filename().string());
  QCOMPARE(names_out, names_ref);
  for (const auto& n : names_ref) {
    const std::string a = test::read_all(fs::path(ref.toStdString()) / n),
                      b = test::read_all(out_p / n);
    if (n == "pruning_report.json")
      QVERIFY2(without_timings(json::parse(a)) == without_timings(json::parse(b)),
               (n + ": " +
                first_difference(without_timings(json::parse(a)), without_timings(json::parse(b))))
                   .c_str());
    else
      QVERIFY2(a == b, ("differs from the uninterrupted run: " + n).c_str());
  }
  QVERIFY2(!fs::exists(ckpt), "the checkpoints outlived the finished run");
  // The live record counts the run's steps, not the last process's (a follower's step axis).
  QCOMPARE(last_recovery_step(run_dir), last_recovery_step(ref.toStdString() + ".run"));
  const auto left = staging_folders(dir_);
  QVERIFY2(left.empty(),
           ("staging folder left: " + (left.empty() ? "" : left[0].string())).c_str());

  std::string summary;
  for (const auto& [stage, n] : per_stage)
    summary += (summary.empty() ? "" : ", ") + std::to_string(n) + " in " + stage;
  qInfo("%d kills: %s; resumed %d times (%d runs, %.1f s); outputs identical", kills,
        summary.c_str(), resumes, attempts, chain_seconds);
  QCOMPARE(kills, kKills);
}

QTEST_GUILESS_MAIN(TestKillResume)
#include "test_kill_resume.moc"
