// make_demo_model: a tiny run on generated stories learns (loss falls), writes a model that loads
// with its tokenizer, and a cancel or a refused overwrite leaves nothing behind.
#include <QtTest>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>

#include "lorashear/errors.h"
#include "lorashear/io/loader.h"
#include "lorashear/train/demo.h"
#include "test_support.h"

using namespace lorashear;
namespace fs = std::filesystem;

namespace {

// Repetitive little stories, blank-line separated like TinyStories: learnable in a few steps and
// rich enough for a 300-piece BPE vocabulary.
std::string generated_stories() {
  const char* names[] = {"Lily", "Tom", "Sue", "Max", "Ben", "Mia", "Sam", "Zoe"};
  const char* animals[] = {"cat", "dog", "bird", "fish", "frog", "duck", "bear", "fox"};
  const char* adjs[] = {"big", "small", "happy", "red", "shiny", "soft", "funny", "sleepy"};
  const char* places[] = {"park", "garden", "forest", "house", "river", "school"};
  std::mt19937 rng(7);
  auto pick = [&](auto& arr) { return arr[rng() % (sizeof(arr) / sizeof(arr[0]))]; };
  std::string out;
  for (int i = 0; i < 400; ++i) {
    const std::string name = pick(names), animal = pick(animals), adj = pick(adjs);
    out += "Once upon a time, there was a " + adj + " " + animal + " named " + name + ". " + name +
           " liked to play in the " + pick(places) + ". One day, " + name + " saw a " + pick(adjs) +
           " " + pick(animals) + ". They became friends and played all day.\n\n";
  }
  return out;
}

DemoOptions tiny_options() {
  DemoOptions o;
  o.vocab_size = 300;
  o.hidden_size = 32;
  o.n_layers = 2;
  o.n_heads = 2;
  o.n_kv_heads = 1;
  o.head_dim = 16;
  o.intermediate_size = 64;
  o.max_position_embeddings = 64;
  o.seq_len = 32;
  o.batch_size = 8;
  o.steps = 30;
  o.warmup_steps = 5;
  o.lr = 1e-2;
  return o;
}

// Files whose names start with the output's name (its temporary siblings included).
int leftovers(const fs::path& parent, const std::string& name) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(parent))
    if (e.path().filename().string().find(name) != std::string::npos) ++n;
  return n;
}

}  // namespace

class TestDemoTrainer : public QObject {
  Q_OBJECT
 private:
  QTemporaryDir tmp_;
  fs::path root_, text_;

 private slots:
  void initTestCase() {
    QVERIFY(tmp_.isValid());
    root_ = tmp_.path().toStdString();
    text_ = root_ / "stories.txt";
    std::ofstream(text_) << generated_stories();
  }

  void trainsSavesAndLoads() {
    const fs::path out = root_ / "demo";
    std::vector<DemoStep> steps;
    int progress_reports = 0;
    TaskContext ctx;
    ctx.on_progress = [&](const Progress&) { ++progress_reports; };
    auto r = make_demo_model(text_.string(), out.string(), tiny_options(), &ctx,
                             [&](const DemoStep& s) { steps.push_back(s); });

    QCOMPARE(steps.size(), size_t(30));
    QCOMPARE(steps.back().step, int64_t(30));
    QVERIFY(progress_reports >= 30);
    // Starts near ln(300) = 5.7 (uniform guess) and must fall by well over a nat in 30 steps.
    QVERIFY2(std::abs(r.initial_loss - std::log(300.0)) < 0.5,
             qPrintable(QString::number(r.initial_loss)));
    QVERIFY2(r.final_loss < r.initial_loss - 1.5,
             qPrintable(QString("initial %1 final %2").arg(r.initial_loss).arg(r.final_loss)));
    QVERIFY(std::isfinite(r.eval_loss));
    QVERIFY(r.parameters > 0);

    QVERIFY(fs::exists(out / "config.json"));
    QVERIFY(fs::exists(out / "tokenizer.model"));
    QCOMPARE(leftovers(root_, ".demo"), 0);  // no temporary directory left

    LoadOptions lo;
    lo.require_tokenizer = true;
    auto loaded = load_model(out.string(), lo);
    QCOMPARE(loaded.model->num_parameters(), r.parameters);
    QCOMPARE(loaded.model->config().n_layers(), int64_t(2));
    QCOMPARE(loaded.model->config().layers[0].n_kv_heads, int64_t(1));
    auto& tok = *loaded.tokenizer;
    QCOMPARE(tok.vocab_size(), int64_t(300));
    QCOMPARE(tok.bos_id(), int64_t(1));
    QCOMPARE(tok.eos_id(), int64_t(2));
    QCOMPARE(tok.unk_id(), int64_t(0));
    for (std::string s : {"Once upon a time, there was a big dog named Max.",
                          "  two spaces,\nnew lines\n and \xf0\x9f\x90\xb1 bytes  "})
      QCOMPARE(QString::fromStdString(tok.decode(tok.encode(s))), QString::fromStdString(s));

    // The same options and seed give the same model (deterministic training).
    auto again = make_demo_model(text_.string(), (root_ / "demo2").string(), tiny_options());
    QCOMPARE(again.final_loss, r.final_loss);
  }

  void refusesToOverwrite() {
    const fs::path out = root_ / "existing";
    fs::create_directories(out);
    std::ofstream(out / "keep.txt") << "x";
    QVERIFY_THROWS_EXCEPTION(UsageError,
                             make_demo_model(text_.string(), out.string(), tiny_options()));
    QVERIFY(fs::exists(out / "keep.txt"));
  }

  void preRaisedCancelLeavesNothing() {
    const fs::path out = root_ / "cancelled";
    std::atomic<bool> cancel{true};
    TaskContext ctx;
    ctx.cancel = &cancel;
    QVERIFY_THROWS_EXCEPTION(CancelledError,
                             make_demo_model(text_.string(), out.string(), tiny_options(), &ctx));
    QCOMPARE(leftovers(root_, "cancelled"), 0);
  }

  void cancelDuringTrainingLeavesNothing() {
    const fs::path out = root_ / "midway";
    std::atomic<bool> cancel{false};
    TaskContext ctx;
    ctx.cancel = &cancel;
    int64_t last = 0;
    QVERIFY_THROWS_EXCEPTION(
        CancelledError,
        make_demo_model(text_.string(), out.string(), tiny_options(), &ctx, [&](const DemoStep& s) {
          last = s.step;
          if (s.step == 10) cancel = true;
        }));
    QCOMPARE(last, int64_t(10));
    QCOMPARE(leftovers(root_, "midway"), 0);
  }

  void missingTextIsInputError() {
    QVERIFY_THROWS_EXCEPTION(InputError, make_demo_model((root_ / "nope.txt").string(),
                                                         (root_ / "x").string(), tiny_options()));
  }
};

QTEST_GUILESS_MAIN(TestDemoTrainer)
#include "test_demo_trainer.moc"
