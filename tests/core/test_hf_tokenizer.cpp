// Hugging Face tokenizer.json: ids identical to the `tokenizers` reference encodings of Qwen3's
// (byte-level) and a Llama 2-style (SentencePiece-like BPE) tokenizer.json, streaming equal to
// whole-text encoding, decode round trips, the side files' BOS/EOS policy, added-token options and
// the small components (Digits, Metaspace, NFKC, Lowercase, Replace, pair-form merges) on a tiny
// file, and bad files refused with InputError naming the file and what is wrong.
#include <QtTest>

#include <nlohmann/json.hpp>

#include <QTemporaryDir>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "checkpoint_writers.h"
#include "lorashear/errors.h"
#include "lorashear/io/loader.h"
#include "lorashear/tokenizer/tokenizer.h"
#include "test_support.h"

using lorashear::InputError;
using lorashear::Tokenizer;
using lorashear::UsageError;
using lorashear::VocabEntry;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const char* kQwen3 = "tokenizers/qwen3/tokenizer.json";
const char* kLlama2 = "tokenizers/llama2/tokenizer.json";
const char* kStress = "tokenizers/stress.txt";
const char* kStories = "data/text/tinystories_val_subset.txt";

using lorashear::test::read_all;
using lorashear::test::write_all;

std::string shared(const char* rel) {
  return lorashear::test::shared_path(rel).string();
}

std::vector<int64_t> reference_ids(const std::string& rel) {
  return json::parse(read_all(lorashear::test::shared_path(rel))).get<std::vector<int64_t>>();
}

// Where two id lists first differ, with context, for a readable failure.
QString first_difference(const std::vector<int64_t>& got, const std::vector<int64_t>& want,
                         const Tokenizer& tok) {
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i])
    ++i;
  if (i == got.size() && i == want.size()) return {};
  auto at = [&](const std::vector<int64_t>& v) {
    return i < v.size() ? QString("%1 '%2'").arg(v[i]).arg(QString::fromStdString(tok.piece(v[i])))
                        : QString("(end)");
  };
  return QString("lengths %1 vs %2 (want); first difference at %3: got %4, want %5")
      .arg(got.size())
      .arg(want.size())
      .arg(i)
      .arg(at(got), at(want));
}

std::vector<int64_t> stream_ids(const Tokenizer& tok, const std::string& text, size_t window,
                                int* calls = nullptr) {
  std::istringstream in(text);
  std::vector<int64_t> out;
  int n = 0;
  tok.encode_stream(
      in,
      [&](const std::vector<int64_t>& ids) {
        ++n;
        out.insert(out.end(), ids.begin(), ids.end());
      },
      window);
  if (calls) *calls = n;
  return out;
}

// A tiny tokenizer.json exercising Digits, Metaspace (prepend "first", split), NFKC, Lowercase,
// Replace, pair-form merges, fuse_unk and added tokens with lstrip/rstrip/single_word.
json tiny_tokenizer() {
  const json vocab = {{"<unk>", 0},
                      {"\xe2\x96\x81", 1},
                      {"a", 2},
                      {"b", 3},
                      {"c", 4},
                      {"1", 5},
                      {"2", 6},
                      {"\xe2\x96\x81"
                       "a",
                       7},
                      {"ab", 8},
                      {"\xe2\x96\x81"
                       "ab",
                       9},
                      {"f", 10},
                      {"i", 11},
                      {"fi", 12},
                      {"\xe2\x96\x81"
                       "fi",
                       13},
                      {"x", 14}};
  const json merges = json::array({json::array({"\xe2\x96\x81", "a"}), json::array({"a", "b"}),
                                   json::array({"\xe2\x96\x81"
                                                "a",
                                                "b"}),
                                   json::array({"f", "i"}), json::array({"\xe2\x96\x81", "fi"})});
  return {{"version", "1.0"},
          {"added_tokens",
           {{{"id", 20},
             {"content", "<mask>"},
             {"single_word", false},
             {"lstrip", true},
             {"rstrip", true},
             {"normalized", false},
             {"special", true}},
            {{"id", 21},
             {"content", "<w>"},
             {"single_word", true},
             {"lstrip", false},
             {"rstrip", false},
             {"normalized", false},
             {"special", false}}}},
          {"normalizer",
           {{"type", "Sequence"},
            {"normalizers",
             {{{"type", "NFKC"}},
              {{"type", "Lowercase"}},
              {{"type", "Replace"}, {"pattern", {{"String", "-"}}}, {"content", " "}}}}}},
          {"pre_tokenizer",
           {{"type", "Sequence"},
            {"pretokenizers",
             {{{"type", "Digits"}, {"individual_digits", true}},
              {{"type", "Metaspace"},
               {"replacement", "\xe2\x96\x81"},
               {"prepend_scheme", "first"},
               {"split", true}}}}}},
          {"post_processor", nullptr},
          {"decoder",
           {{"type", "Metaspace"}, {"replacement", "\xe2\x96\x81"}, {"prepend_scheme", "first"}}},
          {"model",
           {{"type", "BPE"},
            {"unk_token", "<unk>"},
            {"fuse_unk", true},
            {"byte_fallback", false},
            {"vocab", vocab},
            {"merges", merges}}}};
}

