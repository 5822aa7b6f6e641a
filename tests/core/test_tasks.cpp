// Zero-shot task files and scoring (lorashear/eval/tasks.h): the four formats and their templates,
// bad files named with their line, task names, and the scorer against a direct full-sequence
// computation on a tiny random model (shared contexts, batching, worker threads, cutting from the
// left, the whitespace rule, cancel). The CLI refuses a model without a tokenizer.
#include <QtTest>

#include <QTemporaryDir>

#include <torch/torch.h>

#include <cmath>

#include "lorashear/errors.h"
#include "lorashear/eval/tasks.h"
#include "lorashear/io/loader.h"
#include "lorashear/model/llama.h"
#include "lorashear/runtime.h"
#include "test_support.h"

using namespace lorashear;

namespace {

// A byte-level BPE tokenizer.json without merges: one token per byte (GPT-2's byte-to-unicode
// alphabet), BOS "<s>" = 256 added in front.
std::string byte_tokenizer_json() {
  std::vector<int> bs;
  for (int b = '!'; b <= '~'; ++b)
    bs.push_back(b);
  for (int b = 0xa1; b <= 0xac; ++b)
    bs.push_back(b);
  for (int b = 0xae; b <= 0xff; ++b)
    bs.push_back(b);
  std::vector<int> cs = bs;
  int n = 0;
  for (int b = 0; b < 256; ++b)
    if (std::find(bs.begin(), bs.end(), b) == bs.end()) {
      bs.push_back(b);
      cs.push_back(256 + n++);
    }
  nlohmann::json vocab = nlohmann::json::object();
  for (size_t i = 0; i < bs.size(); ++i) {
    std::string u;
    const int c = cs[i];
    if (c < 0x80) {
      u += static_cast<char>(c);
    } else {
      u += static_cast<char>(0xc0 | (c >> 6));
      u += static_cast<char>(0x80 | (c & 0x3f));
    }
    vocab[u] = bs[i];
  }
  nlohmann::json j = {
      {"version", "1.0"},
      {"added_tokens",
       {{{"id", 256},
         {"content", "<s>"},
         {"single_word", false},
         {"lstrip", false},
         {"rstrip", false},
         {"normalized", false},
         {"special", true}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "ByteLevel"},
        {"add_prefix_space", false},
        {"trim_offsets", true},
        {"use_regex", true}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single",
         {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"pair", {{{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {256}}, {"tokens", {"<s>"}}}}}}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"vocab", vocab},
        {"merges", nlohmann::json::array()}}}};
  return j.dump();
}

std::string write_file(const QTemporaryDir& dir, const QString& name, const std::string& text) {
  const auto path = dir.filePath(name).toStdString();
  test::write_all(path, text);
  return path;
}

template <class F>
QString error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return QString::fromStdString(e.what());
  }
  return {};
}

}  // namespace

class TestTasks : public QObject {
  Q_OBJECT
  QTemporaryDir dir_;
  LlamaModel model_{nullptr};
  std::shared_ptr<Tokenizer> tok_;

  // Σ log p(cont | before) of [BOS] + enc(c) + cont, cut from the left to `keep` tokens, by one
  // forward over the whole sequence.
  double direct_ll(const std::string& c, const std::string& x, bool* greedy = nullptr) {
    auto whole = tok_->encode(c + x);
    auto ctx = tok_->encode(c);
    std::vector<int64_t> cont(whole.begin() + static_cast<std::ptrdiff_t>(ctx.size()), whole.end());
    std::vector<int64_t> seq{tok_->bos_id()};
    seq.insert(seq.end(), ctx.begin(), ctx.end());
    seq.insert(seq.end(), cont.begin(), cont.end());
    const size_t keep = model_->config().max_position_embeddings + 1;
    if (seq.size() > keep) seq.erase(seq.begin(), seq.end() - static_cast<std::ptrdiff_t>(keep));
    torch::NoGradGuard ng;
    auto in = torch::tensor(std::vector<int64_t>(seq.begin(), seq.end() - 1)).unsqueeze(0);
    auto lp = torch::log_softmax(model_->forward(in), -1)[0];
    double ll = 0;
    bool all = true;
    const size_t n = seq.size() - 1;
    for (size_t i = n - cont.size(); i < n; ++i) {
      ll += lp[static_cast<int64_t>(i)][seq[i + 1]].item<double>();
      all = all && lp[static_cast<int64_t>(i)].argmax().item<int64_t>() == seq[i + 1];
    }
    if (greedy) *greedy = all;
    return ll;
  }

