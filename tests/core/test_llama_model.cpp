// LlamaModel: attention against a naive reference (GQA, causal blocks), KV cache against full
// recomputation, per-layer dimensions, biases and dtypes.
#include <QtTest>

#include <torch/torch.h>

#include <cmath>

#include "lorashear/model/interrupt.h"
#include "lorashear/model/llama.h"
#include "lorashear/runtime.h"

using namespace lorashear;

namespace {

// Straightforward LLaMA forward written from the definitions (repeat_kv, full causal mask).
torch::Tensor reference_forward(LlamaModelImpl& m, const torch::Tensor& tokens) {
  const auto& cfg = m.config();
  const int64_t B = tokens.size(0), T = tokens.size(1), D = cfg.head_dim;
  auto rms = [&](const torch::Tensor& x, const torch::Tensor& w) {
    return x / torch::sqrt(x.pow(2).mean(-1, true) + cfg.rms_norm_eps) * w;
  };
  auto pos = torch::arange(T, torch::kFloat64);
  auto inv = torch::pow(cfg.rope_theta, -torch::arange(0, D, 2, torch::kFloat64) / double(D));
  auto ang = torch::outer(pos, inv).to(torch::kFloat32);
  auto cos = torch::cat({ang.cos(), ang.cos()}, -1), sin = torch::cat({ang.sin(), ang.sin()}, -1);
  auto rope = [&](const torch::Tensor& x) {  // x [B, H, T, D]
    auto x1 = x.narrow(-1, 0, D / 2), x2 = x.narrow(-1, D / 2, D / 2);
    return x * cos + torch::cat({-x2, x1}, -1) * sin;
  };
  auto h = m.model->embed_tokens->weight.index_select(0, tokens.flatten()).view({B, T, -1});
  auto mask = torch::full({T, T}, -INFINITY).triu(1);
  for (int64_t i = 0; i < cfg.n_layers(); ++i) {
    auto& L = m.model->layers[i];
    const int64_t H = cfg.layers[i].n_heads, KV = cfg.layers[i].n_kv_heads;
    auto x = rms(h, L->input_layernorm->weight);
    if (H > 0) {
      auto& a = L->self_attn;
      auto q = rope(a->q_proj(x).view({B, T, H, D}).transpose(1, 2));
      auto k = rope(a->k_proj(x).view({B, T, KV, D}).transpose(1, 2));
      auto v = a->v_proj(x).view({B, T, KV, D}).transpose(1, 2);
      k = k.repeat_interleave(H / KV, 1);
      v = v.repeat_interleave(H / KV, 1);
      auto s = torch::matmul(q, k.transpose(-1, -2)) / std::sqrt(double(D)) + mask;
      auto o = torch::matmul(torch::softmax(s, -1), v).transpose(1, 2).reshape({B, T, H * D});
      h = h + a->o_proj(o);
    }
    x = rms(h, L->post_attention_layernorm->weight);
    if (cfg.layers[i].intermediate_size > 0) {
      auto& f = L->mlp;
      h = h + f->down_proj(torch::silu(f->gate_proj(x)) * f->up_proj(x));
    }
  }
  return m.logits(rms(h, m.model->norm->weight));
}

ModelConfig gqa_config() {
  auto c = ModelConfig::uniform(97, 48, 3, 6, 2, 80, 8);
  c.layers[1] = {4, 4, 33};  // MHA in the middle, different width
  c.layers[2] = {2, 1, 80};
  return c;
}

}  // namespace

class TestLlamaModel : public QObject {
  Q_OBJECT
 private slots:
  void initTestCase() {
    init_runtime();
    QVERIFY(runtime_threads() >= 1);
  }

  void matchesReference_data() {
    QTest::addColumn<int>("variant");
    QTest::addColumn<int>("seqLen");
    QTest::newRow("gqa short") << 0 << 9;
    QTest::newRow("gqa long (several query blocks)") << 0 << 300;
    QTest::newRow("bias untied") << 1 << 40;
    QTest::newRow("pruned-away blocks") << 2 << 20;
  }
  void matchesReference() {
    QFETCH(int, variant);
    QFETCH(int, seqLen);
    torch::NoGradGuard ng;
    auto cfg = gqa_config();
    cfg.max_position_embeddings = 512;
    if (variant == 1) {
      cfg.attention_bias = true;
      cfg.tie_word_embeddings = false;
    } else {
      cfg.tie_word_embeddings = true;
    }
    if (variant == 2) {
      cfg.layers[0] = {0, 0, 80};  // attention fully pruned
      cfg.layers[1] = {4, 2, 0};   // MLP fully pruned
    }
    LlamaModel m(cfg);
    m->init_random(7, 0.1);
    auto tokens = torch::randint(0, cfg.vocab_size, {2, seqLen}, torch::kLong);
    auto got = m->forward(tokens);  // inference: fused CPU kernel
    auto want = reference_forward(*m, tokens);
    QCOMPARE(got.sizes().vec(), (std::vector<int64_t>{2, seqLen, cfg.vocab_size}));
    const double diff = (got - want).abs().max().item<double>();
    QVERIFY2(diff < 1e-4, qPrintable(QString("max abs diff %1").arg(diff)));
    // With gradients on, the differentiable blocked path runs; it must agree too and backprop.
    torch::Tensor got_grad;
    {
      torch::AutoGradMode grad(true);
      got_grad = m->forward(tokens);
      QVERIFY(got_grad.requires_grad());
      got_grad.sum().backward();
      QVERIFY(m->model->layers[2]->self_attn->q_proj->weight.grad().defined());
    }
    const double diff_grad = (got_grad.detach() - want).abs().max().item<double>();
    QVERIFY2(diff_grad < 1e-4, qPrintable(QString("blocked path: max abs diff %1").arg(diff_grad)));
  }

