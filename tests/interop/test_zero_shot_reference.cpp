// Zero-shot task scoring against an independent scorer: tests/interop/zero_shot_reference.py
// (Debian's python3-torch in float64 and python3-sentencepiece, written from the protocol in
// README.md, reading stories260K.bin itself) scores a few hundred items of every format — multiple
// choice (ARC-Easy, PIQA, BoolQ with items cut from the left, OpenBookQA), WinoGrande's partial
// scoring, LAMBADA and llama.cpp's HellaSwag text (fixtures it makes from TinyStories) — and
// `lorashear eval tasks` must give the same correct counts, the same choice per item and the same
// log-likelihoods within float32 rounding.
#include <QtTest>

#include <QTemporaryDir>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "test_support.h"

using namespace lorashear;
namespace fs = std::filesystem;

namespace {

const char* kPython = "/usr/bin/python3";

bool have_reference_modules() {
  static const bool ok = [] {
    if (!fs::exists(kPython)) return false;
    return test::run_process(kPython, {"-c", "import torch, sentencepiece"}, 120000).code == 0;
  }();
  return ok;
}

QString script() {
  return QString::fromStdString(test::source_path("tests/interop/zero_shot_reference.py").string());
}

QString model_path() {
  return QString::fromStdString(test::shared_path("models/stories260K/stories260K.bin").string());
}

QString tokenizer_path() {
  return QString::fromStdString(test::shared_path("models/stories260K/tok512.model").string());
}

nlohmann::json parse_json(const test::ProcessResult& r, const char* who) {
  if (r.code != 0) {
    qWarning("%s failed (%d): %s", who, r.code, qPrintable(r.err.right(2000)));
    return nullptr;
  }
  try {
    return nlohmann::json::parse(r.out.toStdString());
  } catch (const std::exception& e) {
    qWarning("%s printed no JSON: %s", who, e.what());
    return nullptr;
  }
}

}  // namespace

class TestZeroShotReference : public QObject {
  Q_OBJECT

 private slots:
  void initTestCase() {
    LORASHEAR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
    LORASHEAR_REQUIRE_SHARED("data/eval/arc_easy.jsonl");
    if (!have_reference_modules())
      QSKIP(
          "needs /usr/bin/python3 with python3-torch and python3-sentencepiece "
          "(scripts/bootstrap.sh installs them)");
    QVERIFY(dir_.isValid());
    const auto text =
        QString::fromStdString(test::shared_path("data/text/tinystories_val_subset.txt").string());
    auto r = test::run_process(
        kPython, {script(), "--make-fixtures", dir_.path(), "--text", text, "--n", "300"});
    QVERIFY2(r.code == 0, qPrintable(r.err));
  }

  void sameCounts_data() {
    QTest::addColumn<QString>("task");
    QTest::addColumn<QString>("file");
    QTest::addColumn<int>("limit");
    const auto eval = [](const char* f) {
      return QString::fromStdString(test::shared_path(std::string("data/eval/") + f).string());
    };
    QTest::newRow("arc_easy (multiple choice, Answer: template)")
        << "arc_easy" << eval("arc_easy.jsonl") << 300;
    QTest::newRow("piqa (query ending in a newline)") << "piqa" << eval("piqa.jsonl") << 300;
    QTest::newRow("boolq (passages cut from the left)") << "boolq" << eval("boolq.jsonl") << 100;
    QTest::newRow("openbookqa (text as is)") << "openbookqa" << eval("openbook_qa.jsonl") << 300;
    QTest::newRow("winogrande (partial scoring)")
        << "winogrande" << eval("winogrande.jsonl") << 300;
    QTest::newRow("lambada (greedy continuation, ppl)")
        << "lambada" << dir_.filePath("lambada.jsonl") << 300;
    QTest::newRow("hellaswag (llama.cpp text format)")
        << "hellaswag" << dir_.filePath("hellaswag.txt") << 300;
  }

  void sameCounts() {
    QFETCH(QString, task);
    QFETCH(QString, file);
    QFETCH(int, limit);
    const auto ref = parse_json(
        test::run_process(kPython,
                          {script(), "--model", model_path(), "--tokenizer", tokenizer_path(),
                           "--task", task, "--file", file, "--limit", QString::number(limit)},
                          600000),
        "the reference scorer");
    QVERIFY(!ref.is_null());
    // The file is renamed to the task's name so that --tasks picks it by name.
    const auto named = dir_.filePath(task + (file.endsWith(".txt") ? ".txt" : ".jsonl"));
    if (!QFile::exists(named)) QVERIFY(QFile::copy(file, named));
    const auto ours =
        parse_json(test::run_process(LORASHEAR_CLI_PATH,
                                     {"eval", "tasks", model_path(), "--tokenizer",
                                      tokenizer_path(), "--tasks", task, "--data", named, "--limit",
                                      QString::number(limit), "--per-item", "--json", "-q"},
                                     600000),
                   "lorashear eval tasks");
    QVERIFY(!ours.is_null());
    const auto& t = ours["tasks"].at(0);
    qInfo("%s: ours %d/%d (norm %s), reference %d/%d (norm %s), truncated %d / %d",
          qPrintable(task), t["correct"].get<int>(), t["items"].get<int>(),
          t["correct_norm"].dump().c_str(), ref["correct"].get<int>(), ref["items"].get<int>(),
          ref["correct_norm"].dump().c_str(), t["truncated"].get<int>(),
          ref["truncated"].get<int>());
    QCOMPARE(t["items"].get<int>(), limit);
    QCOMPARE(ref["items"].get<int>(), limit);
    QCOMPARE(t["correct"].get<int>(), ref["correct"].get<int>());
    QCOMPARE(t["correct_norm"].dump(), ref["correct_norm"].dump());
    QCOMPARE(t["truncated"].get<int>(), ref["truncated"].get<int>());
    QCOMPARE(t["format"].get<std::string>(), ref["format"].get<std::string>());
    QCOMPARE(t["predictions"].dump(), ref["predictions"].dump());
    double worst = 0.0;
    for (size_t i = 0; i < t["lls"].size(); ++i)
      for (size_t k = 0; k < t["lls"][i].size(); ++k) {
        const double a = t["lls"][i][k].get<double>(), b = ref["lls"][i][k].get<double>();
        worst = std::max(worst, std::abs(a - b) / std::max(1.0, std::abs(b)));
      }
    qInfo("largest relative ll difference %.2e", worst);
    QVERIFY2(worst < 1e-4, qPrintable(QString("ll differs by %1").arg(worst)));
    if (task == "lambada") {
      QVERIFY(!ref["ppl"].is_null());
      QVERIFY(std::abs(t["ppl"].get<double>() / ref["ppl"].get<double>() - 1.0) < 1e-4);
    }
  }

 private:
  QTemporaryDir dir_;
};

QTEST_GUILESS_MAIN(TestZeroShotReference)
#include "test_zero_shot_reference.moc"