 private slots:
  void initTestCase() {
    init_runtime();
    QVERIFY(dir_.isValid());
    tok_ = Tokenizer::from_hf_json(byte_tokenizer_json(), "tokenizer.json",
                                   R"({"add_bos_token": true, "bos_token": "<s>"})");
    QVERIFY(tok_->add_bos());
    QCOMPARE(tok_->bos_id(), int64_t(256));
    auto cfg = ModelConfig::uniform(257, 32, 2, 4, 2, 48, 8);
    cfg.max_position_embeddings = 40;
    cfg.bos_token_id = 256;
    model_ = LlamaModel(cfg);
    model_->init_random(5, 0.3);
  }

  void formatsAndTemplates() {
    auto arc = load_task(
        "arc_easy",
        write_file(dir_, "a.jsonl",
                   R"({"query": "Question: Why?", "choices": ["a", "b"], "gold": 1})"
                   "\n\n"
                   R"({"query": "Question: How?\n", "choices": ["c", "d", "e"], "gold": 0})"
                   "\n"));
    QCOMPARE(arc.format, TaskFormat::MultipleChoice);
    QCOMPARE(arc.items.size(), size_t(2));
    QCOMPARE(arc.items[0].contexts[1], std::string("Question: Why?\nAnswer:"));
    QCOMPARE(arc.items[1].contexts[0], std::string("Question: How?\nAnswer:"));  // no blank line
    QCOMPARE(arc.items[1].continuations[2], std::string("e"));
    QCOMPARE(arc.items[1].line, int64_t(3));
    QCOMPARE(arc.items[0].gold, int64_t(1));
    QVERIFY(!arc.headline_acc);  // ARC's paper figure is acc_norm, BoolQ's is acc
    const auto boolq = write_file(
        dir_, "boolq.jsonl", R"({"query": "Passage: p", "choices": ["no", "yes"], "gold": 1})");
    QVERIFY(load_task("boolq", boolq).headline_acc);
    auto obqa = load_task(
        "openbook_qa",
        write_file(dir_, "o.jsonl", R"({"query": "Fog is", "choices": ["x", "y"], "gold": 0})"));
    QCOMPARE(obqa.name, std::string("openbookqa"));
    QCOMPARE(obqa.items[0].contexts[0], std::string("Fog is"));
    auto wino = load_task(
        "winogrande",
        write_file(
            dir_, "w.jsonl",
            R"({"context_options": ["A so A", "A so B"], "continuation": "won.", "gold": 1})"));
    QCOMPARE(wino.format, TaskFormat::Partial);
    QCOMPARE(wino.items[0].contexts[1], std::string("A so B"));
    QCOMPARE(wino.items[0].continuations[0], std::string("won."));
    auto lam = load_task(
        "lambada",
        write_file(dir_, "l.jsonl", R"({"context": "the cat sat on the", "continuation": "mat"})"));
    QCOMPARE(lam.format, TaskFormat::Lambada);
    auto hs = load_task(
        "hellaswag",
        write_file(dir_, "h.txt", "Ctx one.\n2\ne0\ne1\ne2\ne3\nCtx two.\n0\nf0\nf1\nf2\nf3\n"));
    QCOMPARE(hs.format, TaskFormat::HellaswagText);
    QCOMPARE(hs.items.size(), size_t(2));
    QCOMPARE(hs.items[0].gold, int64_t(2));
    QCOMPARE(hs.items[1].continuations[3], std::string("f3"));
    QCOMPARE(hs.items[1].contexts[0], std::string("Ctx two."));
  }

