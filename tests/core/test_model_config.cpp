// ModelConfig: Hugging Face config.json round trip, per-layer dims, validation messages.
#include <QtTest>

#include <nlohmann/json.hpp>

#include <filesystem>

#include "lorashear/errors.h"
#include "lorashear/model/config.h"
#include "test_support.h"

using lorashear::InputError;
using lorashear::ModelConfig;

class TestModelConfig : public QObject {
  Q_OBJECT
 private slots:
  void uniformRoundTrip() {
    auto c = ModelConfig::uniform(512, 64, 5, 8, 4, 172);
    c.tie_word_embeddings = true;
    auto j = c.to_hf_json();
    QCOMPARE(j["num_attention_heads"].get<int>(), 8);
    QVERIFY(!j.contains("num_attention_heads_per_layer"));
    auto back = ModelConfig::from_hf_json(j, "config.json");
    QCOMPARE(back.head_dim, 8);
    QCOMPARE(back.n_layers(), 5);
    QVERIFY(back.layers == c.layers);
    QVERIFY(back.tie_word_embeddings);
  }

  void perLayerDimsRoundTrip() {
    auto c = ModelConfig::uniform(100, 32, 3, 4, 2, 64, 8);
    c.layers[1] = {2, 1, 40};
    c.layers[2] = {4, 4, 0};
    auto j = c.to_hf_json();
    QCOMPARE(j["num_attention_heads_per_layer"].size(), size_t(3));
    auto back = ModelConfig::from_hf_json(j, "config.json");
    QVERIFY(back.layers == c.layers);
    QCOMPARE(back.head_dim, 8);
  }

  void parameterCount() {
    // stories260K: 260K parameters, tied classifier.
    auto c = ModelConfig::uniform(512, 64, 5, 8, 4, 172);
    c.tie_word_embeddings = true;
    QCOMPARE(c.num_parameters(),
             int64_t(512 * 64 + 64 + 5 * (64 * 64 * 2 + 64 * 32 * 2 + 3 * 64 * 172 + 128)));
  }

