// `lorashear tokenize`: the ids of tokenizers' reference encodings in --json and in the id/piece
// listing, streaming --file, SentencePiece files, and exit codes for bad use and bad files.
#include <QtTest>

#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTemporaryDir>

#include <nlohmann/json.hpp>

#include <fstream>
#include <iterator>

#include "test_support.h"

using namespace lorashear;

namespace {

using Run = test::ProcessResult;

Run run_cli(const QStringList& args) {
  return test::run_process(LORASHEAR_CLI_PATH, args);
}

QString shared(const char* rel) {
  return QString::fromStdString(test::shared_path(rel).string());
}

std::vector<int64_t> reference_ids(const char* rel) {
  std::ifstream in(test::shared_path(rel));
  return nlohmann::json::parse(in).get<std::vector<int64_t>>();
}

std::vector<int64_t> json_ids(const QString& out) {
  const auto doc = QJsonDocument::fromJson(out.toUtf8());
  std::vector<int64_t> ids;
  for (const auto& v : doc.object().value("ids").toArray())
    ids.push_back(v.toInteger());
  return ids;
}

}  // namespace

class TestCliTokenize : public QObject {
  Q_OBJECT
 private slots:
  void jsonIdsMatchReference() {
    LORASHEAR_REQUIRE_SHARED("tokenizers/qwen3/tokenizer.json");
    auto r = run_cli({"tokenize", "--tokenizer", shared("tokenizers/qwen3/tokenizer.json"),
                      "--text", "Hello, world!", "--json"});
    QCOMPARE(r.code, 0);
    QCOMPARE(json_ids(r.out), (std::vector<int64_t>{9707, 11, 1879, 0}));
    const auto obj = QJsonDocument::fromJson(r.out.toUtf8()).object();
    QCOMPARE(obj.value("count").toInteger(), qint64(4));
    QCOMPARE(obj.value("bytes").toInteger(), qint64(13));
    QVERIFY(obj.value("mb_per_second").toDouble() > 0);

    // --file streams; the ids are those of the whole text.
    r = run_cli({"tokenize", shared("tokenizers/qwen3"), "--file",
                 shared("data/text/tinystories_val_subset.txt"), "--json"});
    QCOMPARE(r.code, 0);
    QVERIFY(json_ids(r.out) == reference_ids("tokenizers/qwen3/tinystories_val_subset.ids.json"));
  }

  void listingShowsIdsAndPieces() {
    LORASHEAR_REQUIRE_SHARED("tokenizers/llama2/tokenizer.json");
    auto r = run_cli({"tokenize", "--tokenizer", shared("tokenizers/llama2/tokenizer.json"),
                      "--text", "Hello\nworld", "--bos"});
    QCOMPARE(r.code, 0);
    const QStringList lines = r.out.split('\n', Qt::SkipEmptyParts);
    QCOMPARE(lines.value(0), QString("1\t<s>"));
    QCOMPARE(lines.value(1), QString::fromUtf8("22557\t\xe2\x96\x81Hello"));
    QCOMPARE(lines.value(2), QString("13\t<0x0A>"));
    QVERIFY2(r.err.contains("tokens/s") && r.err.contains("MB/s"), qPrintable(r.err));
    QVERIFY2(r.err.contains("BPE (tokenizer.json)"), qPrintable(r.err));
  }

  void sentencePieceFilesWorkToo() {
    LORASHEAR_REQUIRE_SHARED("models/stories260K/tok512.model");
    auto r = run_cli({"tokenize", "--tokenizer", shared("models/stories260K/tok512.model"),
                      "--text", "Once upon a time", "--json"});
    QCOMPARE(r.code, 0);
    QVERIFY(!json_ids(r.out).empty());
    QVERIFY(r.out.contains("SentencePiece"));
  }

  void badUseAndBadFiles() {
    LORASHEAR_REQUIRE_SHARED("tokenizers/qwen3/tokenizer.json");
    const QString tok = shared("tokenizers/qwen3/tokenizer.json");
    QCOMPARE(run_cli({"tokenize", "--tokenizer", tok}).code, 2);  // no text
    QCOMPARE(run_cli({"tokenize", "--tokenizer", tok, "--text", "a", "--file", tok}).code, 2);
    QCOMPARE(run_cli({"tokenize", "--text", "a"}).code, 2);  // no tokenizer
    auto r = run_cli({"tokenize", "--tokenizer", "/nonexistent/tokenizer.json", "--text", "a"});
    QCOMPARE(r.code, 3);
    QVERIFY(r.err.contains("/nonexistent/tokenizer.json"));

    QTemporaryDir dir;
    const QString bad = dir.filePath("tokenizer.json");
    {
      std::ofstream out(bad.toStdString());
      out << R"({"model": {"type": "WordPiece", "vocab": {}}})";
    }
    r = run_cli({"tokenize", "--tokenizer", bad, "--text", "a"});
    QCOMPARE(r.code, 3);
    QVERIFY2(r.err.contains(bad) && r.err.contains("WordPiece"), qPrintable(r.err));
    r = run_cli({"tokenize", "--tokenizer", tok, "--file", dir.filePath("missing.txt")});
    QCOMPARE(r.code, 3);
  }
};

QTEST_GUILESS_MAIN(TestCliTokenize)
#include "test_cli_tokenize.moc"