  void badFilesNameTheLine_data() {
    QTest::addColumn<QString>("text");
    QTest::addColumn<QString>("expected");
    QTest::newRow("unknown format")
        << "{\"query\": \"q\", \"choices\": [\"a\", \"b\"], \"gold\": 0}\n"
           "{\"question\": \"q\"}\n"
        << "bad.jsonl:2: unknown task format";
    QTest::newRow("gold out of range")
        << "{\"query\": \"q\", \"choices\": [\"a\", \"b\"], \"gold\": 2}\n"
        << "bad.jsonl:1: \"gold\" is 2, outside 0..1";
    QTest::newRow("not json")
        << "{\"query\": \"q\", \"choices\": [\"a\", \"b\"], \"gold\": 0}\n{oops\n"
        << "bad.jsonl:2: not JSON";
    QTest::newRow("choices not strings") << "{\"query\": \"q\", \"choices\": [1, 2], \"gold\": 0}\n"
                                         << "bad.jsonl:1: \"choices\" holds a value";
    QTest::newRow("mixed formats")
        << "{\"query\": \"q\", \"choices\": [\"a\", \"b\"], \"gold\": 0}\n"
           "{\"context\": \"c\", \"continuation\": \"x\"}\n"
        << "bad.jsonl:2: a lambada item in a multiple_choice file";
    QTest::newRow("hellaswag gold line") << "ctx\nzero\na\nb\nc\nd\n"
                                         << "bad.jsonl:2: expected the gold ending's index";
    QTest::newRow("hellaswag short")
        << "ctx\n1\na\nb\nc\nd\nctx2\n2\n"
        << "bad.jsonl:7: an item of llama.cpp's HellaSwag text needs 6";
    QTest::newRow("empty") << "\n\n"
                           << "bad.jsonl: the task file holds no items";
  }

  void badFilesNameTheLine() {
    QFETCH(QString, text);
    QFETCH(QString, expected);
    const auto path = write_file(dir_, "bad.jsonl", text.toStdString());
    const auto err = error_of([&] { load_task("arc_easy", path); });
    QVERIFY2(err.contains(expected), qPrintable(err));
  }

  void taskNames() {
    QCOMPARE(canonical_task_name("hellaswag_val_full"), std::string("hellaswag"));
    QCOMPARE(canonical_task_name("lambada_openai"), std::string("lambada"));
    QCOMPARE(canonical_task_name("nope"), std::string());
    QTemporaryDir d;
    test::write_all(d.filePath("openbook_qa.jsonl").toStdString(),
                    "{\"query\": \"q\", \"choices\": [\"a\", \"b\"], \"gold\": 0}\n");
    test::write_all(d.filePath("piqa.jsonl").toStdString(),
                    "{\"query\": \"q\", \"choices\": [\"a\", \"b\"], \"gold\": 0}\n");
    const auto all = resolve_task_files({}, {d.path().toStdString()});
    QCOMPARE(all.size(), size_t(2));
    QCOMPARE(all[0].name, std::string("piqa"));  // in the order of known_tasks()
    QCOMPARE(all[1].name, std::string("openbookqa"));
    auto err = error_of([&] { resolve_task_files({"arc_eazy"}, {d.path().toStdString()}); });
    QVERIFY2(err.contains("unknown task \"arc_eazy\"") && err.contains("arc_easy, arc_challenge"),
             qPrintable(err));
    err = error_of([&] { resolve_task_files({"boolq"}, {d.path().toStdString()}); });
    QVERIFY2(err.contains("no file for task boolq") && err.contains("boolq.jsonl"),
             qPrintable(err));
    err = error_of([&] { resolve_task_files({}, {"/nonexistent/tasks"}); });
    QVERIFY2(err.contains("/nonexistent/tasks does not exist"), qPrintable(err));
    // A file of any name is a task of that name, with the text as it is.
    const auto custom = d.filePath("my_task.jsonl").toStdString();
    test::write_all(custom, "{\"context\": \"c\", \"continuation\": \"x\"}\n");
    const auto picked = resolve_task_files({"my_task"}, {custom});
    QCOMPARE(picked.size(), size_t(1));
    QCOMPARE(picked[0].path, custom);
  }

