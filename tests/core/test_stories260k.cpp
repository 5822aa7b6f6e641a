// The real stories260K model in its three forms (llama2.c .bin, GGUF, our Hugging Face export)
// gives the same logits and the reference greedy story; this is the ground truth for the RoPE row
// permutation.
#include <QTemporaryDir>
#include <QtTest>

#include <torch/torch.h>

#include <filesystem>

#include "lorashear/eval/generate.h"
#include "lorashear/io/loader.h"
#include "test_support.h"

using namespace lorashear;
namespace fs = std::filesystem;

namespace {

const char* kBin = "models/stories260K/stories260K.bin";
const char* kGguf = "models/stories260K/stories260K.gguf";
const char* kStory =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.";

torch::Tensor prompt_logits(LlamaModelImpl& m, const std::vector<int64_t>& ids) {
  torch::NoGradGuard ng;
  return m.forward(torch::tensor(ids, torch::kInt64).unsqueeze(0));
}

std::string greedy_story(LoadedModel& lm) {
  GenerateOptions go;
  go.max_new_tokens = 60;
  go.temperature = 0.0;
  const auto res = generate(*lm.model, {1}, go);
  return lm.tokenizer->decode(res.tokens);
}

}  // namespace

class TestStories260K : public QObject {
  Q_OBJECT

 private slots:
  void threeFormatsAgree();
  void tokenizerFallbackToBin();
};

void TestStories260K::threeFormatsAgree() {
  LORASHEAR_REQUIRE_SHARED(kBin);
  LORASHEAR_REQUIRE_SHARED(kGguf);
  auto bin = load_model(test::shared_path(kBin).string());
  QCOMPARE(bin.format, ModelFormat::Llama2c);
  QVERIFY(bin.tokenizer != nullptr);  // tok512.model beside the checkpoint
  const auto& cfg = bin.model->config();
  QCOMPARE(cfg.hidden_size, int64_t(64));
  QCOMPARE(cfg.n_layers(), int64_t(5));
  QCOMPARE(cfg.vocab_size, int64_t(512));
  QCOMPARE(cfg.head_dim, int64_t(8));
  QVERIFY(cfg.uniform_layers());
  QCOMPARE(cfg.layers[0].n_heads, int64_t(8));
  QCOMPARE(cfg.layers[0].n_kv_heads, int64_t(4));
  QCOMPARE(cfg.layers[0].intermediate_size, int64_t(172));
  QVERIFY(cfg.tie_word_embeddings);

  auto gguf = load_model(test::shared_path(kGguf).string());
  QCOMPARE(gguf.format, ModelFormat::Gguf);
  QVERIFY(gguf.tokenizer != nullptr);                 // from tokenizer.ggml.* metadata
  QVERIFY(gguf.model->config().tie_word_embeddings);  // output.weight repeats token_embd
  QVERIFY(gguf.model->config().layers == cfg.layers);

  QTemporaryDir tmp;
  const std::string dir = tmp.filePath("hf").toStdString();
  save_hf(*bin.model, bin.tokenizer.get(), dir);
  QVERIFY(fs::is_regular_file(fs::path(dir) / "tokenizer.model"));
  auto hf = load_model(dir);
  QCOMPARE(hf.format, ModelFormat::HuggingFace);
  QVERIFY(hf.tokenizer != nullptr);

  const std::string text = "Once upon a time, there was a big dog. It liked to run.";
  const auto ids = bin.tokenizer->encode(text, true);
  QCOMPARE(gguf.tokenizer->encode(text, true), ids);
  QCOMPARE(hf.tokenizer->encode(text, true), ids);

  const auto ref = prompt_logits(*bin.model, ids);
  const double d_gguf = (prompt_logits(*gguf.model, ids) - ref).abs().max().item<double>();
  const double d_hf = (prompt_logits(*hf.model, ids) - ref).abs().max().item<double>();
  QVERIFY2(d_gguf < 1e-5, qPrintable(QString("gguf vs bin: %1").arg(d_gguf)));
  QVERIFY2(d_hf < 1e-5, qPrintable(QString("hf vs bin: %1").arg(d_hf)));

  for (auto* lm : {&bin, &gguf, &hf}) {
    const std::string story = greedy_story(*lm);
    QVERIFY2(story.rfind(kStory, 0) == 0,
             qPrintable(QString::fromStdString(format_name(lm->format) + ": " + story)));
  }
}

void TestStories260K::tokenizerFallbackToBin() {
  // Only tok512.bin beside the checkpoint: the llama2.c tokenizer is used and encodes the same.
  LORASHEAR_REQUIRE_SHARED(kBin);
  LORASHEAR_REQUIRE_SHARED("models/stories260K/tok512.bin");
  QTemporaryDir tmp;
  const fs::path dir = tmp.path().toStdString();
  fs::copy_file(test::shared_path(kBin), dir / "stories260K.bin");
  fs::copy_file(test::shared_path("models/stories260K/tok512.bin"), dir / "tok512.bin");
  auto lm = load_model((dir / "stories260K.bin").string());
  QVERIFY(lm.tokenizer != nullptr);
  auto ref = load_model(test::shared_path(kBin).string());
  const std::string text = "Lily saw a red ball in the park.";
  QCOMPARE(lm.tokenizer->encode(text, true), ref.tokenizer->encode(text, true));
  QVERIFY(greedy_story(lm).rfind(kStory, 0) == 0);
}

QTEST_GUILESS_MAIN(TestStories260K)
#include "test_stories260k.moc"
