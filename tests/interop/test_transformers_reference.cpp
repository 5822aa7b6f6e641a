// The LLaMA-family architectures against an independent reference written from transformers'
// semantics in Debian's python3-torch (tests/interop/transformers_reference.py, float64, no code of
// this project): the reference writes a tiny random model of each family in the Hugging Face layout
// with that family's config.json keys (rope_scaling llama3 / linear / dynamic / yarn, head_dim
// override, q/k/v(/o) and MLP biases, Qwen3 q/k norms, tied and untied heads, GQA ratios 1-4,
// Mistral's sliding window, bf16 storage, PEFT LoRA adapters); we load it and compare the logits
// and the greedy tokens generated with the KV cache. A model pruned by one kv group and MLP
// channels in every layer and exported is read back by the reference with the same logits.
#include <QtTest>

#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTemporaryDir>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "lorashear/errors.h"
#include "lorashear/eval/generate.h"
#include "lorashear/io/loader.h"
#include "lorashear/prune/subnet.h"
#include "test_support.h"

using namespace lorashear;
namespace fs = std::filesystem;

namespace {

const char* kPython = "/usr/bin/python3";

QString reference_script() {
  return QString::fromStdString(
      test::source_path("tests/interop/transformers_reference.py").string());
}

bool have_torch() {
  static const bool ok = [] {
    if (!fs::exists(kPython)) return false;
    return test::run_process(kPython, {"-c", "import torch"}, 120000).code == 0;
  }();
  return ok;
}

struct Family {
  const char* name;
  const char* config;  // config.json keys as the family writes them
  const char* dtype;
  const char* lora;  // PEFT adapter spec or nullptr
  int prompt_len;
};

// Small sizes, the families' own keys. vocab 61, hidden 32 unless said.
const Family kFamilies[] = {
    {"llama3.x rope llama3, gqa 2, tied, bf16, lora",
     R"({"architectures":["LlamaForCausalLM"],"model_type":"llama","vocab_size":61,
         "hidden_size":32,"intermediate_size":48,"num_hidden_layers":2,"num_attention_heads":4,
         "num_key_value_heads":2,"head_dim":8,"max_position_embeddings":64,"rms_norm_eps":1e-5,
         "rope_theta":500000.0,"tie_word_embeddings":true,"attention_bias":false,"mlp_bias":false,
         "hidden_act":"silu","bos_token_id":1,"eos_token_id":[2,3],"torch_dtype":"bfloat16",
         "rope_scaling":{"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,
                         "original_max_position_embeddings":16,"rope_type":"llama3"}})",
     "BF16", R"({"r":4,"lora_alpha":8,"target_modules":["q_proj","k_proj","v_proj","o_proj",
                 "gate_proj","up_proj","down_proj"]})",
     12},
    {"llama rope linear, mha, q/k/v/o and mlp biases, untied",
     R"({"model_type":"llama","vocab_size":61,"hidden_size":32,"intermediate_size":40,
         "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":4,
         "max_position_embeddings":64,"rms_norm_eps":1e-6,"rope_theta":10000.0,
         "tie_word_embeddings":false,"attention_bias":true,"mlp_bias":true,
         "rope_scaling":{"type":"linear","factor":2.0}})",
     "F32", nullptr, 12},
    {"llama rope dynamic beyond max_position_embeddings, gqa 4",
     R"({"model_type":"llama","vocab_size":61,"hidden_size":32,"intermediate_size":40,
         "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":1,
         "max_position_embeddings":8,"rope_theta":10000.0,"tie_word_embeddings":false,
         "rope_scaling":{"rope_type":"dynamic","factor":2.0}})",
     "F32", nullptr, 13},
    {"llama rope yarn",
     R"({"model_type":"llama","vocab_size":61,"hidden_size":32,"intermediate_size":40,
         "num_hidden_layers":2,"num_attention_heads":2,"num_key_value_heads":2,"head_dim":32,
         "max_position_embeddings":256,"rope_theta":10000.0,"tie_word_embeddings":false,
         "rope_scaling":{"rope_type":"yarn","factor":4.0,"original_max_position_embeddings":64}})",
     "F32", nullptr, 12},
    {"qwen2.5 biases, gqa 3, tied, lora",
     R"({"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2","vocab_size":61,
         "hidden_size":48,"intermediate_size":40,"num_hidden_layers":2,"num_attention_heads":6,
         "num_key_value_heads":2,"max_position_embeddings":64,"rms_norm_eps":1e-6,
         "rope_theta":1000000.0,"tie_word_embeddings":true,"use_sliding_window":false,
         "sliding_window":32768,"max_window_layers":2,"hidden_act":"silu","bos_token_id":1,
         "eos_token_id":2,"torch_dtype":"bfloat16"})",
     "F32", R"({"r":2,"lora_alpha":4,"target_modules":["q_proj","v_proj"]})", 12},
    {"qwen3 q/k norm, head_dim 12 != hidden/heads, gqa 2, untied, lora",
     R"({"architectures":["Qwen3ForCausalLM"],"model_type":"qwen3","vocab_size":61,
         "hidden_size":32,"intermediate_size":40,"num_hidden_layers":2,"num_attention_heads":4,
         "num_key_value_heads":2,"head_dim":12,"max_position_embeddings":64,"rms_norm_eps":1e-6,
         "rope_theta":1000000.0,"tie_word_embeddings":false,"attention_bias":false,
         "use_sliding_window":false,"sliding_window":null,"hidden_act":"silu",
         "bos_token_id":1,"eos_token_id":2,"torch_dtype":"bfloat16","rope_scaling":null})",
     "BF16", R"({"r":3,"lora_alpha":6,"target_modules":["q_proj","k_proj","o_proj","down_proj"]})",
     12},
    {"qwen3 yarn with attention_bias",
     R"({"model_type":"qwen3","vocab_size":61,"hidden_size":32,"intermediate_size":40,
         "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":1,"head_dim":16,
         "max_position_embeddings":64,"rope_theta":1000000.0,"tie_word_embeddings":true,
         "attention_bias":true,
         "rope_scaling":{"rope_type":"yarn","factor":4.0,"original_max_position_embeddings":16}})",
     "F32", nullptr, 12},
    {"mistral sliding window (context beyond it), gqa 4",
     R"({"architectures":["MistralForCausalLM"],"model_type":"mistral","vocab_size":61,
         "hidden_size":32,"intermediate_size":40,"num_hidden_layers":2,"num_attention_heads":4,
         "num_key_value_heads":1,"head_dim":null,"max_position_embeddings":128,
         "rms_norm_eps":1e-5,"rope_theta":10000.0,"sliding_window":7,
         "tie_word_embeddings":false,"hidden_act":"silu"})",
     "F32", nullptr, 12},
};

