// Perplexity protocol: windowing, batching invariance, errors; generation: greedy, sampling, EOS.
#include <QtTest>

#include <torch/torch.h>

#include <cmath>

#include "lorashear/errors.h"
#include "lorashear/eval/generate.h"
#include "lorashear/eval/perplexity.h"
#include "lorashear/model/llama.h"
#include "lorashear/runtime.h"

using namespace lorashear;

class TestPerplexity : public QObject {
  Q_OBJECT
  LlamaModel model_{nullptr};
  std::vector<int64_t> tokens_;

 private slots:
  void initTestCase() {
    init_runtime();
    auto cfg = ModelConfig::uniform(61, 32, 2, 4, 2, 48, 8);
    cfg.max_position_embeddings = 64;
    model_ = LlamaModel(cfg);
    model_->init_random(11, 0.2);
    auto t = torch::randint(0, 61, {1000}, torch::kLong);
    tokens_.assign(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
  }

  void matchesDirectComputation() {
    PerplexityOptions o;
    o.seq_len = 32;
    o.max_windows = 7;
    o.batch = 3;
    auto r = perplexity(*model_, tokens_, o);
    QCOMPARE(r.windows, int64_t(7));
    QCOMPARE(r.predictions, int64_t(7 * 31));
    QCOMPARE(r.text_tokens, int64_t(1000));
    // Direct: one window at a time, log_softmax, mean over all predictions.
    torch::NoGradGuard ng;
    double sum = 0;
    for (int w = 0; w < 7; ++w) {
      auto x = torch::tensor(
                   std::vector<int64_t>(tokens_.begin() + w * 32, tokens_.begin() + w * 32 + 32))
                   .unsqueeze(0);
      auto lp = torch::log_softmax(model_->forward(x), -1)[0];
      for (int t = 0; t < 31; ++t)
        sum -= lp[t][tokens_[w * 32 + t + 1]].item<double>();
    }
    const double want = std::exp(sum / (7 * 31));
    QVERIFY2(std::abs(r.ppl - want) / want < 1e-5,
             qPrintable(QString("%1 vs %2").arg(r.ppl).arg(want)));
    QVERIFY(QString::fromStdString(r.protocol()).startsWith("windows-32, 7 windows"));
  }

  void batchSizeDoesNotChangeTheResult() {
    PerplexityOptions o;
    o.seq_len = 50;
    o.batch = 1;
    auto a = perplexity(*model_, tokens_, o);
    o.batch = 8;
    auto b = perplexity(*model_, tokens_, o);
    QCOMPARE(a.windows, int64_t(20));  // 1000 / 50, last partial window dropped
    QVERIFY(std::abs(a.mean_nll - b.mean_nll) < 1e-6);
  }

  void rejectsImpossibleSettings() {
    PerplexityOptions o;
    o.seq_len = 128;  // longer than the model's context of 64
    QVERIFY_THROWS_EXCEPTION(UsageError, perplexity(*model_, tokens_, o));
    o.seq_len = 1;
    QVERIFY_THROWS_EXCEPTION(UsageError, perplexity(*model_, tokens_, o));
    o.seq_len = 32;
    std::vector<int64_t> few(10, 1);
    QVERIFY_THROWS_EXCEPTION(UsageError, perplexity(*model_, few, o));
    std::vector<int64_t> bad(64, 1000);  // ids outside the vocabulary
    QVERIFY_THROWS_EXCEPTION(InputError, perplexity(*model_, bad, o));
  }

  void cancelStopsCleanly() {
    std::atomic<bool> cancel{true};
    TaskContext ctx;
    ctx.cancel = &cancel;
    PerplexityOptions o;
    o.seq_len = 32;
    QVERIFY_THROWS_EXCEPTION(CancelledError, perplexity(*model_, tokens_, o, &ctx));
  }

  void greedyEqualsArgmaxOfFullForward() {
    GenerateOptions g;
    g.max_new_tokens = 20;
    g.stop_at_eos = false;
    std::vector<int64_t> prompt{1, 5, 9};
    auto r = generate(*model_, prompt, g);
    QCOMPARE(r.tokens.size(), size_t(20));
    torch::NoGradGuard ng;
    std::vector<int64_t> seq = prompt;
    for (int i = 0; i < 20; ++i) {
      auto logits = model_->forward(torch::tensor(seq).unsqueeze(0));
      seq.push_back(logits[0][-1].argmax().item<int64_t>());
    }
    QCOMPARE(std::vector<int64_t>(seq.begin() + 3, seq.end()), r.tokens);
  }

  void samplingIsSeededAndTopPNarrows() {
    GenerateOptions g;
    g.max_new_tokens = 30;
    g.stop_at_eos = false;
    g.temperature = 1.0;
    g.seed = 42;
    auto a = generate(*model_, {1}, g), b = generate(*model_, {1}, g);
    QCOMPARE(a.tokens, b.tokens);
    g.top_p = 1e-6;  // only the most likely token survives: sampling becomes greedy
    auto c = generate(*model_, {1}, g);
    g.temperature = 0;
    auto d = generate(*model_, {1}, g);
    QCOMPARE(c.tokens, d.tokens);
  }

  void stopsAtContextAndEos() {
    GenerateOptions g;
    g.max_new_tokens = 1000;
    g.stop_at_eos = false;
    auto r = generate(*model_, {1, 2, 3}, g);
    QCOMPARE(int64_t(r.tokens.size()), int64_t(64 - 3 + 1));  // last token needs no cache slot
    QVERIFY_THROWS_EXCEPTION(UsageError, generate(*model_, std::vector<int64_t>(64, 1), g));
  }
};

QTEST_GUILESS_MAIN(TestPerplexity)
#include "test_perplexity.moc"
