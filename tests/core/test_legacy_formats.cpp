// llama2.c and GGUF readers against checkpoints written by the independent writers in
// tests/common/checkpoint_writers.h: RoPE rows un-interleaved, untied heads, F16/BF16/Q8_0 tensors,
// tied heads detected, tokenizer metadata.
#include <QTemporaryDir>
#include <QtTest>

#include <torch/torch.h>

#include <filesystem>

#include "checkpoint_writers.h"
#include "lorashear/errors.h"
#include "lorashear/io/loader.h"

using namespace lorashear;
namespace fs = std::filesystem;

namespace {

using lorashear::test::random_model;

ModelConfig small_config(bool tied) {
  auto cfg = ModelConfig::uniform(67, 64, 2, 8, 2, 96, 8);  // rows in whole Q8_0 blocks
  cfg.tie_word_embeddings = tied;
  cfg.max_position_embeddings = 32;
  return cfg;
}

using lorashear::test::max_logit_diff;

}  // namespace

class TestLegacyFormats : public QObject {
  Q_OBJECT

 private slots:
  void llama2c_data();
  void llama2c();
  void llama2cTokenizerRequired();
  void gguf_data();
  void gguf();
  void ggufTokenizerFromMetadata();

 private:
  QTemporaryDir tmp_;
};

void TestLegacyFormats::llama2c_data() {
  QTest::addColumn<bool>("tied");
  QTest::addColumn<bool>("freq_cis");
  QTest::newRow("shared classifier, legacy freq_cis") << true << true;
  QTest::newRow("shared classifier, no freq_cis") << true << false;
  QTest::newRow("own classifier (negative vocab_size)") << false << true;
}

void TestLegacyFormats::llama2c() {
  QFETCH(bool, tied);
  QFETCH(bool, freq_cis);
  auto m = random_model(small_config(tied), 31);
  const auto path = fs::path(tmp_.path().toStdString()) /
                    (std::string("m_") + QTest::currentDataTag()).append(".bin");
  test::write_llama2c(path.string(), *m, 32, freq_cis);
  QCOMPARE(detect_format(path.string()), ModelFormat::Llama2c);
  auto loaded = load_model(path.string());
  QCOMPARE(loaded.format, ModelFormat::Llama2c);
  QCOMPARE(loaded.source_dtype, std::string("F32"));
  const auto& cfg = loaded.model->config();
  QCOMPARE(cfg.tie_word_embeddings, tied);
  QCOMPARE(cfg.head_dim, int64_t(8));
  QCOMPARE(cfg.max_position_embeddings, int64_t(32));
  QVERIFY(cfg.layers == m->config().layers);
  for (const auto& [name, t] : m->state_dict())
    QVERIFY2(torch::equal(t, loaded.model->parameter(name)), name.c_str());
  QCOMPARE(max_logit_diff(*m, *loaded.model), 0.0);
}

void TestLegacyFormats::llama2cTokenizerRequired() {
  auto m = random_model(small_config(true), 32);
  const auto path = fs::path(tmp_.path().toStdString()) / "lonely" / "model.bin";
  fs::create_directories(path.parent_path());
  test::write_llama2c(path.string(), *m, 32, true);
  LoadOptions lo;
  QVERIFY(load_model(path.string(), lo).tokenizer == nullptr);
  lo.require_tokenizer = true;
  try {
    load_model(path.string(), lo);
    QFAIL("expected InputError");
  } catch (const InputError& e) {
    QVERIFY2(std::string(e.what()).find("tok67.model") != std::string::npos, e.what());
  }
  lo.tokenizer_path = (path.parent_path() / "missing.model").string();
  QVERIFY_THROWS_EXCEPTION(InputError, load_model(path.string(), lo));
}

void TestLegacyFormats::gguf_data() {
  QTest::addColumn<int>("type");
  QTest::addColumn<bool>("tied");
  QTest::addColumn<bool>("write_tied_output");
  QTest::addColumn<double>("tolerance");  // on logits; weights N(0, 0.02)
  using W = test::GgufWriter;
  QTest::newRow("F32 tied, no output tensor") << int(W::F32) << true << false << 1e-5;
  QTest::newRow("F32 tied, output duplicated") << int(W::F32) << true << true << 1e-5;
  QTest::newRow("F32 untied") << int(W::F32) << false << false << 1e-5;
  QTest::newRow("F16") << int(W::F16) << false << false << 2e-3;
  QTest::newRow("BF16") << int(W::BF16) << true << false << 2e-2;
  QTest::newRow("Q8_0") << int(W::Q8_0) << false << false << 2e-2;
}

