// Subnet construction over the dependency analysis: zeroed groups and the physically smaller model
// give the same logits (with and without LoRA adapters); the parameter count is what the
// accounting predicted; ids survive pruning and reloading; bad removal sets change nothing.
#include <QtTest>

#include <torch/torch.h>

#include <random>

#include "checkpoint_writers.h"
#include "lorashear/errors.h"
#include "lorashear/io/loader.h"
#include "lorashear/prune/subnet.h"
#include "test_support.h"

using namespace lorashear;
using lorashear::test::random_model;

namespace {

// A random 30% of every prunable node group (at least one kv group kept).
std::vector<std::string> random_removal(const DependencyGraph& deps, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::string> out;
  for (const auto& g : deps.node_groups) {
    if (!g.prunable) continue;
    std::vector<int64_t> idx(static_cast<size_t>(g.size));
    std::iota(idx.begin(), idx.end(), 0);
    std::shuffle(idx.begin(), idx.end(), rng);
    int64_t n = (g.size * 3 + 9) / 10;
    if (g.kind == "attention") n = std::min(n, g.size - 1);
    for (int64_t i = 0; i < n; ++i)
      out.push_back(g.variable_group_id(idx[static_cast<size_t>(i)]));
  }
  return out;
}

// Adapters with nonzero B, so a forgotten B row or A column would show in the logits.
void attach_trained_lora(LlamaModelImpl& m, const std::vector<std::string>& targets) {
  LoraConfig lc;
  lc.rank = 3;
  lc.alpha = 6;
  lc.targets = targets;
  lc.seed = 4;
  attach_lora(m, lc);
  torch::NoGradGuard ng;
  for (auto& [name, t] : m.all_parameters())
    if (name.find(".lora_B.") != std::string::npos) t.normal_(0.0, 0.05);
}

// Zeroes `remove` in `m`, builds the subnet, checks its parameter count against the accounting's
// prediction and returns the max abs logit difference between the two.
double zero_vs_subnet(LlamaModelImpl& m, const DependencyGraph& deps,
                      const std::vector<std::string>& remove) {
  const int64_t predicted = m.num_parameters() - deps.removal_cost(remove).total.params;
  zero_groups(m, deps, remove);
  auto sub = construct_subnet(m, deps, remove);
  [&] { QCOMPARE(sub->num_parameters(), predicted); }();
  torch::NoGradGuard ng;
  auto tokens = torch::randint(0, m.config().vocab_size, {2, 37}, torch::kLong);
  return (m.forward(tokens) - sub->forward(tokens)).abs().max().item<double>();
}

ModelConfig variant_config(int variant) {
  ModelConfig cfg;
  if (variant == 0) cfg = ModelConfig::uniform(53, 32, 2, 4, 4, 40, 8);
  if (variant == 1) cfg = ModelConfig::uniform(53, 64, 2, 8, 2, 40, 8);
  if (variant == 2) {
    cfg = ModelConfig::uniform(53, 32, 2, 4, 2, 40, 8);
    cfg.model_type = "qwen2";
    cfg.attention_bias = true;
  }
  if (variant == 3) {
    cfg = ModelConfig::uniform(53, 48, 3, 6, 3, 64, 8);
    cfg.layers[1] = {4, 4, 20};
    cfg.layers[2] = {2, 2, 33};
  }
  if (variant == 4) {
    // Qwen3: head_dim ≠ hidden / heads, per-head q/k RMSNorm, biases on q/k/v/o.
    cfg = ModelConfig::uniform(53, 32, 2, 4, 2, 40, 12);
    cfg.model_type = "qwen3";
    cfg.qk_norm = true;
    cfg.attention_bias = true;
  }
  if (variant == 5) {
    // Llama with attention_bias (o_proj too) and mlp_bias.
    cfg = ModelConfig::uniform(53, 32, 2, 4, 2, 40, 8);
    cfg.attention_bias = true;
    cfg.mlp_bias = true;
  }
  cfg.tie_word_embeddings = variant == 1;
  return cfg;
}

}  // namespace

class TestSubnet : public QObject {
  Q_OBJECT
 private slots:
  void zeroInvariance_data() {
    QTest::addColumn<int>("variant");
    QTest::addColumn<bool>("lora");
    const char* names[] = {"mha untied",         "gqa 4:1 tied",   "q/k/v biases",
                           "non-uniform layers", "qwen3 q/k norm", "o and mlp biases"};
    for (int v = 0; v < 6; ++v) {
      QTest::newRow(names[v]) << v << false;
      QTest::newRow((std::string(names[v]) + " + lora").c_str()) << v << true;
    }
  }
  void zeroInvariance() {
    QFETCH(int, variant);
    QFETCH(bool, lora);
    auto m = random_model(variant_config(variant), 5 + variant);
    if (lora) attach_trained_lora(*m, LoraConfig::default_targets());
    const auto deps = analyze_model(*m);
    const double diff = zero_vs_subnet(*m, deps, random_removal(deps, 17));
    if (QTest::currentTestFailed()) return;
    QVERIFY2(diff < 1e-5, qPrintable(QString("max abs diff %1").arg(diff)));
  }

  void stories260K_data() {
    QTest::addColumn<bool>("lora");
    QTest::newRow("base") << false;
    QTest::newRow("lora") << true;
  }
  void stories260K() {
    QFETCH(bool, lora);
    LORASHEAR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
    // In float64: in float32 the smaller matrix products round differently (about 2e-5 on logits
    // of magnitude 10), which would hide nothing but blur the 1e-5 bound.
    LoadOptions opts;
    opts.model.dtype = torch::kFloat64;
    auto loaded =
        load_model(test::shared_path("models/stories260K/stories260K.bin").string(), opts);
    if (lora) attach_trained_lora(*loaded.model, LoraConfig::default_targets());
    const auto deps = analyze_model(*loaded.model);
    const double diff = zero_vs_subnet(*loaded.model, deps, random_removal(deps, 3));
    if (QTest::currentTestFailed()) return;
    QVERIFY2(diff < 1e-5, qPrintable(QString("max abs diff %1").arg(diff)));
  }