// Loading `j` (as tokenizer.json in a temp dir) must throw InputError whose message contains
// every one of `needles`.
void expect_refused(const QTemporaryDir& dir, const json& j, const QStringList& needles) {
  const fs::path p = fs::path(dir.path().toStdString()) / "tokenizer.json";
  write_all(p, j.dump());
  try {
    Tokenizer::from_hf_json_file(p.string());
    QFAIL(qPrintable("accepted: " + needles.join(", ")));
  } catch (const InputError& e) {
    const QString msg = QString::fromUtf8(e.what());
    QVERIFY2(msg.contains(QString::fromStdString(p.string())), qPrintable(msg));
    for (const QString& n : needles)
      QVERIFY2(msg.contains(n), qPrintable(msg + " lacks " + n));
  }
}

}  // namespace

class TestHfTokenizer : public QObject {
  Q_OBJECT
 private slots:
  void qwen3MatchesTokenizers() {
    LORASHEAR_REQUIRE_SHARED(kQwen3);
    auto tok = Tokenizer::from_hf_json_file(shared(kQwen3));
    QCOMPARE(tok->backend(), Tokenizer::Backend::HfBpe);
    QCOMPARE(QString::fromStdString(tok->kind()), QString("BPE (tokenizer.json, byte-level)"));
    QCOMPARE(QString::fromStdString(tok->pre_tokenizer_name()), QString("qwen2"));
    QCOMPARE(tok->vocab_size(), int64_t(151669));
    for (const auto& [text, ids] :
         {std::pair{kStress, "tokenizers/qwen3/stress.ids.json"},
          std::pair{kStories, "tokenizers/qwen3/tinystories_val_subset.ids.json"}}) {
      const auto got = tok->encode(read_all(shared(text)));
      const QString diff = first_difference(got, reference_ids(ids), *tok);
      QVERIFY2(diff.isEmpty(), qPrintable(QString(text) + ": " + diff));
    }
  }

  void llama2StyleMatchesTokenizers() {
    LORASHEAR_REQUIRE_SHARED(kLlama2);
    auto tok = Tokenizer::from_hf_json_file(shared(kLlama2));
    QCOMPARE(QString::fromStdString(tok->kind()), QString("BPE (tokenizer.json)"));
    QCOMPARE(tok->vocab_size(), int64_t(32000));
    for (const auto& [text, ids] :
         {std::pair{kStress, "tokenizers/llama2/stress.ids.json"},
          std::pair{kStories, "tokenizers/llama2/tinystories_val_subset.ids.json"}}) {
      const auto got = tok->encode(read_all(shared(text)));
      const QString diff = first_difference(got, reference_ids(ids), *tok);
      QVERIFY2(diff.isEmpty(), qPrintable(QString(text) + ": " + diff));
    }
  }

