// The CPU attention kernel variants (baseline / AVX2 / AVX-512, or the one -march=native kernel):
// every variant this CPU runs against a plain LibTorch softmax(QKᵀ)V, directly and inside a
// LlamaModel forward; the choice of variant (best by default, LORASHEAR_CPU_KERNEL, refusals).
#include <QtTest>

#include <torch/torch.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "lorashear/errors.h"
#include "lorashear/model/llama.h"
#include "lorashear/runtime.h"
#include "model/attention_kernel.h"

using namespace lorashear;
namespace kernel = lorashear::detail;  // ATen has a ::detail too

namespace {

// Worst to best; a build holds either the first three (x86-64) or one of them / "native".
const std::vector<std::string> kAllVariants{"baseline", "avx2", "avx512", "native"};

std::vector<std::string> available_variants() {
  std::vector<std::string> out;
  for (const auto& v : kAllVariants)
    if (kernel::attention_variant_available(v.c_str())) out.push_back(v);
  return out;
}

struct Case {
  int64_t B, T, start, H, KV, D, window;
};

// q [B, T, H, D], k/v [B, start+T, KV, D] (any strides, unit on D); causal, GQA, sliding window,
// computed in float64.
torch::Tensor reference(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        int64_t start, int64_t window, double scale) {
  const int64_t T = q.size(1), S = k.size(1), g = q.size(2) / k.size(2);
  auto qh = q.to(torch::kFloat64).permute({0, 2, 1, 3});
  auto kh = k.to(torch::kFloat64).permute({0, 2, 1, 3}).repeat_interleave(g, 1);
  auto vh = v.to(torch::kFloat64).permute({0, 2, 1, 3}).repeat_interleave(g, 1);
  auto pos = (torch::arange(T, torch::kLong) + start).unsqueeze(1);
  auto key = torch::arange(S, torch::kLong).unsqueeze(0);
  auto visible = key <= pos;
  if (window > 0) visible = visible & (key > pos - window);
  auto scores = torch::matmul(qh, kh.transpose(-1, -2)) * scale;
  scores = scores.masked_fill(visible.logical_not(), -INFINITY);
  return torch::matmul(torch::softmax(scores, -1), vh).permute({0, 2, 1, 3});
}

// Runs kernel::attention_rows over all (batch, kv head, chunk of `chunk` rows) like llama.cpp.
torch::Tensor run_kernel(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                         int64_t start, int64_t window, double scale, int64_t chunk) {
  const int64_t B = q.size(0), T = q.size(1), H = q.size(2), KV = k.size(2), D = q.size(3);
  auto out = torch::full({B, T, H, D}, NAN);
  kernel::AttentionArgs a{q.data_ptr<float>(),
                          q.stride(0),
                          q.stride(1),
                          q.stride(2),
                          k.data_ptr<float>(),
                          k.stride(0),
                          k.stride(1),
                          k.stride(2),
                          v.data_ptr<float>(),
                          v.stride(0),
                          v.stride(1),
                          v.stride(2),
                          out.data_ptr<float>(),
                          out.stride(0),
                          out.stride(1),
                          out.stride(2),
                          H,
                          KV,
                          D,
                          start,
                          static_cast<float>(scale),
                          window};
  std::vector<float> scratch(static_cast<size_t>(kernel::attention_scratch_floats(start + T, D)));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t kvh = 0; kvh < KV; ++kvh)
      for (int64_t t0 = 0; t0 < T; t0 += chunk)
        kernel::attention_rows(a, b, kvh, t0, std::min(T, t0 + chunk), scratch.data());
  return out;
}

// max |got - want| relative to the largest |want| (at least 1).
double rel_error(const torch::Tensor& got, const torch::Tensor& want) {
  const double scale = std::max(1.0, want.abs().max().item<double>());
  return (got.to(torch::kFloat64) - want.to(torch::kFloat64)).abs().max().item<double>() / scale;
}

}  // namespace

class TestCpuKernels : public QObject {
  Q_OBJECT
 private slots:
  void initTestCase() {
    init_runtime();
    qunsetenv("LORASHEAR_CPU_KERNEL");
    kernel::reset_attention_variant();
    const auto avail = available_variants();
    QVERIFY(!avail.empty());
    std::string names;
    for (const auto& v : avail)
      names += (names.empty() ? "" : ", ") + v;
    qInfo("variants this CPU runs: %s; default: %s", names.c_str(), cpu_kernel_variant().c_str());
  }

