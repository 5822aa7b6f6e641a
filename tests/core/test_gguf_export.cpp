// save_gguf: every layer the same size → "llama", otherwise "deci" with per-layer arrays; the
// project reads its exports back (weights exact in F32, rounded as stated in F16 / BF16 / Q8_0;
// tokenizer, pruned indices); refusals and cancels leave no file; other architectures and
// tokenizer types are refused naming the key; the metadata listing of `info`.
// (llama.cpp itself runs these files in tests/interop.)
#include <QTemporaryDir>
#include <QtTest>

#include <torch/torch.h>

#include <atomic>
#include <filesystem>
#include <fstream>

#include "checkpoint_writers.h"
#include "lorashear/errors.h"
#include "lorashear/io/gguf.h"
#include "lorashear/io/loader.h"
#include "lorashear/model/lora.h"
#include "lorashear/prune/subnet.h"
#include "lorashear/tokenizer/tokenizer.h"

using namespace lorashear;
namespace fs = std::filesystem;
using lorashear::test::random_model;

namespace {

// A byte-fallback vocabulary of `n` pieces (n ≥ 264).
std::shared_ptr<Tokenizer> small_tokenizer(int64_t n) {
  std::vector<VocabEntry> v = {{"<unk>", 0, VocabEntry::Type::Unknown},
                               {"<s>", 0, VocabEntry::Type::Control},
                               {"</s>", 0, VocabEntry::Type::Control}};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    v.push_back({buf, 0, VocabEntry::Type::Byte});
  }
  for (int64_t i = static_cast<int64_t>(v.size()); i < n; ++i)
    v.push_back({"\xE2\x96\x81w" + std::to_string(i), -float(i), VocabEntry::Type::Normal});
  return Tokenizer::from_vocab(v, true, "test vocabulary", false);
}

ModelConfig config(bool tied) {
  auto c = ModelConfig::uniform(300, 64, 3, 8, 4, 96, 16);
  c.tie_word_embeddings = tied;
  c.max_position_embeddings = 64;
  return c;
}

using lorashear::test::max_logit_diff;

// A pruned model with layers of different sizes (layer 0 included).
LlamaModel pruned(const LlamaModel& m) {
  const auto deps = analyze_model(*m);
  return construct_subnet(*m, deps,
                          {"L0.attn.kv1", "L0.mlp.c3", "L0.mlp.c4", "L2.attn.kv0", "L2.attn.kv2",
                           "L2.mlp.c0", "L2.mlp.c90", "L2.mlp.c95"});
}

}  // namespace

class TestGgufExport : public QObject {
  Q_OBJECT