  void sideFilesGiveBosEosPolicy() {
    LORASHEAR_REQUIRE_SHARED(kQwen3);
    auto qwen = Tokenizer::from_hf_json_file(shared(kQwen3));
    QCOMPARE(qwen->bos_id(), int64_t(-1));      // tokenizer_config: bos_token null
    QCOMPARE(qwen->eos_id(), int64_t(151645));  // <|im_end|>
    QCOMPARE(qwen->unk_id(), int64_t(-1));
    QVERIFY(!qwen->add_bos());
    QVERIFY(!qwen->add_eos());
    QCOMPARE(qwen->encode("Hi", true, true), (std::vector<int64_t>{13048, 151645}));
    const auto specials = qwen->special_tokens();
    QVERIFY(!specials.empty());
    QCOMPARE(specials.front().id, int64_t(151643));
    QCOMPARE(QString::fromStdString(specials.front().text), QString("<|endoftext|>"));

    auto llama = Tokenizer::from_hf_json_file(shared(kLlama2));
    QCOMPARE(llama->bos_id(), int64_t(1));
    QCOMPARE(llama->eos_id(), int64_t(2));
    QCOMPARE(llama->unk_id(), int64_t(0));
    QVERIFY(llama->add_bos());
    QVERIFY(llama->add_dummy_prefix());
    QCOMPARE(llama->encode("Hello", true).front(), int64_t(1));

    // generation_config.json may list several EOS ids (Llama 3.x); without tokenizer_config the
    // post-processor's template says whether BOS is added.
    QTemporaryDir dir;
    const fs::path root(dir.path().toStdString());
    write_all(root / "tokenizer.json", read_all(shared(kLlama2)));
    write_all(root / "generation_config.json", R"({"bos_token_id": 1, "eos_token_id": [2, 5]})");
    auto bare = Tokenizer::from_hf_json_file((root / "tokenizer.json").string());
    QCOMPARE(bare->bos_id(), int64_t(1));  // template's <s>
    QVERIFY(bare->add_bos());
    QCOMPARE(bare->eos_id(), int64_t(2));
    QCOMPARE(bare->eos_ids(), (std::vector<int64_t>{2, 5}));
    const auto files = bare->hf_files();
    QCOMPARE(files.size(), size_t(2));
    QCOMPARE(QString::fromStdString(files[0].first), QString("tokenizer.json"));
    QCOMPARE(files[0].second, read_all(shared(kLlama2)));
    QVERIFY(json::parse(files[1].second).at("add_bos_token").get<bool>());

    write_all(root / "generation_config.json", R"({"eos_token_id": [2, 99999]})");
    QVERIFY_THROWS_EXCEPTION(InputError,
                             Tokenizer::from_hf_json_file((root / "tokenizer.json").string()));
  }

  void vocabularyAndMerges() {
    LORASHEAR_REQUIRE_SHARED(kLlama2);
    auto llama = Tokenizer::from_hf_json_file(shared(kLlama2));
    const auto v = llama->vocab();
    QCOMPARE(int64_t(v.size()), llama->vocab_size());
    QCOMPARE(v[0].type, VocabEntry::Type::Control);  // <unk> is an added special token
    QCOMPARE(v[1].type, VocabEntry::Type::Control);
    QCOMPARE(QString::fromStdString(v[3].piece), QString("<0x00>"));
    QCOMPARE(v[3].type, VocabEntry::Type::Byte);
    QCOMPARE(v[400].type, VocabEntry::Type::Normal);
    QCOMPARE(llama->merges().size(), size_t(58980));
    QVERIFY_THROWS_EXCEPTION(UsageError, llama->serialized_model_proto());

    auto qwen = Tokenizer::from_hf_json_file(shared(kQwen3));
    const auto merges = qwen->merges();
    QCOMPARE(merges.size(), size_t(151387));
    QCOMPARE(QString::fromStdString(merges[0].first), QString::fromUtf8("\xc4\xa0"));  // "Ġ"
    QCOMPARE(qwen->vocab()[151645].type, VocabEntry::Type::Control);
    QCOMPARE(QString::fromStdString(qwen->piece(151645)), QString("<|im_end|>"));
  }

  void streamingEqualsWholeText() {
    LORASHEAR_REQUIRE_SHARED(kQwen3);
    for (const char* file : {kQwen3, kLlama2}) {
      auto tok = Tokenizer::from_hf_json_file(shared(file));
      for (const char* text_file : {kStories, kStress}) {
        const std::string text = read_all(shared(text_file));
        const auto whole = tok->encode(text);
        for (size_t window : {size_t(1024), size_t(64 * 1024), size_t(1) << 20}) {
          int calls = 0;
          const auto streamed = stream_ids(*tok, text, window, &calls);
          const QString diff = first_difference(streamed, whole, *tok);
          QVERIFY2(
              diff.isEmpty(),
              qPrintable(
                  QString("%1 on %2, window %3: %4").arg(file, text_file).arg(window).arg(diff)));
          // Windows are really cut (so memory stays about one window) on the long text.
          if (text_file == kStories && window == 1024) QVERIFY(calls > 100);
        }
      }
    }
  }

