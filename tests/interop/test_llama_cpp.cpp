// GGUF exports run in a real llama.cpp (node-llama-cpp's prebuilt CPU binary, installed from the
// npm registry by scripts/bootstrap.sh): stories260K and the demo model, dense and pruned (layers
// of different sizes → "deci", every layer the same size → "llama"), in f32 / f16 / q8_0.
// llama.cpp's logits on a fixed token list are compared with the project's own forward of the same
// model, greedy text with f32, and the windows-L perplexity of the GGUF in both programs.
#include <QtTest>

#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QStandardPaths>
#include <QTemporaryDir>

#include <filesystem>
#include <fstream>

#include "checkpoint_writers.h"
#include "lorashear/errors.h"
#include "lorashear/eval/perplexity.h"
#include "lorashear/io/gguf.h"
#include "lorashear/io/loader.h"
#include "lorashear/io/text.h"
#include "lorashear/prune/subnet.h"
#include "lorashear/tokenizer/tokenizer.h"
#include "test_support.h"

using namespace lorashear;
namespace fs = std::filesystem;

namespace {

// Logit tolerances, as a fraction of the logits' range (max - min) over the token list.
// f32 is the same arithmetic in a different order. f16 / q8_0 compare llama.cpp with the project's
// float32 forward of the *original* weights, so they include the rounding of the weights (and, for
// q8_0, llama.cpp's 8-bit quantisation of the activations in its matrix products).
constexpr double kTolF32 = 1e-4;
constexpr double kTolF16 = 5e-3;
constexpr double kTolQ8 = 3e-2;
// Between llama.cpp and the project's forward of the GGUF file as the project reads it back
// (the same rounded weights): what is left is the activations' arithmetic.
constexpr double kTolF16Reloaded = 1e-3;
constexpr double kTolQ8Reloaded = 2e-2;

fs::path modules_dir() {
  if (const char* env = std::getenv("LORASHEAR_LLAMA_CPP_DIR")) return env;
  return LORASHEAR_INTEROP_DIR;
}

QString node_path() {
  return QStandardPaths::findExecutable("node");
}

// Skips unless node and node-llama-cpp are installed (bootstrap does it when the npm registry is
// reachable).
#define REQUIRE_LLAMA_CPP()                                                                    \
  do {                                                                                         \
    if (node_path().isEmpty())                                                                 \
      QSKIP("node (Node.js) is not installed: the llama.cpp interop tests need it");           \
    if (!fs::exists(modules_dir() / "node_modules/node-llama-cpp/package.json"))               \
      QSKIP(qPrintable(QString("llama.cpp via node-llama-cpp is not installed in %1 (scripts/" \
                               "bootstrap.sh installs it from the npm registry)")              \
                           .arg(QString::fromStdString(modules_dir().string()))));             \
  } while (0)

// Runs the jobs in one llama.cpp process; one result object per job.
QJsonArray run_llama_cpp(const QJsonArray& jobs, const QString& dir) {
  const QString file = dir + "/jobs.json";
  {
    QFile f(file);
    if (!f.open(QIODevice::WriteOnly)) return {};
    f.write(QJsonDocument(jobs).toJson(QJsonDocument::Compact));
  }
  QProcess p;
  p.start(node_path(),
          {QString::fromStdString(test::source_path("tests/interop/llama_cpp.mjs").string()),
           QString::fromStdString(modules_dir().string()), file});
  if (!p.waitForFinished(540000)) {
    p.kill();
    qWarning("llama.cpp did not finish");
    return {};
  }
  const auto err = p.readAllStandardError();
  if (p.exitCode() != 0) qWarning("llama.cpp failed: %s", err.constData());
  return QJsonDocument::fromJson(p.readAllStandardOutput()).array();
}

QJsonArray ids_json(const std::vector<int64_t>& ids) {
  QJsonArray a;
  for (auto t : ids)
    a.append(static_cast<qint64>(t));
  return a;
}

torch::Tensor logits_of(const QJsonObject& result) {
  const auto rows = result["logits"].toArray();
  if (rows.isEmpty()) return {};
  const auto n = rows[0].toArray().size();
  auto t = torch::empty({rows.size(), n}, torch::kFloat64);
  auto acc = t.accessor<double, 2>();
  for (int i = 0; i < rows.size(); ++i) {
    const auto r = rows[i].toArray();
    for (int k = 0; k < r.size() && k < n; ++k)
      acc[i][k] = r[k].toDouble();
  }
  return t;
}

torch::Tensor our_logits(LlamaModelImpl& m, const std::vector<int64_t>& ids) {
  torch::NoGradGuard ng;
  m.eval();
  auto t = torch::tensor(ids, torch::kInt64).view({1, -1});
  return m.forward(t)[0].to(torch::kFloat64);
}

// max |a - b| / (max(b) - min(b)).
double relative_diff(const torch::Tensor& a, const torch::Tensor& b) {
  const double range = (b.max() - b.min()).item<double>();
  return (a - b).abs().max().item<double>() / range;
}

std::vector<int64_t> greedy(LlamaModelImpl& m, std::vector<int64_t> ids, int n) {
  torch::NoGradGuard ng;
  std::vector<int64_t> out;
  for (int i = 0; i < n; ++i) {
    const auto next = our_logits(m, ids)[-1].argmax().item<int64_t>();
    out.push_back(next);
    ids.push_back(next);
  }
  return out;
}

struct Variant {
  std::string name;
  LlamaModel model{nullptr};
  std::string arch;  // expected GGUF architecture
};

// The same removal ids for a model with this config: layer l loses `kv[l]` kv groups (the first
// ones, shifted by l) and `mlp[l]` channels spread over the layer.
std::vector<std::string> removal(const ModelConfig& cfg, const std::vector<int>& kv,
                                 const std::vector<int>& mlp) {
  std::vector<std::string> ids;
  for (int64_t l = 0; l < cfg.n_layers(); ++l) {
    const auto& d = cfg.layers[static_cast<size_t>(l)];
    for (int k = 0; k < kv[static_cast<size_t>(l)]; ++k)
      ids.push_back("L" + std::to_string(l) + ".attn.kv" + std::to_string((k + l) % d.n_kv_heads));
    for (int c = 0; c < mlp[static_cast<size_t>(l)]; ++c)
      ids.push_back("L" + std::to_string(l) + ".mlp.c" +
                    std::to_string((c * 7 + 3 * l) % d.intermediate_size));
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

struct Case {
  QString file;
  Variant v;
  GgufDtype dtype;
};

}  // namespace

class TestLlamaCpp : public QObject {
  Q_OBJECT

  // The dense model and two pruned ones: different kv groups and MLP widths per layer (layer 0
  // included) and the same size in every layer.
  std::vector<Variant> variants(LlamaModel dense, const std::vector<int>& kv_nonuniform,
                                const std::vector<int>& mlp_nonuniform, int kv_uniform,
                                int mlp_uniform) {
    std::vector<Variant> out;
    const auto& cfg = dense->config();
    const auto deps = analyze_model(*dense);
    out.push_back({"dense", dense, "llama"});
    out.push_back({"non-uniform",
                   construct_subnet(*dense, deps, removal(cfg, kv_nonuniform, mlp_nonuniform)),
                   "deci"});
    const std::vector<int> kv(static_cast<size_t>(cfg.n_layers()), kv_uniform);
    const std::vector<int> mlp(static_cast<size_t>(cfg.n_layers()), mlp_uniform);
    out.push_back({"uniform", construct_subnet(*dense, deps, removal(cfg, kv, mlp)), "llama"});
    return out;
  }

  // Exports every variant in f32 / f16 / q8_0 and checks llama.cpp's logits (and, in f32, greedy
  // text) against the project's forward; returns the f32 files for the perplexity checks.
  void check_model(const LoadedModel& loaded, std::vector<Variant> vs,
                   const std::vector<int64_t>& prompt, const QString& dir) {
    std::vector<Case> cases;
    QJsonArray jobs;
    for (auto& v : vs) {
      QCOMPARE(QString::fromStdString(gguf_architecture(v.model->config())),
               QString::fromStdString(v.arch));
      for (auto dtype : {GgufDtype::F32, GgufDtype::F16, GgufDtype::Q8_0}) {
        const QString file =
            dir + "/" + QString::fromStdString(v.name + "-" + gguf_dtype_name(dtype)) + ".gguf";
        GgufSaveOptions o;
        o.dtype = dtype;
        const auto report = save_gguf(*v.model, loaded.tokenizer.get(), file.toStdString(), o);
        QCOMPARE(QString::fromStdString(report.architecture), QString::fromStdString(v.arch));
        QCOMPARE(static_cast<qint64>(report.bytes),
                 static_cast<qint64>(fs::file_size(file.toStdString())));
        cases.push_back({file, v, dtype});
        jobs.append(QJsonObject{{"op", "logits"}, {"model", file}, {"tokens", ids_json(prompt)}});
        if (dtype == GgufDtype::F32)
          jobs.append(QJsonObject{
              {"op", "generate"}, {"model", file}, {"tokens", ids_json({prompt[0]})}, {"n", 40}});
      }
    }
    const auto results = run_llama_cpp(jobs, dir);
    QCOMPARE(results.size(), jobs.size());
    int r = 0;
    for (auto& c : cases) {
      const auto res = results[r++].toObject();
      const QString what = QString("%1 %2 (%3)")
                               .arg(QString::fromStdString(c.v.name),
                                    QString::fromStdString(gguf_dtype_name(c.dtype)), c.file);
      QVERIFY2(!res.contains("error"),
               qPrintable(what + ": llama.cpp: " + res["error"].toString()));
      const auto theirs = logits_of(res);
      const auto ours = our_logits(*c.v.model, prompt);
      QVERIFY2(theirs.defined() && theirs.sizes() == ours.sizes(), qPrintable(what));
      const double diff = relative_diff(theirs, ours);
      // The project reads its own export back: the same logits as the model written (f32) or
      // the llama.cpp ones within the reloaded tolerance (the same rounded weights).
      auto back = load_model(c.file.toStdString());
      const double back_diff = relative_diff(theirs, our_logits(*back.model, prompt));
      const double tol = c.dtype == GgufDtype::F32   ? kTolF32
                         : c.dtype == GgufDtype::F16 ? kTolF16
                                                     : kTolQ8;
      const double back_tol = c.dtype == GgufDtype::F32   ? kTolF32
                              : c.dtype == GgufDtype::F16 ? kTolF16Reloaded
                                                          : kTolQ8Reloaded;
      qInfo("%s: llama.cpp vs project logits %.3g of the range (reloaded GGUF: %.3g)",
            qPrintable(what), diff, back_diff);
      QVERIFY2(diff <= tol, qPrintable(what + QString(": %1 > %2").arg(diff).arg(tol)));
      QVERIFY2(back_diff <= back_tol,
               qPrintable(what + QString(": reloaded %1 > %2").arg(back_diff).arg(back_tol)));
      QCOMPARE(back.model->config().layers.size(), c.v.model->config().layers.size());
      for (size_t l = 0; l < back.model->config().layers.size(); ++l) {
        const auto& a = back.model->config().layers[l];
        const auto& b = c.v.model->config().layers[l];
        QVERIFY(a == b);
        QVERIFY(a.kv_origin == b.kv_origin && a.channel_origin == b.channel_origin);
      }
      if (c.dtype == GgufDtype::F32) {
        const auto gen = results[r++].toObject();
        QVERIFY2(!gen.contains("error"), qPrintable(gen["error"].toString()));
        std::vector<int64_t> theirs_text;
        for (const auto& t : gen["tokens"].toArray())
          theirs_text.push_back(t.toInteger());
        const auto ours_text = greedy(*c.v.model, {prompt[0]}, 40);
        QVERIFY2(
            theirs_text == ours_text,
            qPrintable(what + ": greedy text differs: llama.cpp \"" +
                       QString::fromStdString(loaded.tokenizer->decode(theirs_text)) + "\" vs \"" +
                       QString::fromStdString(loaded.tokenizer->decode(ours_text)) + "\""));
      }
    }
  }

  // windows-L perplexity of each f32 file: the project (loading the GGUF, tokenising with its
  // vocabulary) and llama.cpp (its own tokenizer) agree to 0.1%.
  void check_perplexity(const std::vector<QString>& files, const QString& text, int64_t ctx,
                        int64_t windows, const QString& dir) {
    QJsonArray jobs;
    for (const auto& f : files)
      jobs.append(QJsonObject{{"op", "ppl"},
                              {"model", f},
                              {"text", text},
                              {"ctx", static_cast<qint64>(ctx)},
                              {"windows", static_cast<qint64>(windows)}});
    const auto results = run_llama_cpp(jobs, dir);
    QCOMPARE(results.size(), jobs.size());
    const auto corpus = read_text_corpus(text.toStdString());
    for (size_t i = 0; i < files.size(); ++i) {
      const auto res = results[static_cast<int>(i)].toObject();
      QVERIFY2(!res.contains("error"), qPrintable(res["error"].toString()));
      auto loaded = load_model(files[i].toStdString());
      const auto ids = loaded.tokenizer->encode(corpus);
      PerplexityOptions po;
      po.seq_len = ctx;
      po.max_windows = windows;
      const auto ours = perplexity(*loaded.model, ids, po);
      const double theirs = res["ppl"].toDouble();
      const double rel = std::abs(theirs - ours.ppl) / ours.ppl;
      qInfo(
          "%s: windows-%lld ppl over %lld windows: project %.5f (%zu tokens), llama.cpp %.5f "
          "(%lld tokens): %.3g%%",
          qPrintable(files[i]), static_cast<long long>(ctx), static_cast<long long>(windows),
          ours.ppl, ids.size(), theirs, static_cast<long long>(res["tokens"].toInteger()),
          100 * rel);
      QVERIFY2(rel <= 1e-3, qPrintable(files[i] + QString(": %1 vs %2").arg(ours.ppl).arg(theirs)));
    }
  }

 private slots:
  void stories260k() {
    REQUIRE_LLAMA_CPP();
    LORASHEAR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
    QTemporaryDir dir;
    auto loaded = load_model(test::shared_path("models/stories260K/stories260K.bin").string());
    QVERIFY(loaded.tokenizer);
    // 5 layers, 4 kv groups, 172 channels: layer 0 loses a kv group too.
    auto vs = variants(loaded.model, {1, 0, 2, 1, 3}, {20, 0, 60, 100, 35}, 1, 43);
    const auto prompt = loaded.tokenizer->encode(
        "Once upon a time, there was a little girl named Lily. She loved to play", true);
    check_model(loaded, vs, prompt, dir.path());
    check_perplexity(
        {dir.path() + "/dense-f32.gguf", dir.path() + "/non-uniform-f32.gguf",
         dir.path() + "/uniform-f32.gguf"},
        QString::fromStdString(test::shared_path("data/text/tinystories_val_subset.txt").string()),
        512, 24, dir.path());
  }

  void demoModel() {
    REQUIRE_LLAMA_CPP();
    LORASHEAR_REQUIRE_SHARED("data/text/tinystories_val_subset.txt");
    QTemporaryDir dir;
    auto loaded = load_model(test::source_path("resources/demo-model").string());
    QVERIFY(loaded.tokenizer);
    // 4 layers, 2 kv groups, 256 channels.
    auto vs = variants(loaded.model, {1, 0, 1, 0}, {64, 10, 130, 3}, 1, 96);
    const auto prompt = loaded.tokenizer->encode("Once upon a time, there was a big dog.", true);
    check_model(loaded, vs, prompt, dir.path());
    check_perplexity(
        {dir.path() + "/dense-f32.gguf", dir.path() + "/non-uniform-f32.gguf"},
        QString::fromStdString(test::shared_path("data/text/tinystories_val_subset.txt").string()),
        256, 24, dir.path());
  }

  // Shapes llama.cpp handles only with care: a layer without attention (not layer 0), a layer
  // whose MLP is gone entirely (written with width 1 and a zero down column), a model whose
  // adapter is attached unmerged (merged while writing). Layer 0 without attention is refused.
  void unusualShapes() {
    REQUIRE_LLAMA_CPP();
    LORASHEAR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
    QTemporaryDir dir;
    auto loaded = load_model(test::shared_path("models/stories260K/stories260K.bin").string());
    auto cfg = ModelConfig::uniform(512, 64, 4, 4, 2, 96, 16);
    cfg.tie_word_embeddings = false;
    cfg.layers[1] = LayerDims(0, 0, 64);  // no attention
    cfg.layers[2] = LayerDims(8, 4, 0);   // no MLP
    cfg.layers[3] = LayerDims(2, 1, 32);
    auto odd = test::random_model(cfg, 5);
    QCOMPARE(QString::fromStdString(gguf_architecture(cfg)), QString("deci"));
    auto adapted = test::random_model(ModelConfig::uniform(512, 64, 2, 4, 2, 96, 16), 6);
    LoraConfig lc;
    lc.rank = 4;
    attach_lora(*adapted, lc);
    {
      // Non-zero B, so the adapter changes the output.
      torch::NoGradGuard ng;
      for (auto& [name, t] : adapted->all_parameters())
        if (name.find("lora_B") != std::string::npos) t.normal_(0, 0.05);
    }
    const QString odd_file = dir.filePath("odd.gguf"), adapted_file = dir.filePath("lora.gguf");
    const auto report = save_gguf(*odd, loaded.tokenizer.get(), odd_file.toStdString());
    QCOMPARE(report.notes.size(), size_t(1));
    QVERIFY(QString::fromStdString(report.notes[0]).contains("layer 2"));
    save_gguf(*adapted, loaded.tokenizer.get(), adapted_file.toStdString());
    QVERIFY(adapted->lora() != nullptr);  // the model itself is not modified
    const std::vector<int64_t> prompt = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298};
    const auto results = run_llama_cpp(
        {QJsonObject{{"op", "logits"}, {"model", odd_file}, {"tokens", ids_json(prompt)}},
         QJsonObject{{"op", "logits"}, {"model", adapted_file}, {"tokens", ids_json(prompt)}}},
        dir.path());
    QCOMPARE(results.size(), 2);
    for (const auto& [i, model] : {std::pair{0, odd.get()}, std::pair{1, adapted.get()}}) {
      const auto res = results[i].toObject();
      QVERIFY2(!res.contains("error"), qPrintable(res["error"].toString()));
      const double diff = relative_diff(logits_of(res), our_logits(*model, prompt));
      qInfo("case %d: %.3g", i, diff);
      QVERIFY2(diff <= kTolF32, qPrintable(QString::number(diff)));
    }
    // Read back by the project: the no-attention layer stays without attention.
    auto back = load_model(odd_file.toStdString());
    QCOMPARE(back.model->config().layers[1].n_heads, int64_t(0));
    QCOMPARE(back.model->config().layers[2].intermediate_size, int64_t(1));
    QVERIFY(relative_diff(our_logits(*back.model, prompt), our_logits(*odd, prompt)) < 1e-5);

    cfg.layers[0] = LayerDims(0, 0, 64);
    auto no_attention_first = test::random_model(cfg, 7);
    const QString refused = dir.filePath("refused.gguf");
    try {
      save_gguf(*no_attention_first, loaded.tokenizer.get(), refused.toStdString());
      QFAIL("layer 0 without attention was written");
    } catch (const UsageError& e) {
      QVERIFY2(QString(e.what()).contains("layer 0"), e.what());
    }
    QVERIFY(!QFile::exists(refused));
  }

  // The families of 2026 in llama.cpp: a tiny Qwen3 (q/k norms, head_dim ≠ hidden / heads), a
  // tiny Qwen2.5 (q/k/v biases, tied) and a tiny Llama 3.1 (llama3 RoPE scaling → rope_freqs),
  // each with Qwen3's real byte-level tokenizer.json (→ "gpt2" vocabulary with merges). Logits on
  // a token list match ours; llama.cpp tokenises the stress text to our ids; each file reads back.
  void tokenizerJsonFamilies() {
    REQUIRE_LLAMA_CPP();
    LORASHEAR_REQUIRE_SHARED("tokenizers/qwen3/tokenizer.json");
    QTemporaryDir dir;
    auto tok = Tokenizer::from_file(test::shared_path("tokenizers/qwen3/tokenizer.json").string());
    auto base = [] {
      auto c = ModelConfig::uniform(151936, 64, 2, 4, 2, 96, 16);
      c.max_position_embeddings = 256;
      c.rope_theta = 1000000.0;
      c.bos_token_id = 151643;
      c.eos_token_id = 151645;
      c.eos_token_ids = {151645, 151643};
      return c;
    };
    auto qwen3 = base();
    qwen3.model_type = "qwen3";
    qwen3.qk_norm = true;
    qwen3.head_dim = 32;  // q is 128 wide, hidden 64
    auto qwen2 = base();
    qwen2.model_type = "qwen2";
    qwen2.attention_bias = true;
    qwen2.tie_word_embeddings = true;
    auto llama3 = base();
    llama3.rope_theta = 500000.0;
    llama3.rope_scaling.type = "llama3";
    llama3.rope_scaling.factor = 8.0;
    llama3.rope_scaling.low_freq_factor = 1.0;
    llama3.rope_scaling.high_freq_factor = 4.0;
    llama3.rope_scaling.original_max_position_embeddings = 32;
    const std::vector<std::pair<const char*, ModelConfig>> cases = {
        {"qwen3", qwen3}, {"qwen2", qwen2}, {"llama", llama3}};
    const std::vector<int64_t> prompt = {9707, 11, 1879, 0, 576, 374, 264, 1273, 315, 279, 1849};
    QJsonArray jobs;
    std::vector<LlamaModel> models;
    for (const auto& [arch, cfg] : cases) {
      models.push_back(test::random_model(cfg, 21));
      const QString file = dir.filePath(QString(arch) + ".gguf");
      const auto report = save_gguf(*models.back(), tok.get(), file.toStdString());
      QCOMPARE(QString::fromStdString(report.architecture), QString(arch));
      jobs.append(QJsonObject{{"op", "logits"}, {"model", file}, {"tokens", ids_json(prompt)}});
      // Read back by the project: same architecture, same tokenizer, same logits.
      auto back = load_model(file.toStdString());
      QCOMPARE(QString::fromStdString(back.model->config().model_type),
               QString(cfg.model_type.c_str()));
      QCOMPARE(back.model->config().rope_scaling.type, cfg.rope_scaling.type);
      QVERIFY(back.tokenizer);
      QCOMPARE(back.tokenizer->kind(), tok->kind());
      QVERIFY(relative_diff(our_logits(*back.model, prompt), our_logits(*models.back(), prompt)) <
              1e-6);
    }
    // Texts llama.cpp tokenises: the stress text with special-token strings matched (less "</s>",
    // which llama.cpp makes an end-of-generation control token in any vocabulary, unlike
    // tokenizers) and the TinyStories subset.
    std::string stress = test::read_all(test::shared_path("tokenizers/stress.txt"));
    for (size_t at; (at = stress.find("</s>")) != std::string::npos;)
      stress.erase(at, 4);
    const QString stress_file = dir.filePath("stress.txt");
    std::ofstream(stress_file.toStdString()) << stress;
    const fs::path stories = test::shared_path("data/text/tinystories_val_subset.txt");
    const std::vector<std::pair<QString, std::string>> texts = {
        {stress_file, stress}, {QString::fromStdString(stories.string()), test::read_all(stories)}};
    for (size_t i = 0; i < texts.size(); ++i)
      jobs.append(QJsonObject{{"op", "tokenize"},
                              {"model", dir.filePath("qwen3.gguf")},
                              {"text", texts[i].first},
                              {"special", i == 0}});
    const auto results = run_llama_cpp(jobs, dir.path());
    QCOMPARE(results.size(), jobs.size());
    for (size_t i = 0; i < cases.size(); ++i) {
      const auto res = results[static_cast<int>(i)].toObject();
      QVERIFY2(!res.contains("error"), qPrintable(res["error"].toString()));
      const double diff = relative_diff(logits_of(res), our_logits(*models[i], prompt));
      qInfo("%s: %.3g", cases[i].first, diff);
      QVERIFY2(diff <= kTolF32, qPrintable(QString("%1: %2").arg(cases[i].first).arg(diff)));
    }
    // llama.cpp's own tokenizer (its qwen2 pre-tokenizer and our merges) gives our ids.
    for (size_t t = 0; t < texts.size(); ++t) {
      std::vector<int64_t> theirs;
      for (const auto& v :
           results[static_cast<int>(cases.size() + t)].toObject()["tokens"].toArray())
        theirs.push_back(v.toInteger());
      const auto ours = tok->encode(texts[t].second);
      size_t first = 0;
      while (first < ours.size() && first < theirs.size() && ours[first] == theirs[first])
        ++first;
      QVERIFY2(theirs == ours,
               qPrintable(QString("%1: llama.cpp %2 ids, ours %3; first difference at %4: "
                                  "llama.cpp %5, ours %6")
                              .arg(texts[t].first)
                              .arg(theirs.size())
                              .arg(ours.size())
                              .arg(first)
                              .arg(first < theirs.size() ? theirs[first] : -1)
                              .arg(first < ours.size() ? ours[first] : -1)));
    }
  }
};

QTEST_GUILESS_MAIN(TestLlamaCpp)
#include "test_llama_cpp.moc"
