// LoRA adapters: attach keeps the outputs, merge/unmerge/fold are exact, the PEFT layout
// round-trips, and adapters that do not fit the model are refused without touching it.
#include <QtTest>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "checkpoint_writers.h"
#include "lorashear/errors.h"
#include "lorashear/io/safetensors.h"
#include "lorashear/model/llama.h"

using namespace lorashear;
using lorashear::test::random_model;

namespace {

ModelConfig config() {
  auto c = ModelConfig::uniform(41, 32, 2, 4, 2, 24, 8);
  c.attention_bias = true;
  c.model_type = "qwen2";
  return c;
}

void randomise_b(LlamaModelImpl& m) {
  torch::NoGradGuard ng;
  for (auto& [name, t] : m.all_parameters())
    if (name.find(".lora_B.") != std::string::npos) t.normal_(0.0, 0.1);
}

torch::Tensor logits(LlamaModelImpl& m) {
  torch::NoGradGuard ng;
  m.eval();
  return m.forward(torch::arange(12, torch::kLong).remainder(41).view({2, 6}));
}

}  // namespace

class TestLora : public QObject {
  Q_OBJECT
 private slots:
  void attachKeepsOutputs() {
    auto m = random_model(config(), 1);
    const auto before = logits(*m);
    LoraConfig lc;
    lc.rank = 4;
    attach_lora(*m, lc);
    QVERIFY(torch::equal(before, logits(*m)));
    QCOMPARE(static_cast<int>(lora_parameters(*m).size()), 2 * 7 * 2);
    QCOMPARE(m->num_parameters() - static_cast<int64_t>(0),
             config().num_parameters() +
                 2 * (4 * (32 + 32) + 4 * (32 + 16) * 2 + 4 * (32 + 32) + 3 * 4 * (32 + 24)));
    const auto a = m->parameter("model.layers.0.self_attn.q_proj.lora_A.weight");
    QVERIFY(a.abs().max().item<double>() > 0);
    QVERIFY(a.abs().max().item<double>() <= 1.0 / std::sqrt(32.0) + 1e-7);
    freeze_base_weights(*m);
    QVERIFY(!m->parameter("model.layers.0.self_attn.q_proj.weight").requires_grad());
    QVERIFY(a.requires_grad());
  }

  // Activation checkpointing changes memory, never results: the same loss and the same gradient
  // in every LoRA factor (and with LoRA dropout, whose masks the recomputation must redraw alike);
  // a KV-cache or no-grad forward is unaffected.
  void activationCheckpointingGivesTheSameGradients_data() {
    QTest::addColumn<double>("dropout");
    QTest::newRow("no dropout") << 0.0;
    QTest::newRow("dropout 0.3") << 0.3;
  }
  void activationCheckpointingGivesTheSameGradients() {
    QFETCH(double, dropout);
    auto m = random_model(config(), 3);
    LoraConfig lc;
    lc.rank = 4;
    lc.dropout = dropout;
    attach_lora(*m, lc);
    randomise_b(*m);
    freeze_base_weights(*m);
    m->train();
    const auto tokens = torch::arange(24, torch::kLong).remainder(41).view({3, 8});
    const auto run = [&](bool checkpointing) {
      m->set_activation_checkpointing(checkpointing);
      for (auto& t : lora_parameters(*m))
        t.mutable_grad() = torch::Tensor();
      torch::manual_seed(7);
      auto logits = m->forward(tokens);
      auto loss = torch::nn::functional::cross_entropy(logits.reshape({-1, 41}),
                                                       tokens.roll(-1, 1).reshape({-1}));
      loss.backward();
      std::vector<torch::Tensor> grads;
      for (auto& t : lora_parameters(*m)) {
        if (!t.grad().defined()) return std::make_pair(loss.item<double>(), grads);
        grads.push_back(t.grad().clone());
      }
      return std::make_pair(loss.item<double>(), grads);
    };
    const auto [plain_loss, plain] = run(false);
    const auto [ckpt_loss, ckpt] = run(true);
    QCOMPARE(static_cast<int>(plain.size()), static_cast<int>(lora_parameters(*m).size()));
    QCOMPARE(static_cast<int>(ckpt.size()), static_cast<int>(plain.size()));
    QVERIFY2(std::abs(ckpt_loss - plain_loss) <= 1e-6 * std::abs(plain_loss),
             qPrintable(QString("loss %1 vs %2").arg(ckpt_loss).arg(plain_loss)));
    for (size_t i = 0; i < plain.size(); ++i) {
      QVERIFY(plain[i].abs().max().item<double>() > 0);
      // The recomputed layer runs the same ops, but BLAS may split its sums differently between
      // calls (threads): equal up to float rounding, relative to the factor's own scale.
      const double scale = plain[i].abs().max().item<double>();
      QVERIFY2((ckpt[i] - plain[i]).abs().max().item<double>() <= 1e-5 * scale,
               qPrintable(QString("factor %1 differs by %2")
                              .arg(i)
                              .arg((ckpt[i] - plain[i]).abs().max().item<double>())));
    }
    m->eval();
    const auto without_grad = logits(*m);  // checkpointing still on: no-grad forwards ignore it
    m->set_activation_checkpointing(false);
    QVERIFY(torch::equal(without_grad, logits(*m)));
  }