 private slots:
  void roundTrip_data() {
    QTest::addColumn<QString>("dtype");
    QTest::addColumn<bool>("non_uniform");
    QTest::addColumn<bool>("tied");
    for (const char* d : {"f32", "f16", "bf16", "q8_0"})
      for (bool nu : {false, true})
        QTest::newRow(qPrintable(QString("%1 %2").arg(d, nu ? "deci" : "llama")))
            << QString(d) << nu << (nu ? true : false);
    QTest::newRow("f32 llama untied") << "f32" << false << false;
  }
  void roundTrip() {
    QFETCH(QString, dtype);
    QFETCH(bool, non_uniform);
    QFETCH(bool, tied);
    auto m = random_model(config(tied), 11);
    if (non_uniform) m = pruned(m);
    auto tok = small_tokenizer(290);  // fewer pieces than embedding rows: padded
    const auto path =
        (fs::path(tmp_.path().toStdString()) / (QTest::currentDataTag() + std::string(".gguf")))
            .string();
    GgufSaveOptions o;
    o.dtype = parse_gguf_dtype(dtype.toStdString());
    const auto report = save_gguf(*m, tok.get(), path, o);
    QCOMPARE(QString::fromStdString(report.architecture), QString(non_uniform ? "deci" : "llama"));
    QCOMPARE(report.bytes, static_cast<uint64_t>(fs::file_size(path)));
    QVERIFY(!fs::exists(path + ".tmp"));

    auto back = load_model(path);
    QCOMPARE(back.format, ModelFormat::Gguf);
    const auto& c = back.model->config();
    QVERIFY(c.layers == m->config().layers);
    for (size_t l = 0; l < c.layers.size(); ++l) {
      QVERIFY(c.layers[l].kv_origin == m->config().layers[l].kv_origin);
      QVERIFY(c.layers[l].channel_origin == m->config().layers[l].channel_origin);
    }
    QCOMPARE(c.head_dim, int64_t(16));
    QCOMPARE(c.vocab_size, int64_t(300));
    QCOMPARE(c.tie_word_embeddings, tied);
    QCOMPARE(c.max_position_embeddings, int64_t(64));
    // The vocabulary: the real pieces, then placeholders for the padded rows.
    QVERIFY(back.tokenizer);
    QCOMPARE(back.tokenizer->vocab_size(), int64_t(300));
    QCOMPARE(back.tokenizer->piece(289), tok->piece(289));
    QCOMPARE(back.tokenizer->piece(295), std::string("[PAD295]"));
    QCOMPARE(back.tokenizer->encode("w270 w271"), tok->encode("w270 w271"));

    for (const auto& [name, t] : m->state_dict()) {
      const auto got = back.model->parameter(name);
      if (o.dtype == GgufDtype::F32 || t.dim() == 1) {
        QVERIFY2(torch::equal(t, got), name.c_str());  // Q/K rows permuted there and back
      } else if (o.dtype == GgufDtype::F16 || o.dtype == GgufDtype::BF16 || t.size(1) % 32 != 0) {
        const auto half = o.dtype == GgufDtype::BF16 ? torch::kBFloat16 : torch::kFloat16;
        QVERIFY2(torch::equal(t.to(half).to(torch::kFloat32), got), name.c_str());
      } else {
        // Q8_0: half a step (max|block| / 127) plus the f16 rounding of the scale.
        const auto blocks = t.reshape({-1, 32});
        const auto step = blocks.abs().amax(1, true) / 127.0;
        const auto err = (t.reshape({-1, 32}) - got.reshape({-1, 32})).abs() / step;
        QVERIFY2(err.max().item<double>() <= 0.6, name.c_str());
      }
    }
    const double tol = o.dtype == GgufDtype::F32 ? 0 : o.dtype == GgufDtype::F16 ? 2e-3 : 2e-2;
    QVERIFY(max_logit_diff(*m, *back.model) <= tol);
    if (o.dtype == GgufDtype::Q8_0) {
      // ffn_down of 96-channel (non-uniform: fewer) layers: rows of 96 fit, rows of 94 do not.
      for (const auto& name : report.as_f16)
        QVERIFY2(QString::fromStdString(name).contains("ffn_down"), name.c_str());
      QCOMPARE(report.as_f16.empty(), !non_uniform);
    }
  }

  void adapterMergedWhileWriting() {
    auto m = random_model(config(true), 12);
    LoraConfig lc;
    lc.rank = 4;
    attach_lora(*m, lc);
    {
      torch::NoGradGuard ng;
      for (auto& [name, t] : m->all_parameters())
        if (name.find("lora_B") != std::string::npos) t.normal_(0, 0.05);
    }
    auto tok = small_tokenizer(300);
    const auto path = tmp_.filePath("adapter.gguf").toStdString();
    save_gguf(*m, tok.get(), path);
    QVERIFY(m->lora() != nullptr);  // untouched
    auto back = load_model(path);
    QVERIFY2(max_logit_diff(*m, *back.model) < 1e-4,
             qPrintable(QString::number(max_logit_diff(*m, *back.model))));
  }