  void loraTargetsDecideTheSearchSpace() {
    auto m = random_model(variant_config(2), 3);
    attach_trained_lora(*m, {"q_proj", "v_proj"});
    const auto deps = analyze_model(*m);
    const auto attn = deps.find_node_group("L0.attn"), mlp = deps.find_node_group("L0.mlp");
    QVERIFY(attn >= 0 && mlp >= 0);
    QVERIFY(deps.node_groups[static_cast<size_t>(attn)].prunable);
    QVERIFY(!deps.node_groups[static_cast<size_t>(mlp)].prunable);
    QVERIFY(QString::fromStdString(deps.node_groups[static_cast<size_t>(mlp)].reason)
                .contains("LoRA target"));
    const double diff = zero_vs_subnet(*m, deps, {"L0.attn.kv1", "L1.attn.kv0"});
    QVERIFY2(diff < 1e-5, qPrintable(QString("max abs diff %1").arg(diff)));
  }

  void idsSurvivePruningAndReloading() {
    auto m = random_model(ModelConfig::uniform(53, 32, 2, 4, 2, 40, 8), 9);
    auto deps = analyze_model(*m);
    auto sub = construct_subnet(*m, deps, {"L0.attn.kv0", "L1.mlp.c3", "L1.mlp.c7"});
    QCOMPARE(sub->config().layers[0].n_heads, int64_t(2));
    QCOMPARE(sub->config().layers[0].n_kv_heads, int64_t(1));
    QCOMPARE(sub->config().layers[1].intermediate_size, int64_t(38));
    QTemporaryDir dir;
    save_hf(*sub, nullptr, dir.path().toStdString());
    auto back = load_model(dir.path().toStdString());
    torch::NoGradGuard ng;
    auto tokens = torch::randint(0, 53, {1, 20}, torch::kLong);
    QVERIFY(torch::equal(back.model->forward(tokens), sub->forward(tokens)));

    // The reloaded model's groups keep their original ids; removed ones are reported as such.
    auto after = analyze_model(*back.model);
    const auto& attn = after.node_groups[static_cast<size_t>(after.find_node_group("L0.attn"))];
    QCOMPARE(attn.size, int64_t(1));
    QCOMPARE(attn.variable_group_id(0), std::string("L0.attn.kv1"));
    const auto [g, k] = after.resolve("L1.mlp.c8");
    QCOMPARE(after.node_groups[g].id, std::string("L1.mlp"));
    QCOMPARE(k, int64_t(6));
    try {
      after.resolve("L1.mlp.c3");
      QFAIL("a removed group resolved");
    } catch (const UsageError& e) {
      QVERIFY2(QString(e.what()).contains("pruned"), e.what());
    }
    // Pruning again by original ids removes the right slices.
    const auto w = back.model->parameter("model.layers.1.mlp.up_proj.weight");
    auto again = construct_subnet(*back.model, after, {"L1.mlp.c8"});
    const auto w2 = again->parameter("model.layers.1.mlp.up_proj.weight");
    QCOMPARE(w2.size(0), int64_t(37));
    QVERIFY(torch::equal(w2.narrow(0, 6, 31), w.narrow(0, 7, 31)));
  }

  void badRemovalSetsAreRefused_data() {
    QTest::addColumn<QStringList>("ids");
    QTest::addColumn<QString>("named");
    QTest::newRow("unknown layer") << QStringList{"L9.attn.kv0"} << "L9.attn.kv0";
    QTest::newRow("unknown head") << QStringList{"L0.attn.kv2"} << "L0.attn.kv2";
    QTest::newRow("unknown channel") << QStringList{"L1.mlp.c40"} << "L1.mlp.c40";
    QTest::newRow("not an id") << QStringList{"L1.mlp.x"} << "L1.mlp.x";
    QTest::newRow("unprunable") << QStringList{"hidden.c3"} << "not prunable";
    QTest::newRow("duplicate") << QStringList{"L1.mlp.c4", "L1.mlp.c4"} << "twice";
    QTest::newRow("every head") << QStringList{"L0.attn.kv0", "L0.attn.kv1"} << "L0.attn";
  }
  void badRemovalSetsAreRefused() {
    QFETCH(QStringList, ids);
    QFETCH(QString, named);
    auto m = random_model(ModelConfig::uniform(53, 32, 2, 4, 2, 40, 8), 2);
    const auto deps = analyze_model(*m);
    const auto before = m->parameter("model.layers.0.self_attn.q_proj.weight").clone();
    std::vector<std::string> remove;
    for (const auto& id : ids)
      remove.push_back(id.toStdString());
    for (int op = 0; op < 3; ++op) {
      try {
        if (op == 0) construct_subnet(*m, deps, remove);
        if (op == 1) zero_groups(*m, deps, remove);
        if (op == 2) deps.removal_cost(remove);
        QFAIL("expected UsageError");
      } catch (const UsageError& e) {
        QVERIFY2(QString(e.what()).contains(named), e.what());
      }
    }
    QVERIFY(torch::equal(before, m->parameter("model.layers.0.self_attn.q_proj.weight")));
  }
};

QTEST_GUILESS_MAIN(TestSubnet)
#include "test_subnet.moc"