  void scoresLikeADirectComputation() {
    // Items with shared and distinct contexts, multi-token continuations, a context that ends in
    // whitespace, one long enough to be cut from the left (context 40 + 1 tokens).
    TaskData t;
    t.name = "custom";
    t.format = TaskFormat::MultipleChoice;
    const std::vector<std::pair<std::string, std::vector<std::string>>> items = {
        {"The sky is", {"blue", "green", "a very long answer"}},
        {"Cats like ", {"fish", "to sleep"}},
        {"ab", {"c", "cd"}},
        {"Which of these comes next in the pattern of the story that we are reading", {"x", "yz"}},
        {"The sky is", {"red", "blue"}},
    };
    for (const auto& [c, choices] : items) {
      TaskItem it;
      it.contexts.assign(choices.size(), c);
      it.continuations = choices;
      t.items.push_back(it);
    }
    TaskEvalOptions o;
    o.batch = 3;
    const auto r = evaluate_task(*model_, *tok_, t, o);
    QCOMPARE(r.items, int64_t(5));
    QCOMPARE(r.requests, int64_t(11));
    QCOMPARE(r.truncated, int64_t(2));  // the long context with both of its choices
    for (size_t i = 0; i < items.size(); ++i)
      for (size_t k = 0; k < items[i].second.size(); ++k) {
        std::string c = items[i].first, x = " " + items[i].second[k];
        if (c.back() == ' ') {  // the whitespace moves to the continuation
          c.pop_back();
          x = " " + x;
        }
        const double want = direct_ll(c, x);
        QVERIFY2(
            std::abs(r.lls[i][k] - want) < 1e-4,
            qPrintable(
                QString("item %1 choice %2: %3 vs %4").arg(i).arg(k).arg(r.lls[i][k]).arg(want)));
      }
    // Batch size and worker threads change nothing.
    TaskEvalOptions one;
    one.batch = 1;
    const auto r1 = evaluate_task(*model_, *tok_, t, one);
    init_runtime(1);
    const auto serial = evaluate_task(*model_, *tok_, t, o);
    init_runtime();
    for (size_t i = 0; i < items.size(); ++i)
      for (size_t k = 0; k < items[i].second.size(); ++k) {
        QVERIFY(std::abs(r1.lls[i][k] - r.lls[i][k]) < 1e-4);
        QVERIFY(std::abs(serial.lls[i][k] - r.lls[i][k]) < 1e-4);
      }
    QCOMPARE(r1.predictions, r.predictions);
    // acc and acc_norm from the lls.
    int64_t correct = 0, correct_norm = 0;
    for (size_t i = 0; i < items.size(); ++i) {
      const auto& lls = r.lls[i];
      correct += std::max_element(lls.begin(), lls.end()) - lls.begin() == 0;
      size_t best = 0;
      for (size_t k = 1; k < lls.size(); ++k)
        if (lls[k] / items[i].second[k].size() > lls[best] / items[i].second[best].size()) best = k;
      correct_norm += best == 0;
    }
    QCOMPARE(r.correct, correct);
    QCOMPARE(r.correct_norm, correct_norm);
    QVERIFY(std::abs(r.acc_stderr - std::sqrt(r.acc * (1 - r.acc) / 4)) < 1e-12);
  }

  void dynamicRopeAcrossWorkerThreads() {
    // Dynamic scaling caches its tables only up to max_position_embeddings; items cut to the
    // context reach exactly there. The workers must only read shared state: the scores equal a
    // direct forward's, many times over.
    auto cfg = model_->config();
    cfg.rope_scaling.type = "dynamic";
    cfg.rope_scaling.factor = 2.0;
    LlamaModel dyn(cfg);
    dyn->init_random(5, 0.3);
    std::swap(model_, dyn);
    TaskData t;
    t.name = "custom";
    for (int i = 0; i < 40; ++i) {
      TaskItem it;
      it.contexts.assign(2, std::string(static_cast<size_t>(20 + i), 'a' + i % 26));
      it.continuations = {"xy", "z"};
      t.items.push_back(it);
    }
    TaskEvalOptions o;
    o.batch = 2;
    for (int rep = 0; rep < 5; ++rep) {
      const auto r = evaluate_task(*model_, *tok_, t, o);
      QVERIFY(r.truncated > 0);
      for (int i = 0; i < 40; i += 13)
        QVERIFY(std::abs(r.lls[i][0] - direct_ll(t.items[i].contexts[0], " xy")) < 1e-4);
    }
    std::swap(model_, dyn);
  }