  void mergeUnmergeFold() {
    auto m = random_model(config(), 2);
    LoraConfig lc;
    lc.rank = 3;
    lc.alpha = 9;
    attach_lora(*m, lc);
    randomise_b(*m);
    const auto with = logits(*m);
    const auto w0 = m->parameter("model.layers.1.mlp.down_proj.weight").clone();
    merge_lora(*m);
    merge_lora(*m);  // idempotent
    QVERIFY(!torch::allclose(w0, m->parameter("model.layers.1.mlp.down_proj.weight")));
    QVERIFY(torch::allclose(with, logits(*m), 1e-5, 1e-5));
    unmerge_lora(*m);
    QVERIFY(torch::allclose(w0, m->parameter("model.layers.1.mlp.down_proj.weight"), 1e-6, 1e-6));
    QVERIFY(torch::allclose(with, logits(*m), 1e-5, 1e-5));
    fold_lora(*m);
    QVERIFY(m->lora() == nullptr);
    QCOMPARE(m->num_parameters(), config().num_parameters());
    QVERIFY(torch::allclose(with, logits(*m), 1e-5, 1e-5));
  }

  void peftRoundTrip() {
    auto m = random_model(config(), 3);
    LoraConfig lc;
    lc.rank = 2;
    lc.alpha = 4;
    lc.dropout = 0.05;
    lc.targets = {"q_proj", "v_proj", "down_proj"};
    attach_lora(*m, lc);
    randomise_b(*m);
    QTemporaryDir dir;
    const auto path = dir.path().toStdString();
    save_lora_adapter(*m, path);
    std::ifstream in(path + "/adapter_config.json");
    const auto j = nlohmann::json::parse(in);
    QCOMPARE(j["r"].get<int>(), 2);
    QCOMPARE(j["lora_alpha"].get<double>(), 4.0);
    QCOMPARE(j["peft_type"].get<std::string>(), std::string("LORA"));
    SafetensorsFile st(path + "/adapter_model.safetensors");
    QVERIFY(st.find("base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight") != nullptr);
    QCOMPARE(static_cast<int>(st.entries().size()), 2 * 3 * 2);

    LlamaModel fresh(config());  // the same base weights, no adapter
    {
      torch::NoGradGuard ng;
      const auto base = m->state_dict();
      for (auto& [name, t] : fresh->state_dict())
        t.copy_(base.at(name));
    }
    load_lora_adapter(*fresh, path);
    QCOMPARE(fresh->lora()->targets, lc.targets);
    QCOMPARE(fresh->lora()->dropout, 0.05);
    QVERIFY(torch::equal(logits(*m), logits(*fresh)));
  }

  void badAdaptersAreRefused() {
    auto m = random_model(config(), 4);
    LoraConfig lc;
    lc.rank = 2;
    attach_lora(*m, lc);
    QTemporaryDir dir;
    const auto path = dir.path().toStdString();
    save_lora_adapter(*m, path);
    // An adapter for a model of another width.
    auto other = random_model(ModelConfig::uniform(41, 48, 2, 4, 2, 24, 8), 4);
    try {
      load_lora_adapter(*other, path);
      QFAIL("adapter of another shape accepted");
    } catch (const InputError& e) {
      QVERIFY2(QString(e.what()).contains("adapter_model.safetensors") &&
                   QString(e.what()).contains("shape"),
               e.what());
    }
    QVERIFY(other->lora() == nullptr);
    // A config with an unknown target; a missing directory.
    std::ofstream(path + "/adapter_config.json")
        << R"({"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["wq"]})";
    QVERIFY_THROWS_EXCEPTION(InputError, load_lora_adapter(*other, path));
    QVERIFY_THROWS_EXCEPTION(InputError, load_lora_adapter(*other, path + "/nope"));
    QVERIFY_THROWS_EXCEPTION(UsageError, save_lora_adapter(*other, path + "/x"));
  }
};

QTEST_GUILESS_MAIN(TestLora)
#include "test_lora.moc"