  void decodeRoundTrips() {
    LORASHEAR_REQUIRE_SHARED(kQwen3);
    auto qwen = Tokenizer::from_hf_json_file(shared(kQwen3));
    for (const char* f : {kStress, kStories}) {
      const std::string text = read_all(shared(f));
      // Byte-level BPE is lossless; stress.txt's special-token strings are encoded as those
      // tokens, which decode() leaves out, so compare without them.
      std::string expect = text;
      for (const std::string s : {"<|endoftext|>"})
        for (size_t p; (p = expect.find(s)) != std::string::npos;)
          expect.erase(p, s.size());
      QCOMPARE(qwen->decode(qwen->encode(text)), expect);
    }
    auto llama = Tokenizer::from_hf_json_file(shared(kLlama2));
    const std::string stories = read_all(shared(kStories));
    QCOMPARE(llama->decode(llama->encode(stories)), stories);
    // Byte fallback: characters outside the vocabulary come back from their <0xXX> pieces.
    const std::string rare = "emoji \xf0\x9f\x98\x80 and \xe2\x91\xa0";
    QCOMPARE(llama->decode(llama->encode(rare, true, true)), rare);
    QVERIFY_THROWS_EXCEPTION(UsageError, llama->decode({32000}));
    // Invalid UTF-8 is read as U+FFFD, never a crash.
    QCOMPARE(qwen->decode(qwen->encode("a\xff"
                                       "b\xe2\x82")),
             std::string("a\xef\xbf\xbd"
                         "b\xef\xbf\xbd"));
  }

  void tinyTokenizerComponents() {
    QTemporaryDir dir;
    const fs::path p = fs::path(dir.path().toStdString()) / "tokenizer.json";
    write_all(p, tiny_tokenizer().dump());
    auto tok = Tokenizer::from_hf_json_file(p.string());
    QCOMPARE(tok->vocab_size(), int64_t(22));
    // NFKC (ﬁ → fi), Lowercase, Replace '-' → ' ', Digits, Metaspace "first" (only the piece at
    // the start of the input gets ▁), pair-form merges, fuse_unk (z, é, q → one <unk>).
    QCOMPARE(tok->encode("AB-\xef\xac\x81 12 abz\xc3\xa9q ab"),
             (std::vector<int64_t>{9, 13, 1, 5, 6, 9, 0, 9}));
    // lstrip + rstrip: <mask> takes the spaces on both sides.
    QCOMPARE(tok->encode("ab <mask>  ab"), (std::vector<int64_t>{9, 20, 8}));
    // single_word: "<w>" after a letter is plain text, between spaces it is the token.
    QCOMPARE(tok->encode("c<w> <w>"), (std::vector<int64_t>{1, 4, 0, 1, 21}));
    QCOMPARE(tok->decode({9, 13, 1, 5, 6}), std::string("ab fi 12"));
    QCOMPARE(tok->vocab()[20].type, VocabEntry::Type::Control);
    QCOMPARE(tok->vocab()[21].type, VocabEntry::Type::UserDefined);
    QCOMPARE(tok->vocab()[16].type, VocabEntry::Type::Unused);  // no entry names id 16

    // The same merges in "a b" string form give the same ids.
    json j = tiny_tokenizer();
    j["model"]["merges"] = {"\xe2\x96\x81 a", "a b",
                            "\xe2\x96\x81"
                            "a b",
                            "f i", "\xe2\x96\x81 fi"};
    write_all(p, j.dump());
    QCOMPARE(Tokenizer::from_hf_json_file(p.string())->encode("AB-\xef\xac\x81 12 abz\xc3\xa9q ab"),
             (std::vector<int64_t>{9, 13, 1, 5, 6, 9, 0, 9}));
  }

