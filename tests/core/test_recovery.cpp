// Dynamic knowledge recovery: categories from files / folders / JSONL sources, lazy reading with
// file:line errors, deterministic packing and shuffling (resumable), Alpaca records with the loss
// on the response only, the sampling weights, the trainer's schedule, and recovery runs — a
// synthetic two-domain case, reproducibility, and resume after an interruption.
#include <QtTest>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <random>

#include "checkpoint_writers.h"
#include "lorashear/data/corpus.h"
#include "lorashear/data/instruct.h"
#include "lorashear/errors.h"
#include "lorashear/io/loader.h"
#include "lorashear/model/lora.h"
#include "lorashear/prune/subnet.h"
#include "lorashear/recover/recovery.h"
#include "lorashear/tokenizer/tokenizer.h"
#include "lorashear/train/trainer.h"
#include "lorashear/train/windows.h"
#include "test_support.h"

using namespace lorashear;
namespace fs = std::filesystem;

namespace {

std::shared_ptr<const Tokenizer> demo_tokenizer() {
  static std::shared_ptr<const Tokenizer> tok =
      load_model(test::source_path("resources/demo-model").string()).tokenizer;
  return tok;
}

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

// Synthetic domains the demo tokenizer encodes: "stories" from a small grammar, and counting.
std::string grammar_text(int sentences, uint64_t seed) {
  const char* who[] = {"the cat", "the dog", "a girl", "a boy", "the bird", "mom"};
  const char* verb[] = {"sees", "likes", "finds", "helps", "hugs", "calls"};
  std::mt19937 rng(static_cast<unsigned>(seed));
  std::string out;
  for (int i = 0; i < sentences; ++i) {
    out += std::string(who[rng() % 6]) + " " + verb[rng() % 6] + " " + who[rng() % 6] + ". ";
    if (i % 8 == 7) out += "\n\n";
  }
  return out;
}

std::string counting_text(int runs, uint64_t seed) {
  const char* n[] = {"one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"};
  std::mt19937 rng(static_cast<unsigned>(seed));
  std::string out;
  for (int r = 0; r < runs; ++r) {
    for (int i = 0, s = static_cast<int>(rng() % 10); i < 10; ++i)
      out += std::string(n[(s + i) % 10]) + " ";
    out += r % 4 == 3 ? "\n\n" : "\n";
  }
  return out;
}

ModelConfig small_config() {
  auto c = ModelConfig::uniform(512, 48, 2, 4, 2, 128, 12);
  c.max_position_embeddings = 128;
  return c;
}

bool same_tensors(LlamaModelImpl& a, LlamaModelImpl& b) {
  const auto pa = a.all_parameters(), pb = b.all_parameters();
  if (pa.size() != pb.size()) return false;
  for (const auto& [name, t] : pa) {
    auto it = pb.find(name);
    if (it == pb.end() || !torch::equal(t, it->second)) return false;
  }
  return true;
}

}  // namespace

class TestRecovery : public QObject {
  Q_OBJECT

  QTemporaryDir dir_;
  fs::path root() const { return fs::path(dir_.path().toStdString()); }
  std::string grammar_, counting_;

 private slots:
  void initTestCase() {
    QVERIFY(dir_.isValid());
    grammar_ = (root() / "grammar.txt").string();
    counting_ = (root() / "counting.txt").string();
    write(grammar_, grammar_text(1500, 1));
    write(counting_, counting_text(900, 2));
  }

  // ---- data