constexpr int kGenerate = 6;

std::vector<int64_t> prompt_of(int n) {
  std::vector<int64_t> ids;
  for (int i = 0; i < n; ++i)
    ids.push_back((i * 17 + 5) % 61);
  return ids;
}

QString ids_text(const std::vector<int64_t>& ids) {
  QStringList parts;
  for (auto id : ids)
    parts << QString::number(id);
  return parts.join(",");
}

struct Reference {
  torch::Tensor logits;  // [T, vocab] float64
  std::vector<int64_t> generated;
  QString error;
};

Reference reference_run(const QString& dir, const std::vector<int64_t>& ids, const QString& adapter,
                        int generate) {
  QStringList args{reference_script(), "run", dir, ids_text(ids)};
  if (!adapter.isEmpty()) args << "--adapter" << adapter;
  if (generate > 0) args << "--generate" << QString::number(generate);
  const auto r = test::run_process(kPython, args, 300000);
  Reference out;
  const auto j = QJsonDocument::fromJson(r.out.toUtf8()).object();
  if (r.code != 0 || !j.contains("logits")) {
    out.error = r.out + r.err;
    return out;
  }
  std::vector<double> flat;
  const auto rows = j["logits"].toArray();
  for (const auto& row : rows)
    for (const auto& v : row.toArray())
      flat.push_back(v.toDouble());
  out.logits = torch::tensor(flat, torch::kFloat64).view({rows.size(), -1});
  for (const auto& v : j["generated"].toArray())
    out.generated.push_back(v.toInt());
  return out;
}