  void errorsNameTheField_data() {
    QTest::addColumn<QString>("patch");
    QTest::addColumn<QString>("field");
    QTest::newRow("missing hidden") << R"({"hidden_size": null})"
                                    << "hidden_size";
    QTest::newRow("bad gqa") << R"({"num_key_value_heads": 3})"
                             << "num_key_value_heads";
    QTest::newRow("odd head_dim") << R"({"head_dim": 7})"
                                  << "head_dim";
    QTest::newRow("string layers") << R"({"num_hidden_layers": "five"})"
                                   << "num_hidden_layers";
    QTest::newRow("list length") << R"({"intermediate_size_per_layer": [1, 2]})"
                                 << "intermediate_size_per_layer";
    QTest::newRow("architecture") << R"({"model_type": "gpt2"})"
                                  << "llama, mistral, qwen2, qwen3";
    QTest::newRow("rope type") << R"({"rope_scaling": {"rope_type": "longrope", "factor": 2}})"
                               << "unsupported type 'longrope'";
    QTest::newRow("llama3 rope field") << R"({"rope_scaling": {"rope_type": "llama3", "factor": 8,
               "original_max_position_embeddings": 8192, "high_freq_factor": 4}})"
                                       << "rope_scaling.low_freq_factor";
    QTest::newRow("yarn without factor") << R"({"rope_scaling": {"rope_type": "yarn"}})"
                                         << "rope_scaling.factor";
    QTest::newRow("qwen sliding layers") << R"({"model_type": "qwen3", "use_sliding_window": true})"
                                         << "use_sliding_window";
    QTest::newRow("activation") << R"({"hidden_act": "gelu"})"
                                << "hidden_act";
    QTest::newRow("eos list") << R"({"eos_token_id": [2, "x"]})"
                              << "eos_token_id";
  }
  void errorsNameTheField() {
    QFETCH(QString, patch);
    QFETCH(QString, field);
    auto j = ModelConfig::uniform(100, 32, 3, 4, 2, 64).to_hf_json();
    j.merge_patch(nlohmann::json::parse(patch.toStdString()));
    try {
      ModelConfig::from_hf_json(j, "/tmp/x/config.json");
      QFAIL("expected InputError");
    } catch (const InputError& e) {
      const QString msg = e.what();
      QVERIFY2(msg.contains("/tmp/x/config.json") && msg.contains(field), qPrintable(msg));
    }
  }

  // The fields of the 2026 families survive config.json → ModelConfig → config.json.
  void familyFieldsRoundTrip() {
    auto c = ModelConfig::uniform(100, 32, 2, 4, 2, 64, 16);
    c.model_type = "qwen3";
    c.qk_norm = true;
    c.rope_scaling.type = "yarn";
    c.rope_scaling.factor = 4;
    c.rope_scaling.original_max_position_embeddings = 32768;
    c.eos_token_ids = {7, 9};
    c.eos_token_id = 7;
    auto back = ModelConfig::from_hf_json(c.to_hf_json(), "config.json");
    QVERIFY(back.qk_norm);
    QVERIFY(back.rope_scaling == c.rope_scaling);
    QCOMPARE(back.eos_token_ids, c.eos_token_ids);
    QCOMPARE(back.head_dim, int64_t(16));
    auto m = ModelConfig::uniform(100, 32, 2, 4, 1, 64);
    m.model_type = "mistral";
    m.sliding_window = 4096;
    back = ModelConfig::from_hf_json(m.to_hf_json(), "config.json");
    QCOMPARE(back.sliding_window, int64_t(4096));
    QCOMPARE(back.model_type, std::string("mistral"));
    auto l = ModelConfig::uniform(100, 32, 2, 4, 1, 64);
    l.mlp_bias = l.attention_bias = true;
    back = ModelConfig::from_hf_json(l.to_hf_json(), "config.json");
    QVERIFY(back.mlp_bias && back.attention_bias && back.o_proj_bias());
    QCOMPARE(back.num_parameters(), l.num_parameters());
  }

  // Llama 3.1's smoothed frequencies: the highest ones unchanged, the lowest divided by the
  // factor, the ones between blended (values from the formula with wavelengths 2π / f).
  void llama3Frequencies() {
    lorashear::RopeScaling r;
    r.type = "llama3";
    r.factor = 8;
    r.low_freq_factor = 1;
    r.high_freq_factor = 4;
    r.original_max_position_embeddings = 8192;
    const auto plain = lorashear::rope_frequencies(128, 500000.0, {}, 131072, 0).inv_freq;
    const auto f = lorashear::rope_frequencies(128, 500000.0, r, 131072, 0).inv_freq;
    QCOMPARE(f.front(), plain.front());
    QCOMPARE(f.back(), plain.back() / 8);
    int blended = 0;
    for (size_t i = 0; i < f.size(); ++i)
      if (f[i] != plain[i] && f[i] != plain[i] / 8) ++blended;
    QVERIFY(blended > 0);
  }

  // Parameter counts of the real configurations in ../shared/configs (README there).
  void sharedConfigs_data() {
    QTest::addColumn<QString>("name");
    QTest::addColumn<qint64>("params");
    const std::pair<const char*, qint64> rows[] = {
        {"llama-2-7b", 6738415616},     {"llama-3.1-8b", 8030261248},
        {"llama-3.2-1b", 1235814400},   {"llama-3.1-70b", 70553706496},
        {"tinyllama-1.1b", 1100048384}, {"mistral-7b-v0.1", 7241732096},
        {"qwen2.5-0.5b", 494032768},    {"qwen2.5-7b", 7615616512},
        {"qwen3-0.6b", 596049920},      {"qwen3-8b", 8190735360},
        {"smollm2-135m", 134515008},    {"deepseek-r1-distill-llama-8b", 8030261248}};
    for (const auto& [name, params] : rows)
      QTest::newRow(name) << QString(name) << params;
  }
  void sharedConfigs() {
    QFETCH(QString, name);
    QFETCH(qint64, params);
    const auto path =
        lorashear::test::shared_path("configs/" + name.toStdString() + "/config.json");
    if (!std::filesystem::exists(path)) QSKIP("../shared/configs is absent");
    const auto c = ModelConfig::from_file(path.string());
    QCOMPARE(c.num_parameters(), params);
  }
};

QTEST_GUILESS_MAIN(TestModelConfig)
#include "test_model_config.moc"