  void kvCacheEqualsFullRecomputation() {
    torch::NoGradGuard ng;
    auto cfg = gqa_config();
    LlamaModel m(cfg);
    m->init_random(3, 0.1);
    auto tokens = torch::randint(0, cfg.vocab_size, {2, 150}, torch::kLong);
    auto full = m->forward(tokens);
    auto cache = m->make_cache(2, 160);
    // Prefill 137 positions (two query blocks), then decode one token at a time.
    auto pre = m->forward(tokens.narrow(1, 0, 137), &cache);
    QCOMPARE(cache.length, int64_t(137));
    std::vector<torch::Tensor> parts{pre};
    for (int64_t t = 137; t < 150; ++t)
      parts.push_back(m->forward(tokens.narrow(1, t, 1), &cache));
    auto inc = torch::cat(parts, 1);
    const double diff = (inc - full).abs().max().item<double>();
    QVERIFY2(diff < 1e-4, qPrintable(QString("max abs diff %1").arg(diff)));
    QVERIFY_THROWS_EXCEPTION(std::exception, m->forward(tokens.narrow(1, 0, 11), &cache));
    // Non-contiguous token tensors (a column slice) work like contiguous ones.
    auto slice = tokens.narrow(1, 5, 20);
    QVERIFY(!slice.is_contiguous());
    QVERIFY(torch::equal(m->forward(slice), m->forward(slice.contiguous())));
  }

  void halfPrecisionStorageCloseToFloat() {
    torch::NoGradGuard ng;
    auto cfg = gqa_config();
    LlamaModel m32(cfg);
    m32->init_random(5, 0.05);
    LlamaModel mbf(cfg, ModelOptions{torch::kCPU, torch::kBFloat16});
    auto src = m32->state_dict();
    for (auto& [name, t] : mbf->state_dict())
      t.copy_(src.at(name));
    auto tokens = torch::randint(0, cfg.vocab_size, {1, 30}, torch::kLong);
    auto a = m32->forward(tokens), b = mbf->forward(tokens);
    QCOMPARE(b.scalar_type(), torch::kFloat32);
    const double diff = (a - b).abs().max().item<double>();
    QVERIFY2(diff < 0.1, qPrintable(QString("max abs diff %1").arg(diff)));
  }

  void stateDictUsesHuggingFaceNames() {
    auto cfg = gqa_config();
    cfg.tie_word_embeddings = true;
    LlamaModel m(cfg);
    auto sd = m->state_dict();
    QVERIFY(sd.count("model.embed_tokens.weight"));
    QVERIFY(sd.count("model.layers.2.self_attn.k_proj.weight"));
    QVERIFY(sd.count("model.layers.0.post_attention_layernorm.weight"));
    QVERIFY(sd.count("model.norm.weight"));
    QVERIFY(!sd.count("lm_head.weight"));
    QCOMPARE(sd.at("model.layers.2.self_attn.k_proj.weight").sizes().vec(),
             (std::vector<int64_t>{8, 48}));
    QCOMPARE(m->num_parameters(), cfg.num_parameters());
  }

  void forwardInterruptStopsBetweenLayers() {
    LlamaModel m(gqa_config());
    m->init_random(3);
    torch::NoGradGuard ng;
    const auto tokens = torch::randint(0, gqa_config().vocab_size, {1, 5}, torch::kLong);
    std::atomic<bool> cancel{false};
    TaskContext ctx;
    ctx.cancel = &cancel;
    {
      ForwardInterrupt interrupt(&ctx);
      QCOMPARE(ForwardInterrupt::current(), &ctx);
      m->forward(tokens);  // not cancelled: runs through
      cancel = true;
      bool stopped = false;
      try {
        m->forward(tokens);
      } catch (const CancelledError&) {
        stopped = true;
      }
      QVERIFY(stopped);
    }
    // Outside the scope the flag is not looked at.
    QVERIFY(ForwardInterrupt::current() == nullptr);
    QCOMPARE(m->forward(tokens).size(1), 5);
  }
};

QTEST_GUILESS_MAIN(TestLlamaModel)
#include "test_llama_model.moc"
