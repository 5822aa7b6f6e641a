// Subnet construction: zeroed groups and the physically smaller model give the same logits; the
// parameter count is predicted exactly; bad removal sets are refused without touching the model.
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

// A random 30% of every layer's kv groups (at least one kept) and MLP channels.
std::vector<VariableGroupRef> random_removal(const ModelConfig& cfg, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<VariableGroupRef> out;
  for (int64_t l = 0; l < cfg.n_layers(); ++l) {
    const auto& d = cfg.layers[static_cast<size_t>(l)];
    std::vector<int64_t> kv(d.n_kv_heads), ch(d.intermediate_size);
    std::iota(kv.begin(), kv.end(), 0);
    std::iota(ch.begin(), ch.end(), 0);
    std::shuffle(kv.begin(), kv.end(), rng);
    std::shuffle(ch.begin(), ch.end(), rng);
    const int64_t n_kv = std::min<int64_t>(d.n_kv_heads - 1, (d.n_kv_heads * 3 + 9) / 10);
    for (int64_t i = 0; i < n_kv; ++i)
      out.push_back({VariableGroupRef::Kind::AttentionKv, l, kv[static_cast<size_t>(i)]});
    for (int64_t i = 0; i < d.intermediate_size * 3 / 10; ++i)
      out.push_back({VariableGroupRef::Kind::MlpChannel, l, ch[static_cast<size_t>(i)]});
  }
  return out;
}

// Zeroes `remove` in `m`, builds the subnet, checks its parameter count against the prediction and
// returns the max abs logit difference between the two.
double zero_vs_subnet(LlamaModelImpl& m, const std::vector<VariableGroupRef>& remove) {
  zero_groups(m, remove);
  auto sub = construct_subnet(m, remove);
  [&] { QCOMPARE(sub->num_parameters(), subnet_parameters(m.config(), remove)); }();
  torch::NoGradGuard ng;
  auto tokens = torch::randint(0, m.config().vocab_size, {2, 37}, torch::kLong);
  return (m.forward(tokens) - sub->forward(tokens)).abs().max().item<double>();
}

}  // namespace

class TestSubnet : public QObject {
  Q_OBJECT
 private slots:
  void ids() {
    QCOMPARE(VariableGroupRef::parse("L3.attn.kv1").id(), std::string("L3.attn.kv1"));
    QCOMPARE(VariableGroupRef::parse("L12.mlp.c117").index, int64_t(117));
    QVERIFY_THROWS_EXCEPTION(UsageError, VariableGroupRef::parse("L3.attn.h1"));
  }

  void zeroInvariance_data() {
    QTest::addColumn<int>("variant");
    QTest::newRow("mha untied") << 0;
    QTest::newRow("gqa 4:1 tied") << 1;
    QTest::newRow("biases") << 2;
    QTest::newRow("non-uniform layers") << 3;
  }
  void zeroInvariance() {
    QFETCH(int, variant);
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
    cfg.tie_word_embeddings = variant == 1;
    auto m = random_model(cfg, 5 + variant);
    const double diff = zero_vs_subnet(*m, random_removal(cfg, 17));
    if (QTest::currentTestFailed()) return;
    QVERIFY2(diff < 1e-5, qPrintable(QString("max abs diff %1").arg(diff)));
  }

  void stories260K() {
    LORASHEAR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
    // In float64: in float32 the smaller matrix products round differently (about 2e-5 on logits
    // of magnitude 10), which would hide nothing but blur the 1e-5 bound.
    LoadOptions opts;
    opts.model.dtype = torch::kFloat64;
    auto loaded =
        load_model(test::shared_path("models/stories260K/stories260K.bin").string(), opts);
    const auto remove = random_removal(loaded.model->config(), 3);
    const double diff = zero_vs_subnet(*loaded.model, remove);
    if (QTest::currentTestFailed()) return;
    QVERIFY2(diff < 1e-5, qPrintable(QString("max abs diff %1").arg(diff)));
  }

  void subnetSavesAndReloads() {
    auto cfg = ModelConfig::uniform(53, 32, 2, 4, 2, 40, 8);
    auto m = random_model(cfg, 9);
    auto sub = construct_subnet(
        *m, {VariableGroupRef::parse("L0.attn.kv1"), VariableGroupRef::parse("L1.mlp.c3")});
    QCOMPARE(sub->config().layers[0].n_heads, int64_t(2));
    QCOMPARE(sub->config().layers[0].n_kv_heads, int64_t(1));
    QCOMPARE(sub->config().layers[1].intermediate_size, int64_t(39));
    QTemporaryDir dir;
    save_hf(*sub, nullptr, dir.path().toStdString());
    auto back = load_model(dir.path().toStdString());
    torch::NoGradGuard ng;
    auto tokens = torch::randint(0, 53, {1, 20}, torch::kLong);
    QVERIFY(torch::equal(back.model->forward(tokens), sub->forward(tokens)));
  }

  void badRemovalSetsAreRefused_data() {
    QTest::addColumn<QStringList>("ids");
    QTest::addColumn<QString>("named");
    QTest::newRow("unknown layer") << QStringList{"L9.attn.kv0"} << "L9.attn.kv0";
    QTest::newRow("unknown head") << QStringList{"L0.attn.kv2"} << "L0.attn.kv2";
    QTest::newRow("unknown channel") << QStringList{"L1.mlp.c40"} << "L1.mlp.c40";
    QTest::newRow("duplicate") << QStringList{"L1.mlp.c4", "L1.mlp.c4"} << "L1.mlp.c4";
    QTest::newRow("every head") << QStringList{"L0.attn.kv0", "L0.attn.kv1"} << "layer 0";
  }
  void badRemovalSetsAreRefused() {
    QFETCH(QStringList, ids);
    QFETCH(QString, named);
    auto m = random_model(ModelConfig::uniform(53, 32, 2, 4, 2, 40, 8), 2);
    const auto before = m->state_dict().at("model.layers.0.self_attn.q_proj.weight").clone();
    std::vector<VariableGroupRef> remove;
    for (const auto& id : ids)
      remove.push_back(VariableGroupRef::parse(id.toStdString()));
    for (int op = 0; op < 2; ++op) {
      try {
        if (op == 0)
          construct_subnet(*m, remove);
        else
          zero_groups(*m, remove);
        QFAIL("expected UsageError");
      } catch (const UsageError& e) {
        QVERIFY2(QString(e.what()).contains(named), e.what());
      }
    }
    QVERIFY(torch::equal(before, m->state_dict().at("model.layers.0.self_attn.q_proj.weight")));
  }
};

QTEST_GUILESS_MAIN(TestSubnet)
#include "test_subnet.moc"
