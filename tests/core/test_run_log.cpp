// A run's live record (OUT.run): the writer's run.json and metrics.jsonl, and the follower that
// reads only what was appended — a truncated last line waits for its end, a malformed line is
// reported as file:line, a file that shrank is read again, and a 1M-line file is read in one go
// (the time is printed).
#include <QtTest>

#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "lorashear/errors.h"
#include "lorashear/prune/lhspg.h"
#include "lorashear/recover/recovery.h"
#include "lorashear/run_log.h"

using namespace lorashear;
namespace fs = std::filesystem;

class TestRunLog : public QObject {
  Q_OBJECT
  QTemporaryDir tmp_;

  std::string path(const std::string& name) const {
    return tmp_.filePath(name.c_str()).toStdString();
  }

  static void append(const std::string& file, const std::string& text) {
    std::ofstream(file, std::ios::app | std::ios::binary) << text;
  }

 private slots:
  void writerRecordsStepsAndStatus() {
    const auto dir = run_dir_for(path("out") + "/");
    QCOMPARE(QString::fromStdString(dir), QString::fromStdString(path("out") + ".run"));
    {
      RunLogWriter log(dir, {{"kind", "prune"}, {"model", "/m"}});
      auto info = nlohmann::json::parse(std::ifstream(dir + "/run.json"));
      QCOMPARE(info["status"].get<std::string>(), std::string("running"));
      QCOMPARE(info["world_size"].get<int>(), 1);
      QVERIFY(info["pid"].get<int64_t>() > 0);
      QCOMPARE(info["model"].get<std::string>(), std::string("/m"));
      LhspgMetrics m;
      m.step = 1;
      m.total_steps = 3;
      m.loss = 2.5;
      m.sparsity = {{"L0.attn", 0.0}, {"L0.mlp", 0.25}};
      log.lhspg(m);
      m.step = 2;
      log.lhspg(m);  // same sparsity: not repeated
      RecoveryMetrics r;
      r.stage = 1;
      r.step = 1;
      r.loss = 1.5;
      r.category_loss = {{"a \"quoted\" name", 3.0}};
      r.weights = {{"a \"quoted\" name", 1.0}};
      log.recovery(r, 3);
      RunFollower f(dir);
      QCOMPARE(log.dir(), f.dir());
      QCOMPARE(f.status(), std::string("running"));
      std::vector<std::string> kinds;
      std::vector<double> steps;
      int sparsity = 0;
      std::string category;
      QCOMPARE(f.poll([&](const RunRecord& rec) {
        kinds.emplace_back(rec.kind);
        steps.push_back(rec.step);
        QVERIFY(rec.time >= 0);
        for (const auto& n : rec.nested) {
          if (n.object == "sparsity") ++sparsity;
          if (n.object == "category_loss") category = n.key;
        }
        if (rec.kind == "lhspg") QCOMPARE(rec.value("loss"), 2.5);
        if (rec.kind == "recovery") QCOMPARE(rec.value("stage_step"), 1.0);
      }),
               int64_t{3});
      QCOMPARE(kinds, (std::vector<std::string>{"lhspg", "lhspg", "recovery"}));
      QCOMPARE(steps, (std::vector<double>{1, 2, 4}));
      QCOMPARE(sparsity, 2);
      QCOMPARE(category, std::string("a \"quoted\" name"));
      // Nothing new: nothing read.
      QCOMPARE(f.poll([](const RunRecord&) {}), int64_t{0});
    }
    // Destroyed without finish (an exception unwinding): failed.
    auto info = nlohmann::json::parse(std::ifstream(dir + "/run.json"));
    QCOMPARE(info["status"].get<std::string>(), std::string("failed"));
    QVERIFY(!info["ended"].is_null());

    RunLogWriter log(dir, {{"kind", "prune"}});
    QVERIFY_THROWS_EXCEPTION(CancelledError, run_logged(log, [] { throw CancelledError(); }));
    QCOMPARE(RunFollower(dir).status(), std::string("cancelled"));
    RunLogWriter log2(dir, {{"kind", "prune"}});
    QVERIFY_THROWS_EXCEPTION(InputError,
                             run_logged(log2, [] { throw InputError("text.txt: too short"); }));
    info = nlohmann::json::parse(std::ifstream(dir + "/run.json"));
    QCOMPARE(info["status"].get<std::string>(), std::string("failed"));
    QCOMPARE(info["error"].get<std::string>(), std::string("text.txt: too short"));
    RunLogWriter log3(dir, {{"kind", "prune"}});
    run_logged(log3, [] {});
    QCOMPARE(RunFollower(dir).status(), std::string("finished"));
    // A rank other than 0 writes nothing.
    RunLogWriter off(path("rank1.run"), {}, /*enabled=*/false);
    QVERIFY(!fs::exists(path("rank1.run")));
  }