  void lambadaAndPartial() {
    TaskData lam;
    lam.name = "lambada";
    lam.format = TaskFormat::Lambada;
    for (const char* c : {"one two three", "the end of the"}) {
      TaskItem it;
      it.contexts = {c};
      it.continuations = {"story"};
      lam.items.push_back(it);
    }
    const auto r = evaluate_task(*model_, *tok_, lam, {});
    QVERIFY(!r.has_norm());
    double sum = 0;
    int64_t greedy_hits = 0;
    for (int i = 0; i < 2; ++i) {
      bool g = false;
      sum += direct_ll(lam.items[i].contexts[0], " story", &g);
      greedy_hits += g ? 1 : 0;
      QCOMPARE(r.predictions[i], int64_t(g ? 1 : 0));
    }
    QCOMPARE(r.correct, greedy_hits);
    QVERIFY(std::abs(r.ppl - std::exp(-sum / 2)) / r.ppl < 1e-4);

    TaskData wino;
    wino.name = "winogrande";
    wino.format = TaskFormat::Partial;
    TaskItem it;
    it.contexts = {"Ann helped Bo so Ann", "Ann helped Bo so Bo"};
    it.continuations = {"was thanked.", "was thanked."};
    it.gold = 1;
    wino.items.push_back(it);
    const auto w = evaluate_task(*model_, *tok_, wino, {});
    QVERIFY(!w.has_norm());
    QVERIFY(std::abs(w.lls[0][0] - direct_ll(it.contexts[0], " was thanked.")) < 1e-4);
    QVERIFY(std::abs(w.lls[0][1] - direct_ll(it.contexts[1], " was thanked.")) < 1e-4);
  }

  void cancelStops() {
    TaskData t;
    t.name = "custom";
    for (int i = 0; i < 50; ++i) {
      TaskItem it;
      it.contexts.assign(2, "context " + std::to_string(i));
      it.continuations = {"a", "b"};
      t.items.push_back(it);
    }
    std::atomic<bool> cancel{true};
    TaskContext ctx;
    ctx.cancel = &cancel;
    QVERIFY_THROWS_EXCEPTION(CancelledError, evaluate_task(*model_, *tok_, t, {}, &ctx));
  }

  void cliRefusesAModelWithoutTokenizer() {
    QTemporaryDir d;
    save_hf(*model_, nullptr, d.filePath("m").toStdString());
    const auto tasks =
        write_file(dir_, "piqa.jsonl", R"({"query": "q", "choices": ["a", "b"], "gold": 0})");
    auto r = test::run_process(LORASHEAR_CLI_PATH, {"eval", "tasks", d.filePath("m"), "--data",
                                                    QString::fromStdString(tasks), "-q"});
    QCOMPARE(r.code, 3);
    QVERIFY2(r.err.contains("tokenizer"), qPrintable(r.err));
    r = test::run_process(LORASHEAR_CLI_PATH,
                          {"eval", "tasks", d.filePath("m"), "--tasks", "hellaswag2", "--data",
                           QString::fromStdString(tasks), "-q"});
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("known tasks: arc_easy"), qPrintable(r.err));
    // With the tokenizer beside the weights it runs.
    test::write_all(d.filePath("m/tokenizer.json").toStdString(), byte_tokenizer_json());
    test::write_all(d.filePath("m/tokenizer_config.json").toStdString(),
                    R"({"add_bos_token": true, "bos_token": "<s>"})");
    r = test::run_process(LORASHEAR_CLI_PATH, {"eval", "tasks", d.filePath("m"), "--data",
                                               QString::fromStdString(tasks), "--json", "-q"});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    const auto j = nlohmann::json::parse(r.out.toStdString());
    QCOMPARE(j["tasks"][0]["task"].get<std::string>(), std::string("piqa"));
    QCOMPARE(j["tasks"][0]["items"].get<int>(), 1);
    QVERIFY(j["protocol"].get<std::string>().find("[BOS]") != std::string::npos);
  }
};

QTEST_GUILESS_MAIN(TestTasks)
#include "test_tasks.moc"