void TestLegacyFormats::gguf() {
  QFETCH(int, type);
  QFETCH(bool, tied);
  QFETCH(bool, write_tied_output);
  QFETCH(double, tolerance);
  const auto cfg = small_config(tied);
  auto m = random_model(cfg, 40 + type);
  test::GgufWriter w;
  w.add_llama_config(cfg);
  w.add_u32("general.alignment", 64);
  w.add_llama_tensors(*m, uint32_t(type), write_tied_output);
  static int counter = 0;
  const auto path =
      fs::path(tmp_.path().toStdString()) / ("m" + std::to_string(++counter) + ".gguf");
  {
    std::ofstream f(path, std::ios::binary);
    const auto b = w.bytes(64);
    f.write(b.data(), static_cast<std::streamsize>(b.size()));
  }
  auto loaded = load_model(path.string());
  QCOMPARE(loaded.format, ModelFormat::Gguf);
  QVERIFY(loaded.tokenizer == nullptr);  // no tokenizer.ggml.* metadata
  const auto& c2 = loaded.model->config();
  QCOMPARE(c2.tie_word_embeddings, tied);
  QVERIFY(c2.layers == cfg.layers);
  QCOMPARE(c2.head_dim, cfg.head_dim);
  QCOMPARE(c2.max_position_embeddings, cfg.max_position_embeddings);

  using W = test::GgufWriter;
  for (const auto& [name, t] : m->state_dict()) {
    const auto got = loaded.model->parameter(name);
    if (type == W::F32 || t.dim() == 1) {
      QVERIFY2(torch::equal(t, got), name.c_str());
    } else if (type == W::F16 || type == W::BF16) {
      const auto half = type == W::F16 ? torch::kFloat16 : torch::kBFloat16;
      QVERIFY2(torch::equal(t.to(half).to(torch::kFloat32), got), name.c_str());
    } else {
      // Q8_0: within half a quantisation step (max|block| / 127) plus the f16 rounding of the
      // scale (≤ 127 * 2^-11 steps).
      const double err = (t - got).abs().max().item<double>();
      const double step = t.abs().max().item<double>() / 127.0;
      QVERIFY2(err <= 0.6 * step,
               qPrintable(QString("%1: %2 > %3").arg(name.c_str()).arg(err).arg(0.6 * step)));
    }
  }
  const double diff = max_logit_diff(*m, *loaded.model);
  QVERIFY2(diff < tolerance, qPrintable(QString("max |Δlogit| = %1").arg(diff)));
}

void TestLegacyFormats::ggufTokenizerFromMetadata() {
  // Byte-fallback vocabulary: <unk>, <s>, </s>, 256 byte pieces, then a few merges.
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<int32_t> types = {2, 3, 3};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
    tokens.push_back(buf);
    types.push_back(6);
  }
  for (const char* p : {"\xE2\x96\x81", "a", "b",
                        "\xE2\x96\x81"
                        "a",
                        "ab"}) {
    tokens.push_back(p);
    types.push_back(1);
  }
  std::vector<float> scores(tokens.size(), 0.0f);
  for (size_t k = 259; k < tokens.size(); ++k)
    scores[k] = -float(k - 259);

  auto cfg = ModelConfig::uniform(int64_t(tokens.size()), 32, 1, 4, 4, 32);
  cfg.tie_word_embeddings = true;
  auto m = random_model(cfg, 50);
  test::GgufWriter w;
  w.add_llama_config(cfg);
  w.add_string("tokenizer.ggml.model", "llama");
  w.add_string_array("tokenizer.ggml.tokens", tokens);
  w.add_f32_array("tokenizer.ggml.scores", scores);
  w.add_i32_array("tokenizer.ggml.token_type", types);
  w.add_u32("tokenizer.ggml.bos_token_id", 1);
  w.add_u32("tokenizer.ggml.eos_token_id", 2);
  w.add_bool("tokenizer.ggml.add_space_prefix", true);
  w.add_llama_tensors(*m, test::GgufWriter::F32, false);
  const auto path = fs::path(tmp_.path().toStdString()) / "tok.gguf";
  w.write(path.string());

  auto loaded = load_model(path.string());
  QVERIFY(loaded.tokenizer != nullptr);
  QCOMPARE(loaded.tokenizer->vocab_size(), int64_t(tokens.size()));
  QCOMPARE(loaded.tokenizer->bos_id(), int64_t(1));
  QCOMPARE(loaded.tokenizer->eos_id(), int64_t(2));
  QCOMPARE(loaded.model->config().bos_token_id, int64_t(1));
  const auto ids = loaded.tokenizer->encode("ab");
  QCOMPARE(loaded.tokenizer->decode(ids), std::string("ab"));
}

QTEST_GUILESS_MAIN(TestLegacyFormats)
#include "test_legacy_formats.moc"