  void truncatedLastLineWaitsForItsEnd() {
    const auto file = path("t/metrics.jsonl");
    fs::create_directories(path("t"));
    append(file,
           "{\"kind\":\"lhspg\",\"step\":1,\"time\":0.5,\"loss\":3}\n{\"kind\":\"lhspg\",\"st");
    RunFollower f(file);
    std::vector<double> losses;
    auto take = [&](const RunRecord& r) { losses.push_back(r.value("loss")); };
    QCOMPARE(f.poll(take), int64_t{1});
    QCOMPARE(f.poll(take), int64_t{0});  // still mid-line: not an error
    append(file, "ep\":2,\"time\":1,\"loss\":2.5}\n");
    QCOMPARE(f.poll(take), int64_t{1});
    QCOMPARE(losses, (std::vector<double>{3, 2.5}));
    QCOMPARE(f.lines(), int64_t{2});
    QCOMPARE(f.status(), std::string("unknown"));  // no run.json
    // The file replaced by a shorter one (a new run in the folder): read from the start.
    { std::ofstream(file, std::ios::trunc) << "{\"step\":1,\"loss\":9}\n"; }
    QCOMPARE(f.poll(take), int64_t{1});
    QVERIFY(f.restarted());
    QCOMPARE(losses.back(), 9.0);
  }

  void malformedLineIsReportedWithFileAndLine() {
    const auto file = path("bad/metrics.jsonl");
    fs::create_directories(path("bad"));
    append(file, "{\"step\":1,\"loss\":1}\n\n{\"step\":2,\"loss\":}\n{\"step\":3,\"loss\":3}\n");
    RunFollower f(file);
    int n = 0;
    try {
      f.poll([&](const RunRecord&) { ++n; });
      QFAIL("no error");
    } catch (const InputError& e) {
      const std::string what = e.what();
      qInfo("%s", what.c_str());
      QVERIFY2(what.rfind(file + ":3: ", 0) == 0, what.c_str());
    }
    QCOMPARE(n, 2);  // the lines around it are read
    append(file, "{\"step\":4}\n");
    QCOMPARE(f.poll([&](const RunRecord& r) { QCOMPARE(r.step, 4.0); }), int64_t{1});

    RunRecord r;
    QVERIFY(!parse_run_record("not json", r).empty());
    QVERIFY(!parse_run_record("[1,2]", r).empty());
    QVERIFY(!parse_run_record("{\"loss\":1}", r).empty());  // no step
    QVERIFY(!parse_run_record("{\"step\":1} x", r).empty());
    QVERIFY(!parse_run_record("{\"step\":1,\"a\":\"unterminated}", r).empty());
    QVERIFY(parse_run_record("{\"step\":1,\"a\":[1,{\"b\":[]}],\"c\":null,\"d\":true}", r).empty());
    QCOMPARE(r.value("d"), 1.0);
    QVERIFY_THROWS_EXCEPTION(InputError, RunFollower(path("nothing-here")));
  }

  void millionLines() {
    const auto file = path("big/metrics.jsonl");
    fs::create_directories(path("big"));
    {
      std::ofstream out(file, std::ios::binary);
      std::string line;
      for (int i = 1; i <= 1000000; ++i) {
        line = "{\"kind\":\"lhspg\",\"step\":" + std::to_string(i) +
               ",\"time\":" + std::to_string(i * 0.01) +
               ",\"total\":1000000,\"period\":3,\"loss\":2.345678,\"lr\":0.001,\"redundant\":120,"
               "\"zeroed\":64,\"scheduled\":96,\"target\":240,\"lambda_mean\":0.01234567,"
               "\"lambda_max\":0.0456789,\"tokens_per_second\":1234.567";
        if (i % 100 == 1)
          line += ",\"sparsity\":{\"L0.attn\":0.25,\"L0.mlp\":0.5,\"L1.attn\":0,\"L1.mlp\":0.125}";
        line += "}\n";
        out << line;
      }
    }
    const auto bytes = fs::file_size(file);
    RunFollower f(file);
    double sum = 0;
    const auto t0 = std::chrono::steady_clock::now();
    const auto n = f.poll([&](const RunRecord& r) { sum += r.value("loss"); });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    qInfo("1,000,000 lines (%.0f MB) read and parsed in %.3f s", static_cast<double>(bytes) / 1e6,
          s);
    QCOMPARE(n, int64_t{1000000});
    QVERIFY(sum > 0);
    QVERIFY2(s < 20, "far slower than the 2 s the app needs");  // generous: shared machines
  }
};

QTEST_GUILESS_MAIN(TestRunLog)
#include "test_run_log.moc"