  void categoriesFromFilesFoldersAndSources() {
    write(root() / "folder/a.txt", "first file\n");
    write(root() / "folder/sub/b.jsonl", R"({"text": "second"})"
                                         "\n");
    write(root() / "folder/ignored.bin", "x");
    write(root() / "mixed.jsonl", R"({"text": "a", "source": "web"})"
                                  "\n"
                                  R"({"text": "b", "source": "books"})"
                                  "\n"
                                  R"({"text": "c", "source": "web"})"
                                  "\n");
    const auto cats = discover_categories(
        {grammar_, (root() / "folder").string(), (root() / "mixed.jsonl").string(), grammar_});
    QCOMPARE(cats.size(), size_t(5));
    QCOMPARE(QString::fromStdString(cats[0].name), QString("grammar"));
    QCOMPARE(QString::fromStdString(cats[1].name), QString("folder"));
    QCOMPARE(cats[1].files.size(), size_t(2));  // .txt and .jsonl, not .bin
    QCOMPARE(QString::fromStdString(cats[2].name), QString("web"));
    QCOMPARE(QString::fromStdString(cats[3].name), QString("books"));
    QCOMPARE(QString::fromStdString(cats[4].name), QString("grammar#2"));
    DocumentReader web(cats[2], {});
    std::string doc, all;
    while (web.next(doc))
      all += doc + "|";
    QCOMPARE(QString::fromStdString(all), QString("a|c|"));
  }

  void badDomainsAreNamed() {
    auto refused = [](const std::vector<std::string>& specs, const QString& needle) {
      try {
        discover_categories(specs);
      } catch (const Error& e) {
        return QString(e.what()).contains(needle);
      }
      return false;
    };
    QVERIFY(refused({(root() / "nowhere.txt").string()}, "nowhere.txt"));
    fs::create_directories(root() / "empty");
    QVERIFY(refused({(root() / "empty").string()}, "no text files"));
    write(root() / "half.jsonl", R"({"text": "a", "source": "web"})"
                                 "\n"
                                 R"({"text": "b"})"
                                 "\n");
    QVERIFY(refused({(root() / "half.jsonl").string()}, "some records have"));
    QVERIFY(refused({}, "--domain"));
  }

  void malformedLinesNameFileAndLine() {
    const auto bad = (root() / "bad.jsonl").string();
    write(bad, R"({"text": "one"})"
               "\n"
               R"({"text": "two"})"
               "\n"
               "{not json\n"
               R"({"text": "four"})"
               "\n");
    Category c{"bad", {bad}, {}};
    DocumentReader strict(c, {});
    std::string doc;
    QVERIFY(strict.next(doc));
    QVERIFY(strict.next(doc));
    try {
      strict.next(doc);
      QFAIL("malformed line accepted");
    } catch (const InputError& e) {
      QVERIFY2(QString(e.what()).contains("bad.jsonl: line 3") &&
                   QString(e.what()).contains("--skip-bad-lines"),
               e.what());
    }
    CorpusOptions skip;
    skip.skip_bad_lines = true;
    DocumentReader lenient(c, skip);
    int n = 0;
    while (lenient.next(doc))
      ++n;
    QCOMPARE(n, 3);
    QCOMPARE(lenient.skipped_lines(), int64_t(1));
  }

  void packedStreamsAreDeterministicAndResumable() {
    PackingOptions p;
    p.seq_len = 16;
    p.validation = 3;
    p.shuffle_buffer = 32;
    p.queue_capacity = 8;
    p.seed = 7;
    const Category c{"grammar", {grammar_}, {}};
    CategoryStream a(c, demo_tokenizer(), p), b(c, demo_tokenizer(), p);
    QCOMPARE(a.validation().size(), size_t(3));
    QVERIFY(a.validation() == b.validation());
    std::vector<std::vector<int64_t>> first;
    for (int i = 0; i < 2000; ++i) {  // well past one epoch (~650 sequences)
      auto x = a.next();
      QCOMPARE(static_cast<int64_t>(x.size()), p.seq_len + 1);
      QVERIFY(x == b.next());
      first.push_back(std::move(x));
    }
    QVERIFY(a.epoch() >= 2);
    // No training sequence is a validation sequence (the first epoch).
    for (int i = 0; i < 600; ++i)
      for (const auto& v : a.validation())
        QVERIFY(first[static_cast<size_t>(i)] != v);
    // Resuming after 1234 sequences continues exactly.
    CategoryStream resumed(c, demo_tokenizer(), p, 1234);
    for (int i = 1234; i < 1300; ++i)
      QVERIFY(resumed.next() == first[static_cast<size_t>(i)]);
    // Another seed, another order.
    p.seed = 8;
    CategoryStream other(c, demo_tokenizer(), p);
    int same = 0;
    for (int i = 0; i < 50; ++i)
      same += other.next() == first[static_cast<size_t>(i)];
    QVERIFY(same < 10);
    // Too little text for validation plus training.
    const auto tiny = (root() / "tiny.txt").string();
    write(tiny, "the cat sees the dog.\n");
    try {
      CategoryStream t(Category{"tiny", {tiny}, {}}, demo_tokenizer(), p);
      QFAIL("a tiny category accepted");
    } catch (const InputError& e) {
      QVERIFY2(QString(e.what()).contains("tiny.txt") && QString(e.what()).contains("validation"),
               e.what());
    }
  }