  void removedMlpIsWrittenWithWidthOne() {
    auto cfg = config(true);
    cfg.layers[1] = LayerDims(8, 4, 0);
    cfg.layers[2] = LayerDims(0, 0, 96);  // no attention, not in layer 0: fine
    auto m = random_model(cfg, 13);
    auto tok = small_tokenizer(300);
    const auto path = tmp_.filePath("odd.gguf").toStdString();
    const auto report = save_gguf(*m, tok.get(), path);
    QCOMPARE(QString::fromStdString(report.architecture), QString("deci"));
    QCOMPARE(report.notes.size(), size_t(1));
    auto back = load_model(path);
    QCOMPARE(back.model->config().layers[1].intermediate_size, int64_t(1));
    QCOMPARE(back.model->config().layers[2].n_heads, int64_t(0));
    QVERIFY(max_logit_diff(*m, *back.model) < 1e-5);
    // Every layer's MLP removed: widths of 1 everywhere, still one size → "llama".
    auto flat = ModelConfig::uniform(300, 64, 2, 8, 4, 0, 16);
    QCOMPARE(QString::fromStdString(gguf_architecture(flat)), QString("llama"));
  }

  void refusals() {
    auto tok = small_tokenizer(300);
    auto m = random_model(config(true), 14);
    const auto path = tmp_.filePath("refused.gguf").toStdString();
    auto expect = [&](const LlamaModelImpl& model, const Tokenizer* t, const std::string& out,
                      const char* needle) {
      try {
        save_gguf(model, t, out);
        QFAIL("written");
      } catch (const Error& e) {
        QVERIFY2(QString(e.what()).contains(needle), e.what());
      }
      QVERIFY(!fs::exists(out));
      QVERIFY(!fs::exists(out + ".tmp"));
    };
    expect(*m, nullptr, path, "no tokenizer");
    auto cfg = config(true);
    cfg.layers[0] = LayerDims(0, 0, 96);
    expect(*random_model(cfg, 15), tok.get(), path, "layer 0");
    cfg = config(true);
    cfg.attention_bias = true;
    expect(*random_model(cfg, 16), tok.get(), path, "biases");
    expect(*m, tok.get(), tmp_.filePath("no/such/folder/x.gguf").toStdString(), "no/such/folder");
    QVERIFY_THROWS_EXCEPTION(UsageError, parse_gguf_dtype("q4_k"));

    // A cancel mid-write leaves an existing file as it was and no temporary.
    const auto existing = tmp_.filePath("existing.gguf").toStdString();
    std::ofstream(existing) << "old";
    std::atomic<bool> cancel{false};
    TaskContext ctx;
    ctx.cancel = &cancel;
    int reports = 0;
    ctx.on_progress = [&](const Progress& p) {
      if (p.stage == "save" && ++reports == 5) cancel = true;
    };
    QVERIFY_THROWS_EXCEPTION(CancelledError, save_gguf(*m, tok.get(), existing, {}, &ctx));
    std::ifstream in(existing);
    std::string content;
    in >> content;
    QCOMPARE(content, std::string("old"));
    QVERIFY(!fs::exists(existing + ".tmp"));
  }