  void defaultIsTheBestAvailable() {
    qunsetenv("LORASHEAR_CPU_KERNEL");
    kernel::reset_attention_variant();
    QCOMPARE(cpu_kernel_variant(), available_variants().back());
#if defined(__x86_64__)
    // An x86-64 dispatching build on a CPU with AVX-512 (the build machines) must pick it.
    if (kernel::attention_variant_available("baseline") && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512dq"))
      QCOMPARE(cpu_kernel_variant(), std::string("avx512"));
#endif
  }

  void environmentForcesAVariant() {
    for (const auto& v : available_variants()) {
      qputenv("LORASHEAR_CPU_KERNEL", QByteArray::fromStdString(v));
      kernel::reset_attention_variant();
      QCOMPARE(cpu_kernel_variant(), v);
    }
    for (const char* bad : {"avx1024", "AVX2"}) {
      qputenv("LORASHEAR_CPU_KERNEL", bad);
      kernel::reset_attention_variant();
      QVERIFY_THROWS_EXCEPTION(UsageError, cpu_kernel_variant());
    }
    for (const auto& v : kAllVariants) {
      if (kernel::attention_variant_available(v.c_str())) continue;
      QVERIFY_THROWS_EXCEPTION(UsageError, kernel::set_attention_variant(v.c_str()));
    }
    qunsetenv("LORASHEAR_CPU_KERNEL");
    kernel::reset_attention_variant();
  }

  void kernelMatchesReference_data() {
    QTest::addColumn<QString>("variant");
    QTest::addColumn<int>("chunk");
    for (const auto& v : available_variants()) {
      QTest::addRow("%s, chunks of 32", v.c_str()) << QString::fromStdString(v) << 32;
      QTest::addRow("%s, chunks of 5", v.c_str()) << QString::fromStdString(v) << 5;
    }
  }
  void kernelMatchesReference() {
    QFETCH(QString, variant);
    QFETCH(int, chunk);
    kernel::set_attention_variant(variant.toStdString().c_str());
    QCOMPARE(cpu_kernel_variant(), variant.toStdString());
    torch::manual_seed(11);
    // Lengths and head sizes off the vector widths (tails), GQA and MHA, a KV-cache offset
    // (start), one-token decode, sliding windows shorter and longer than the keys.
    const std::vector<Case> cases{{2, 9, 0, 6, 2, 8, 0},    {1, 100, 0, 4, 4, 16, 0},
                                  {2, 37, 20, 6, 3, 64, 0}, {1, 1, 130, 8, 2, 32, 0},
                                  {2, 70, 0, 4, 2, 5, 16},  {1, 45, 30, 6, 2, 24, 7},
                                  {1, 1, 90, 4, 1, 64, 33}, {2, 20, 0, 2, 2, 48, 500}};
    for (const auto& c : cases) {
      const int64_t S = c.start + c.T;
      // Non-contiguous on purpose: q a slice of wider rows, k/v a KV cache [B, KV, cap, D]
      // viewed as [B, S, KV, D].
      auto q = torch::randn({c.B, c.T, c.H, c.D + 3}).narrow(3, 1, c.D);
      auto k = torch::randn({c.B, c.KV, S + 4, c.D}).narrow(2, 0, S).transpose(1, 2);
      auto v = torch::randn({c.B, c.KV, S + 4, c.D}).narrow(2, 0, S).transpose(1, 2);
      const double scale = 1.0 / std::sqrt(double(c.D)) * 2.0;  // sharper softmax than usual
      auto got = run_kernel(q, k, v, c.start, c.window, scale, chunk);
      auto want = reference(q, k, v, c.start, c.window, scale);
      const double err = rel_error(got, want);
      QVERIFY2(err < 1e-5, qPrintable(QString("%1 B=%2 T=%3 start=%4 H=%5 KV=%6 D=%7 window=%8: "
                                              "relative error %9")
                                          .arg(variant)
                                          .arg(c.B)
                                          .arg(c.T)
                                          .arg(c.start)
                                          .arg(c.H)
                                          .arg(c.KV)
                                          .arg(c.D)
                                          .arg(c.window)
                                          .arg(err)));
    }
  }

  // The whole path llama.cpp takes (parallel_for over work units, cache views) against the
  // differentiable LibTorch path the same model takes with gradients on.
  void modelForwardMatchesLibTorchPath_data() {
    QTest::addColumn<QString>("variant");
    QTest::addColumn<int>("window");
    for (const auto& v : available_variants()) {
      QTest::addRow("%s", v.c_str()) << QString::fromStdString(v) << 0;
      QTest::addRow("%s, sliding window 24", v.c_str()) << QString::fromStdString(v) << 24;
    }
  }
  void modelForwardMatchesLibTorchPath() {
    QFETCH(QString, variant);
    QFETCH(int, window);
    kernel::set_attention_variant(variant.toStdString().c_str());
    auto cfg = ModelConfig::uniform(97, 64, 2, 8, 2, 96, 8);
    cfg.layers[1] = {4, 4, 96};
    cfg.max_position_embeddings = 256;
    cfg.sliding_window = window;
    LlamaModel m(cfg);
    m->init_random(7, 0.2);
    auto tokens = torch::randint(0, cfg.vocab_size, {2, 150}, torch::kLong);
    torch::Tensor fused, blocked;
    {
      torch::NoGradGuard ng;
      fused = m->forward(tokens);  // CPU float32 inference: the fused kernel
    }
    {
      torch::AutoGradMode grad(true);
      blocked = m->forward(tokens).detach();  // requires grad: plain LibTorch attention
    }
    const double err = rel_error(fused, blocked);
    QVERIFY2(err < 1e-5, qPrintable(QString("relative error %1").arg(err)));
  }

  void cleanupTestCase() {
    kernel::reset_attention_variant();
  }
};

QTEST_GUILESS_MAIN(TestCpuKernels)
#include "test_cpu_kernels.moc"
