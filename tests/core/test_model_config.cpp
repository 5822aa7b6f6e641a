// ModelConfig: Hugging Face config.json round trip, per-layer dims, validation messages.
#include <QtTest>

#include <nlohmann/json.hpp>

#include "lorashear/errors.h"
#include "lorashear/model/config.h"

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
                                  << "model_type";
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
};

QTEST_GUILESS_MAIN(TestModelConfig)
#include "test_model_config.moc"