  void otherArchitecturesAreRefused_data() {
    QTest::addColumn<QString>("architecture");
    QTest::addColumn<QString>("tokenizer");
    QTest::addColumn<QString>("key");
    QTest::newRow("gpt2 architecture") << "gpt2"
                                       << "llama"
                                       << "general.architecture";
    QTest::newRow("gemma3 architecture") << "gemma3"
                                         << "llama"
                                         << "general.architecture";
    QTest::newRow("BPE tokenizer") << "llama"
                                   << "gpt2"
                                   << "tokenizer.ggml.model";
  }
  void otherArchitecturesAreRefused() {
    QFETCH(QString, architecture);
    QFETCH(QString, tokenizer);
    QFETCH(QString, key);
    const auto cfg = config(true);
    auto m = random_model(cfg, 17);
    test::GgufWriter w;
    w.add_string("general.architecture", architecture.toStdString());
    const std::string a = architecture.toStdString() + ".";
    w.add_u32(a + "embedding_length", 64);
    w.add_u32(a + "block_count", 3);
    w.add_u32(a + "feed_forward_length", 96);
    w.add_u32(a + "attention.head_count", 8);
    w.add_u32(a + "attention.head_count_kv", 4);
    w.add_u32(a + "attention.key_length", 16);
    w.add_string("tokenizer.ggml.model", tokenizer.toStdString());
    std::vector<std::string> pieces;
    for (int i = 0; i < 300; ++i)
      pieces.push_back("t" + std::to_string(i));
    w.add_string_array("tokenizer.ggml.tokens", pieces);
    w.add_llama_tensors(*m, test::GgufWriter::F32, false);
    const auto path =
        tmp_.filePath(QString("other-%1-%2.gguf").arg(architecture, tokenizer)).toStdString();
    w.write(path);
    try {
      load_model(path);
      QFAIL("loaded");
    } catch (const InputError& e) {
      QVERIFY2(QString(e.what()).contains(QString::fromStdString(path)), e.what());
      QVERIFY2(QString(e.what()).contains(key), e.what());
    }
  }

  void metadataListing() {
    auto m = pruned(random_model(config(true), 18));
    auto tok = small_tokenizer(300);
    const auto path = tmp_.filePath("meta.gguf").toStdString();
    GgufSaveOptions o;
    o.dtype = GgufDtype::Q8_0;
    o.name = "tiny pruned";
    save_gguf(*m, tok.get(), path, o);
    const auto meta = gguf_metadata(path);
    QVERIFY(!meta.empty());
    QCOMPARE(meta.front().first, std::string("general.architecture"));
    QCOMPARE(meta.front().second, std::string("\"deci\""));
    std::map<std::string, std::string> kv(meta.begin(), meta.end());
    QCOMPARE(kv["general.name"], std::string("\"tiny pruned\""));
    QCOMPARE(kv["general.file_type"], std::string("7"));
    QCOMPARE(kv["deci.attention.head_count"], std::string("[6, 8, 4]"));
    QCOMPARE(kv["deci.attention.head_count_kv"], std::string("[3, 4, 2]"));
    QCOMPARE(kv["deci.feed_forward_length"], std::string("[94, 96, 93]"));
    QCOMPARE(kv["deci.attention.key_length"], std::string("16"));
    QVERIFY2(QString::fromStdString(kv["tokenizer.ggml.tokens"])
                 .startsWith("[300 string values: \"<unk>\", \"<s>\", \"</s>\""),
             kv["tokenizer.ggml.tokens"].c_str());
    QCOMPARE(kv["lorashear.original_indices.kv_heads"], std::string("[\"0,2-3\", \"\", \"1,3\"]"));
    QVERIFY_THROWS_EXCEPTION(InputError, gguf_metadata(tmp_.filePath("nothing").toStdString()));
  }

  void loadTargets() {
    auto m = random_model(config(true), 19);
    auto targets = load_targets(m->config());
    QCOMPARE(targets.size(), size_t(2));
    QCOMPARE(QString::fromStdString(targets[0].text()), QString("llama.cpp \u2713 (llama)"));
    QCOMPARE(QString::fromStdString(targets[1].text()), QString("transformers / vLLM \u2713"));
    targets = load_targets(pruned(m)->config());
    QCOMPARE(QString::fromStdString(targets[0].text()), QString("llama.cpp \u2713 (deci)"));
    QCOMPARE(QString::fromStdString(targets[1].text()),
             QString("transformers / vLLM: needs the same size in every layer"));
  }

 private:
  QTemporaryDir tmp_;
};

QTEST_GUILESS_MAIN(TestGgufExport)
#include "test_gguf_export.moc"