bool make_model(const Family& f, const QString& dir, int seed) {
  const QString spec = dir + "-spec.json";
  {
    std::ofstream out(spec.toStdString());
    out << "{\"seed\": " << seed << ", \"dtype\": \"" << f.dtype << "\", \"config\": " << f.config;
    if (f.lora) out << ", \"lora\": " << f.lora;
    out << "}";
  }
  const auto r = test::run_process(kPython, {reference_script(), "make", spec, dir}, 300000);
  if (r.code != 0) qWarning("%s", qPrintable(r.out + r.err));
  return r.code == 0;
}

torch::Tensor our_logits(LlamaModelImpl& m, const std::vector<int64_t>& ids) {
  torch::NoGradGuard ng;
  m.eval();
  return m.forward(torch::tensor(ids, torch::kInt64).view({1, -1}))[0].to(torch::kFloat64);
}

double max_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

}  // namespace

class TestTransformersReference : public QObject {
  Q_OBJECT
 private slots:
  void init() {
    if (!have_torch()) QSKIP("needs Debian's python3-torch under /usr/bin/python3");
  }

  void families_data() {
    QTest::addColumn<int>("index");
    for (int i = 0; i < static_cast<int>(std::size(kFamilies)); ++i)
      QTest::newRow(kFamilies[i].name) << i;
  }
  // Logits of the loaded model (and with its LoRA adapter), then greedy decoding with the cache.
  void families() {
    QFETCH(int, index);
    const Family& f = kFamilies[index];
    QTemporaryDir tmp;
    const QString dir = tmp.path() + "/model";
    QVERIFY(make_model(f, dir, 11 + index));
    const auto ids = prompt_of(f.prompt_len);

    for (bool with_adapter : {false, true}) {
      if (with_adapter && f.lora == nullptr) continue;
      const QString adapter = with_adapter ? dir + "/adapter" : QString();
      LoadOptions lo;
      lo.adapter_path = adapter.toStdString();
      auto loaded = load_model(dir.toStdString(), lo);
      const auto ref = reference_run(dir, ids, adapter, kGenerate);
      QVERIFY2(ref.error.isEmpty(), qPrintable(ref.error));
      const auto ours = our_logits(*loaded.model, ids);
      QCOMPARE(ours.sizes().vec(), ref.logits.sizes().vec());
      const double scale = ref.logits.abs().max().item<double>();
      const double diff = max_diff(ours, ref.logits);
      QVERIFY2(diff < 2e-5 * std::max(1.0, scale),
               qPrintable(QString("%1%2: max |logit diff| %3 (logits up to %4)")
                              .arg(f.name)
                              .arg(with_adapter ? " + adapter" : "")
                              .arg(diff)
                              .arg(scale)));
      GenerateOptions go;
      go.max_new_tokens = kGenerate;
      go.stop_at_eos = false;
      const auto gen = generate(*loaded.model, ids, go);
      QCOMPARE(gen.tokens, ref.generated);
    }
  }

  // Configuration details the families carry through loading.
  void configFields() {
    QTemporaryDir tmp;
    const QString dir = tmp.path() + "/model";
    QVERIFY(make_model(kFamilies[0], dir, 1));
    auto loaded = load_model(dir.toStdString());
    const auto& cfg = loaded.model->config();
    QCOMPARE(cfg.rope_scaling.type, std::string("llama3"));
    QCOMPARE(cfg.eos_token_ids, (std::vector<int64_t>{2, 3}));
    QCOMPARE(loaded.source_dtype, std::string("BF16"));
    QVERIFY(cfg.tie_word_embeddings);
    QCOMPARE(cfg.to_hf_json()["eos_token_id"], nlohmann::json({2, 3}));
    // Generation stops at any of the EOS ids: the model's list, or the caller's.
    GenerateOptions go;
    go.max_new_tokens = 6;
    go.stop_at_eos = false;
    const auto ids = prompt_of(12);
    const auto free_run = generate(*loaded.model, ids, go).tokens;
    QCOMPARE(free_run.size(), size_t(6));
    go.stop_at_eos = true;
    go.eos_ids = {free_run[2]};
    const auto stopped = generate(*loaded.model, ids, go).tokens;
    const auto first = std::find(free_run.begin(), free_run.end(), free_run[2]) - free_run.begin();
    QCOMPARE(stopped, std::vector<int64_t>(free_run.begin(), free_run.begin() + first + 1));
  }

