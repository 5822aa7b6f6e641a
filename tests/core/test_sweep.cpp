// Method × ratio sweeps (lorashear/prune/sweep.h) on stories260K: every run pruned, evaluated and
// tabulated; a cancel keeps the finished runs on disk and the same call resumes with only the
// missing ones; other settings in the same folder and impossible options are refused.
#include <QtTest>

#include <QTemporaryDir>

#include <filesystem>

#include "lorashear/errors.h"
#include "lorashear/io/json.h"
#include "lorashear/prune/sweep.h"
#include "lorashear/runtime.h"
#include "test_support.h"

using namespace lorashear;
namespace fs = std::filesystem;

namespace {

SweepOptions small_sweep(const QString& out) {
  SweepOptions o;
  o.model = test::shared_path("models/stories260K/stories260K.bin").string();
  o.tokenizer = test::shared_path("models/stories260K/tok512.model").string();
  o.text = test::shared_path("data/text/tinystories_val_subset.txt").string();
  o.ratios = {0.2, 0.5};
  o.methods = {"magnitude", "random"};
  o.prune.lhspg.split_budget(20);
  o.prune.eval_windows = 4;
  o.prune.analyze = false;
  o.tasks = {"arc_easy"};
  o.task_data = {test::shared_path("data/eval").string()};
  o.task_options.limit = 12;
  o.speed.prompt = 32;
  o.speed.generate = 4;
  o.speed.reps = 1;
  o.speed.warmup = 0;
  o.out_dir = out.toStdString();
  return o;
}

}  // namespace

class TestSweep : public QObject {
  Q_OBJECT

 private slots:
  void initTestCase() {
    LORASHEAR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
    LORASHEAR_REQUIRE_SHARED("data/eval/arc_easy.jsonl");
    init_runtime();
  }

  void cancelKeepsFinishedRunsAndResumes() {
    QTemporaryDir dir;
    const auto out = dir.filePath("sweep");
    auto o = small_sweep(out);
    std::atomic<bool> cancel{false};
    TaskContext ctx;
    ctx.cancel = &cancel;
    int updates = 0;
    // Cancel once the first run is on disk.
    QVERIFY_THROWS_EXCEPTION(CancelledError, run_sweep(o, &ctx, [&](const nlohmann::json& r) {
                               ++updates;
                               if (!sweep_missing(r).empty() && sweep_missing(r).size() < 4)
                                 cancel = true;
                             }));
    auto partial = io::read_json_file(out.toStdString() + "/results.json");
    QCOMPARE(sweep_missing(partial).size(), size_t(3));
    QCOMPARE(partial["runs"][0]["status"].get<std::string>(), std::string("done"));
    QVERIFY(fs::exists(out.toStdString() + "/runs/magnitude-0.20/model/config.json"));
    const auto first_time =
        fs::last_write_time(out.toStdString() + "/runs/magnitude-0.20/result.json");

    // A model folder a killed run was writing is cleared when the run starts again.
    const auto stale = out.toStdString() + "/runs/random-0.50/.model.tmp-999999";
    fs::create_directories(stale);
    test::write_all(stale + "/model.safetensors", "partial");
    // The same call again: only the missing runs are computed.
    cancel = false;
    std::vector<std::string> statuses;
    const auto done = run_sweep(o, &ctx);
    QVERIFY(sweep_missing(done).empty());
    QVERIFY(!fs::exists(stale));
    QCOMPARE(fs::last_write_time(out.toStdString() + "/runs/magnitude-0.20/result.json"),
             first_time);
    for (const auto& r : done["runs"]) {
      QCOMPARE(r["status"].get<std::string>(), std::string("done"));
      QVERIFY(std::abs(r["removed_ratio"].get<double>() - r["ratio"].get<double>()) < 0.05);
      QVERIFY(r["ppl"].get<double>() > done["dense"]["ppl"].get<double>());
      QVERIFY(r["tasks"]["arc_easy"]["items"].get<int>() == 12);
      QVERIFY(r["prefill_speedup"].get<double>() > 0);
    }
    // The files: the paper table, the CSV.
    const auto md = QString::fromStdString(test::read_all(out.toStdString() + "/results.md"));
    QVERIFY2(md.contains("| Dense | 0% |") && md.contains("| magnitude | 50% |") &&
                 md.contains("| random | 20% |") && md.contains("arc_easy") &&
                 md.contains("Prefill ×"),
             qPrintable(md));
    const auto csv = QString::fromStdString(test::read_all(out.toStdString() + "/results.csv"));
    QCOMPARE(csv.count('\n'), 6);  // header, dense, 4 runs
    QVERIFY(csv.startsWith("id,method,ratio,status,parameters,removed_ratio,ppl,arc_easy_acc"));
    QVERIFY(csv.contains("\nrandom-0.50,random,0.5,done,"));

    // Other settings in the same folder are refused, naming what differs.
    auto other = o;
    other.prune.seed = 7;
    try {
      run_sweep(other);
      QFAIL("a sweep with other settings was resumed");
    } catch (const UsageError& e) {
      QVERIFY2(QString(e.what()).contains("seed"), e.what());
    }
  }

  void refusesImpossibleOptions() {
    QTemporaryDir dir;
    auto o = small_sweep(dir.filePath("s"));
    o.ratios = {0.2, 1.2};
    QVERIFY_THROWS_EXCEPTION(UsageError, run_sweep(o));
    o.ratios = {0.2};
    o.methods = {"obs"};
    QVERIFY_THROWS_EXCEPTION(UsageError, run_sweep(o));
    o.methods = {"random", "random"};
    QVERIFY_THROWS_EXCEPTION(UsageError, run_sweep(o));
    o.methods = {"random"};
    o.tasks = {"no_such_task"};
    QVERIFY_THROWS_EXCEPTION(UsageError, run_sweep(o));
    QVERIFY(!fs::exists(dir.filePath("s").toStdString()));  // nothing written for a typo
    // A wrong model path: corrected, the same folder is accepted (no settings were recorded).
    o.tasks = {"arc_easy"};
    o.task_options.limit = 2;
    o.bench = false;
    o.model = dir.filePath("missing.bin").toStdString();
    QVERIFY_THROWS_EXCEPTION(InputError, run_sweep(o));
    o.model = test::shared_path("models/stories260K/stories260K.bin").string();
    o.prune.lhspg.split_budget(12);
    const auto r = run_sweep(o);
    QVERIFY(sweep_missing(r).empty());
  }
};

QTEST_GUILESS_MAIN(TestSweep)
#include "test_sweep.moc"