  void badFilesAreRefused() {
    QTemporaryDir dir;
    json j = tiny_tokenizer();
    j["model"]["type"] = "Unigram";
    expect_refused(dir, j, {"model type", "Unigram"});

    j = tiny_tokenizer();
    j["pre_tokenizer"]["pretokenizers"][0]["type"] = "FancySplit";
    expect_refused(dir, j, {"pre-tokenizer", "FancySplit"});

    j = tiny_tokenizer();
    j["normalizer"] = {{"type", "BertNormalizer"}};
    expect_refused(dir, j, {"normalizer", "BertNormalizer"});

    j = tiny_tokenizer();
    j["decoder"] = {{"type", "WordPiece"}};
    expect_refused(dir, j, {"decoder", "WordPiece"});

    j = tiny_tokenizer();
    j["pre_tokenizer"] = {{"type", "Split"},
                          {"pattern", {{"Regex", "ab(?<name"}}},
                          {"behavior", "Isolated"},
                          {"invert", false}};
    expect_refused(dir, j, {"PCRE2", "offset 9", "ab(?<name"});

    j = tiny_tokenizer();
    j["model"]["merges"].push_back({"a", "zz"});
    expect_refused(dir, j, {"merge 5", "zz", "not in the vocabulary"});

    j = tiny_tokenizer();
    j["model"]["merges"] = {"a b", "ab"};
    expect_refused(dir, j, {"merge 1", "'ab'"});

    j = tiny_tokenizer();
    j["model"]["merges"] = {"a b", 7};
    expect_refused(dir, j, {"merge 1"});

    j = tiny_tokenizer();
    j["added_tokens"][0]["id"] = int64_t(1) << 40;  // would size the id tables
    expect_refused(dir, j, {"<mask>", "outside"});

    j = tiny_tokenizer();
    j["pre_tokenizer"]["pretokenizers"][1]["prepend_scheme"] = "sometimes";
    expect_refused(dir, j, {"sometimes"});

    // Truncated file: the JSON parser's message, naming the file.
    const fs::path p = fs::path(dir.path().toStdString()) / "tokenizer.json";
    const std::string full = tiny_tokenizer().dump();
    write_all(p, full.substr(0, full.size() / 2));
    QVERIFY_THROWS_EXCEPTION(InputError, Tokenizer::from_hf_json_file(p.string()));
    write_all(p, "[1, 2, 3]");
    QVERIFY_THROWS_EXCEPTION(InputError, Tokenizer::from_hf_json_file(p.string()));
    write_all(p, tiny_tokenizer().dump());
    write_all(p.parent_path() / "tokenizer_config.json", "{\"bos_token\": ");
    try {
      Tokenizer::from_hf_json_file(p.string());
      QFAIL("a broken tokenizer_config.json was accepted");
    } catch (const InputError& e) {
      QVERIFY2(QString(e.what()).contains("tokenizer_config.json"), e.what());
    }
    QVERIFY_THROWS_EXCEPTION(InputError, Tokenizer::from_file("/nonexistent/tokenizer.json"));
  }

  void exportWritesTokenizerJsonBack() {
    LORASHEAR_REQUIRE_SHARED(kLlama2);
    auto tok = Tokenizer::from_hf_json_file(shared(kLlama2));
    auto m =
        lorashear::test::random_model(lorashear::ModelConfig::uniform(32000, 32, 1, 4, 4, 40), 3);
    QTemporaryDir tmp;
    const fs::path dir = fs::path(tmp.path().toStdString()) / "model";
    fs::create_directories(dir);
    write_all(dir / "tokenizer.model", "stale");
    lorashear::save_hf(*m, tok.get(), dir.string());
    QCOMPARE(read_all(dir / "tokenizer.json"), read_all(shared(kLlama2)));
    QCOMPARE(read_all(dir / "tokenizer_config.json"),
             read_all(shared("tokenizers/llama2/tokenizer_config.json")));
    QVERIFY(!fs::exists(dir / "tokenizer.model"));
    auto loaded = lorashear::load_model(dir.string());
    QVERIFY(loaded.tokenizer);
    QCOMPARE(loaded.tokenizer->backend(), Tokenizer::Backend::HfBpe);
    const std::string text = read_all(shared(kStress));
    QCOMPARE(loaded.tokenizer->encode(text, true), tok->encode(text, true));

    // A SentencePiece tokenizer written over it removes the tokenizer.json that would shadow it.
    LORASHEAR_REQUIRE_SHARED("models/stories260K/tok512.model");
    auto spm = Tokenizer::from_file(shared("models/stories260K/tok512.model"));
    lorashear::save_hf(*m, spm.get(), dir.string());
    QVERIFY(!fs::exists(dir / "tokenizer.json"));
    QCOMPARE(lorashear::load_model(dir.string()).tokenizer->backend(),
             Tokenizer::Backend::SentencePiece);
  }

  void fromFileChoosesByName() {
    LORASHEAR_REQUIRE_SHARED(kQwen3);
    QCOMPARE(Tokenizer::from_file(shared("tokenizers/qwen3"))->backend(),
             Tokenizer::Backend::HfBpe);
    LORASHEAR_REQUIRE_SHARED("models/stories260K/tok512.model");
    auto spm = Tokenizer::from_file(shared("models/stories260K/tok512.model"));
    QCOMPARE(spm->backend(), Tokenizer::Backend::SentencePiece);
    QCOMPARE(QString::fromStdString(spm->kind()), QString("SentencePiece"));
    QCOMPARE(spm->eos_ids(), (std::vector<int64_t>{2}));
    QVERIFY(spm->hf_files().empty());
    QVERIFY(spm->merges().empty());
    const std::string text = "Once upon a time\nthere was a cat.";
    QCOMPARE(stream_ids(*spm, text, 4), spm->encode(text));
  }
};

QTEST_GUILESS_MAIN(TestHfTokenizer)
#include "test_hf_tokenizer.moc"