  // Mistral's sliding window on the differentiable (blocked) path too: float64 weights, a prompt
  // three windows long, against the reference.
  void slidingWindowBlockedPath() {
    QTemporaryDir tmp;
    const QString dir = tmp.path() + "/model";
    const Family& mistral = kFamilies[std::size(kFamilies) - 1];
    QVERIFY(make_model(mistral, dir, 2));
    LoadOptions lo;
    lo.model.dtype = torch::kFloat64;
    auto loaded = load_model(dir.toStdString(), lo);
    QCOMPARE(loaded.model->config().sliding_window, int64_t{7});
    const auto ids = prompt_of(21);
    const auto ref = reference_run(dir, ids, {}, 0);
    QVERIFY2(ref.error.isEmpty(), qPrintable(ref.error));
    const double diff = max_diff(our_logits(*loaded.model, ids), ref.logits);
    // (RMSNorm statistics are float32 even for float64 weights.)
    QVERIFY2(diff < 2e-6 * std::max(1.0, ref.logits.abs().max().item<double>()),
             qPrintable(QString("max |logit diff| %1").arg(diff)));
    // Without the window the logits differ: the test sees it.
    auto cfg = loaded.model->config();
    cfg.sliding_window = 0;
    LlamaModel full(cfg, lo.model);
    {
      torch::NoGradGuard ng;
      for (auto& [name, t] : full->state_dict())
        t.copy_(loaded.model->parameter(name));
    }
    QVERIFY(max_diff(our_logits(*full, ids), ref.logits) > 1e-3);
  }

  void pruned_data() {
    QTest::addColumn<int>("index");
    QTest::newRow("qwen3") << 5;
    QTest::newRow("llama biases") << 1;
    QTest::newRow("qwen2.5") << 4;
  }
  // One kv group and a quarter of the MLP channels removed in every layer: the exported folder
  // is a plain model of the family, which the reference reads with our pruned model's logits.
  void pruned() {
    QFETCH(int, index);
    const Family& f = kFamilies[index];
    QTemporaryDir tmp;
    const QString dir = tmp.path() + "/model";
    QVERIFY(make_model(f, dir, 5));
    auto loaded = load_model(dir.toStdString());
    const auto deps = analyze_model(*loaded.model);
    std::vector<std::string> remove;
    for (const auto& g : deps.node_groups) {
      if (!g.prunable) continue;
      const int64_t n = g.kind == "attention" ? 1 : g.size / 4;
      for (int64_t k = 0; k < n; ++k)
        remove.push_back(g.variable_group_id(g.size - 1 - k));
    }
    QVERIFY(!remove.empty());
    auto sub = construct_subnet(*loaded.model, deps, remove);
    QVERIFY(sub->config().uniform_layers());
    QVERIFY(sub->config().layers[0].n_kv_heads < loaded.model->config().layers[0].n_kv_heads);
    const QString out = tmp.path() + "/pruned";
    save_hf(*sub, nullptr, out.toStdString());
    const auto ids = prompt_of(f.prompt_len);
    const auto ref = reference_run(out, ids, {}, 0);
    QVERIFY2(ref.error.isEmpty(), qPrintable(ref.error));
    const double diff = max_diff(our_logits(*sub, ids), ref.logits);
    QVERIFY2(diff < 2e-5 * std::max(1.0, ref.logits.abs().max().item<double>()),
             qPrintable(QString("max |logit diff| %1").arg(diff)));
  }
};

QTEST_GUILESS_MAIN(TestTransformersReference)
#include "test_transformers_reference.moc"