  // ---- instruction data

  void alpacaRecordsAndTemplate() {
    const auto arr = (root() / "inst.json").string();
    write(arr, R"([{"instruction": "Add.", "input": "2 and 3", "output": "5"},
                   {"instruction": "Say hi.", "output": "hi"}])");
    const auto recs = load_instructions(arr);
    QCOMPARE(recs.size(), size_t(2));
    QVERIFY(alpaca_prompt(recs[0]).find("### Input:\n2 and 3\n\n### Response:\n") !=
            std::string::npos);
    QVERIFY(alpaca_prompt(recs[1]).find("### Input") == std::string::npos);
    QVERIFY(alpaca_prompt(recs[1]).rfind("### Instruction:\nSay hi.\n\n### Response:\n") !=
            std::string::npos);
    auto refused = [&](const std::string& name, const std::string& body, const QString& needle,
                       bool skip = false) {
      const auto p = (root() / name).string();
      write(p, body);
      CorpusOptions o;
      o.skip_bad_lines = skip;
      try {
        load_instructions(p, o);
      } catch (const InputError& e) {
        return QString(e.what()).contains(needle);
      }
      return false;
    };
    QVERIFY(refused("m.json", R"([{"instruction": "x"}])", "record 0: missing field 'output'"));
    QVERIFY(refused("m.jsonl",
                    R"({"instruction": "x", "output": "y"})"
                    "\n{oops\n",
                    "m.jsonl: line 2"));
    QVERIFY(refused("n.json", R"([{"instruction": 3, "output": "y"}])", "not a string"));
    const auto lenient = (root() / "l.jsonl").string();
    write(lenient, R"({"instruction": "x", "output": "y"})"
                   "\n{oops\n"
                   R"({"instruction": "z"})"
                   "\n");
    CorpusOptions o;
    o.skip_bad_lines = true;
    QCOMPARE(load_instructions(lenient, o).size(), size_t(1));
  }

  void lossIsOnTheResponseOnly() {
    auto tok = demo_tokenizer();
    std::vector<InstructionRecord> recs;
    for (int i = 0; i < 10; ++i)
      recs.push_back({"Count to " + std::to_string(i) + ".", i % 2 ? "slowly" : "",
                      "one two three " + std::to_string(i)});
    InstructionSet set(recs, *tok, 256, 0.2, 3);
    QCOMPARE(set.validation().size(), size_t(2));
    QCOMPARE(set.train().size(), size_t(8));
    auto batch = set.batch(0, 4);
    QCOMPARE(batch.tokens.size(0), int64_t(4));
    // Mask: 1 exactly on targets (token j + 1) that are response tokens.
    for (const auto& e : set.train()) {
      const auto one = InstructionSet::collate({&e});
      const auto len = static_cast<int64_t>(e.tokens.size());
      QVERIFY(e.prompt_tokens > 1 && e.prompt_tokens < len);
      for (int64_t j = 0; j < one.mask.size(1); ++j)
        QCOMPARE(one.mask[0][j].item<float>(),
                 j + 1 >= e.prompt_tokens && j + 1 < len ? 1.0f : 0.0f);
    }
    // Changing the prompt's tokens (all but the last, which predicts the first response token)
    // leaves the loss unchanged for a model whose logits depend on the current token only.
    auto cfg = small_config();
    LlamaModel m = test::random_model(cfg, 5);
    {
      torch::NoGradGuard g;
      for (auto& item : m->named_parameters())
        if (item.key().find("o_proj") != std::string::npos ||
            item.key().find("down_proj") != std::string::npos)
          item.value().zero_();  // every block adds zero: logits = head(norm(embed(token)))
    }
    const auto& e = set.train()[0];
    auto one = InstructionSet::collate({&e});
    const double before = masked_lm_loss(*m, one).item<double>();
    auto changed = one.tokens.clone();
    for (int64_t j = 1; j + 1 < e.prompt_tokens; ++j)
      changed[0][j] = (changed[0][j].item<int64_t>() + 37) % 512;
    const double after = masked_lm_loss(*m, InstructBatch{changed, one.mask}).item<double>();
    QCOMPARE(before, after);
    // ... while changing a response token changes it.
    auto resp = one.tokens.clone();
    resp[0][e.prompt_tokens + 1] = (resp[0][e.prompt_tokens + 1].item<int64_t>() + 37) % 512;
    QVERIFY(masked_lm_loss(*m, InstructBatch{resp, one.mask}).item<double>() != before);
  }

  // ---- weights and schedule

  void samplingWeights() {
    // delta = {1.0, 0.2, 0 (below dense)}, mean 0.4, floor 0.05 · 0.4 = 0.02.
    const auto w = sampling_weights({{"a", 3.0}, {"b", 2.2}, {"c", 1.0}},
                                    {{"a", 2.0}, {"b", 2.0}, {"c", 1.5}}, 0.05);
    const double total = 1.02 + 0.22 + 0.02;
    QVERIFY(std::abs(w.at("a") - 1.02 / total) < 1e-12);
    QVERIFY(std::abs(w.at("b") - 0.22 / total) < 1e-12);
    QVERIFY(std::abs(w.at("c") - 0.02 / total) < 1e-12);
    const auto u = sampling_weights({{"a", 1.0}, {"b", 2.0}}, {}, 0.05);
    QCOMPARE(u.at("a"), 0.5);
    QCOMPARE(u.at("b"), 0.5);
  }

  void warmupThenCosine() {
    TrainOptions o;
    o.steps = 100;
    o.lr = 1e-3;
    o.warmup = 0.1;
    o.min_lr_ratio = 0.1;
    QCOMPARE(o.lr_at(5), 5e-4);
    QCOMPARE(o.lr_at(10), 1e-3);
    QVERIFY(std::abs(o.lr_at(55) - 1e-3 * (0.1 + 0.9 * 0.5)) < 1e-12);  // halfway down
    QVERIFY(std::abs(o.lr_at(100) - 1e-4) < 1e-12);
    o.precision = "fp16";
    QVERIFY_THROWS_EXCEPTION(UsageError, o.validate());
  }

  void bf16AutocastTrainsOnTheCpu() {
    auto m = test::random_model(small_config(), 2);
    attach_lora(*m, LoraConfig{});
    TrainOptions o;
    o.steps = 3;
    o.precision = "bf16";
    LoraTrainer t(*m, o);
    QVERIFY(t.mixed_precision());
    auto batch = torch::randint(0, 512, {2, 17}, torch::kLong);
    const double fp32 = lm_loss(*m, batch).item<double>();
    const double l = t.step(1, [&](int64_t) { return lm_loss(*m, batch); });
    QVERIFY2(std::abs(l - fp32) < 0.05 * fp32, qPrintable(QString("%1 vs %2").arg(l).arg(fp32)));
  }

  // ---- recovery runs

  void twoDomainsAdaptiveSampling() {
    // A dense model trained on both synthetic domains, then pruned hard: the domain that lost
    // more gets the larger weight, and its weight falls as its loss recovers.
    auto tok = demo_tokenizer();
    RecoveryOptions o;
    o.domains = {grammar_, counting_};
    o.seq_len = 32;
    o.val_sequences = 8;
    o.seed = 4;
    auto dense = test::random_model(small_config(), 11);
    {
      RecoveryData data(o, tok);
      auto params = dense->parameters();
      torch::optim::AdamW opt(params, torch::optim::AdamWOptions(1e-2));
      dense->train();
      for (int step = 0; step < 250; ++step) {
        auto batch = torch::empty({16, 33}, torch::kLong);
        for (int b = 0; b < 16; ++b) {
          const auto s = data.streams()[static_cast<size_t>(b % 2)]->next();
          std::copy(s.begin(), s.end(), batch.data_ptr<int64_t>() + b * 33);
        }
        opt.zero_grad();
        lm_loss(*dense, batch).backward();
        opt.step();
      }
      dense->eval();
    }
    const auto dense_losses = RecoveryData(o, tok).losses(*dense, 8);
    // Prune: most MLP channels and one kv group per layer.
    const auto deps = analyze_model(*dense);
    std::vector<std::string> remove;
    for (int l = 0; l < 2; ++l) {
      remove.push_back("L" + std::to_string(l) + ".attn.kv1");
      for (int c = 0; c < 112; ++c)
        remove.push_back("L" + std::to_string(l) + ".mlp.c" + std::to_string(c));
    }
    auto pruned = construct_subnet(*dense, deps, remove);
    o.stage1.steps = 80;
    o.stage1.batch_size = 8;
    o.stage1.lr = 3e-3;
    o.reestimate_every = 10;
    o.stage1_patience = 0;  // the whole budget: the history has every estimate
    o.stage2.steps = 0;
    std::vector<std::map<std::string, double>> weights;
    std::map<std::string, double> current, expected;  // draws expected from the weights
    std::map<std::string, int64_t> drawn;
    const auto rep =
        recover_model(*pruned, tok, o, dense_losses, nullptr, [&](const RecoveryMetrics& m) {
          if (!m.weights.empty()) weights.push_back(current = m.weights);
          for (const auto& [c, w] : current)
            expected[c] += w * 8;
          for (const auto& [c, n] : m.drawn)
            drawn[c] += n;
        });
    const auto& h = rep["stage1"]["history"];
    QCOMPARE(h.size(), size_t(9));  // steps 0, 10, …, 70, and the end
    const auto& start = h.front()["delta"];
    const std::string worse =
        start["grammar"].get<double>() > start["counting"].get<double>() ? "grammar" : "counting";
    const std::string other = worse == "grammar" ? "counting" : "grammar";
    qInfo("deltas at the start: grammar %.3f, counting %.3f; weight of %s: %.3f -> %.3f",
          start["grammar"].get<double>(), start["counting"].get<double>(), worse.c_str(),
          h.front()["weights"][worse].get<double>(), h.back()["weights"][worse].get<double>());
    QVERIFY(h.front()["weights"][worse].get<double>() > h.front()["weights"][other].get<double>());
    QVERIFY(h.back()["weights"][worse].get<double>() < h.front()["weights"][worse].get<double>());
    QVERIFY(h.back()["loss"][worse].get<double>() < h.front()["loss"][worse].get<double>());
    // The batches followed the weights: draws within 4 sigma of what the weights expect.
    const double sigma = std::sqrt(80 * 8 * 0.25);
    QVERIFY2(std::abs(static_cast<double>(drawn[worse]) - expected[worse]) < 4 * sigma,
             qPrintable(QString("%1 drawn, %2 expected").arg(drawn[worse]).arg(expected[worse])));
    QCOMPARE(drawn[worse] + drawn[other], int64_t(80 * 8));
    int64_t consumed = 0;
    for (const auto& c : rep["stage1"]["categories"])
      consumed += c["sequences_consumed"].get<int64_t>();
    QCOMPARE(consumed, int64_t(80 * 8));
    QCOMPARE(weights.size(), size_t(8));
  }

  void sameSeedSameWeightsAndResume() {
    auto tok = demo_tokenizer();
    const auto inst = (root() / "inst.jsonl").string();
    {
      std::ofstream f(inst);
      for (int i = 0; i < 30; ++i)
        f << nlohmann::json{{"instruction", "Count from " + std::to_string(i % 10) + "."},
                            {"input", ""},
                            {"output", counting_text(1, static_cast<uint64_t>(i))}}
                 .dump()
          << "\n";
    }
    RecoveryOptions o;
    o.domains = {grammar_, counting_};
    o.instruct = inst;
    o.seq_len = 32;
    o.val_sequences = 4;
    o.sampling = "uniform";
    o.stage1.steps = 12;
    o.stage1.batch_size = 4;
    o.stage2.steps = 10;
    o.stage2.batch_size = 4;
    o.instruct_seq_len = 128;
    o.eval_every = 3;
    o.reestimate_every = 5;
    o.lora.rank = 4;
    o.lora.dropout = 0.1;  // dropout must be reproducible too
    auto base = test::random_model(small_config(), 21);
    auto fresh = [&] {
      auto m = test::random_model(small_config(), 21);
      return m;
    };
    auto a = fresh(), b = fresh();
    const auto ra = recover_model(*a, tok, o, {});
    recover_model(*b, tok, o, {});
    QVERIFY(same_tensors(*a, *b));
    QVERIFY(!same_tensors(*a, *base));
    QVERIFY(a->lora() == nullptr);  // folded
    QCOMPARE(ra["stage2"]["records"]["train"].get<int64_t>() +
                 ra["stage2"]["records"]["validation"].get<int64_t>(),
             int64_t(30));

    // Interrupted (cancelled) in stage 1 and in stage 2, then resumed: the same weights.
    for (int64_t stop_at : {7, 17}) {
      auto c = fresh();
      auto run = o;
      run.checkpoint_every = 2;
      run.checkpoint_dir = (root() / ("ckpt" + std::to_string(stop_at))).string();
      std::atomic<bool> cancel{false};
      TaskContext ctx;
      ctx.cancel = &cancel;
      int64_t seen = 0;
      try {
        recover_model(*c, tok, run, {}, &ctx, [&](const RecoveryMetrics&) {
          if (++seen == stop_at) cancel = true;
        });
        QFAIL("not cancelled");
      } catch (const CancelledError&) {
      }
      auto d = fresh();
      run.resume = true;
      const auto rd = recover_model(*d, tok, run, {});
      QVERIFY2(same_tensors(*a, *d), qPrintable(QString("stopped at %1").arg(stop_at)));
      QCOMPARE(rd["stage1"]["loss"].size(), ra["stage1"]["loss"].size());
      QCOMPARE(rd["stage2"]["validation"].dump(), ra["stage2"]["validation"].dump());
      // A checkpoint of other settings is refused.
      auto other = run;
      other.stage1.lr = 5e-3;
      auto e = fresh();
      QVERIFY_THROWS_EXCEPTION(UsageError, recover_model(*e, tok, other, {}));
    }
  }

  void stageOneStopsWhenNoCategoryImproves() {
    RecoveryOptions o;
    o.domains = {grammar_, counting_};
    o.seq_len = 32;
    o.val_sequences = 4;
    o.sampling = "uniform";
    o.stage1.steps = 40;
    o.stage1.lr = 1e-12;  // nothing moves
    o.stage1.batch_size = 2;
    o.reestimate_every = 3;
    o.stage1_patience = 2;
    o.stage2.steps = 0;
    auto m = test::random_model(small_config(), 3);
    const auto rep = recover_model(*m, demo_tokenizer(), o, {});
    QVERIFY(rep["stage1"]["stopped_early"].get<bool>());
    QCOMPARE(rep["stage1"]["steps"].get<int64_t>(), int64_t(6));  // estimates at 0, 3 and 6
    QCOMPARE(rep["stage1"]["history"].size(), size_t(3));
  }

  void adaptiveNeedsTheDenseModel() {
    RecoveryOptions o;
    o.domains = {grammar_};
    o.stage1.steps = 2;
    o.stage2.steps = 0;
    auto m = test::random_model(small_config(), 1);
    try {
      recover_model(*m, demo_tokenizer(), o, {});
      QFAIL("accepted");
    } catch (const UsageError& e) {
      QVERIFY2(QString(e.what()).contains("--dense"), e.what());
    }
    o.domains.clear();
    QVERIFY_THROWS_EXCEPTION(UsageError, o.validate());
  }
};

QTEST_APPLESS_MAIN(TestRecovery)
#include "test_recovery.moc"
