// Billion-parameter memory (issue 18 §2): bf16 base weights stay bf16 and frozen while LoRA
// factors and their optimiser state are fp32; the weights of a checkpoint in the model's dtype
// view its memory-mapped file (copy-on-write) instead of being copied; LHSPG's half-space
// projection keeps shrinking the groups of a bf16 model as it does in fp32; `--dtype auto`
// keeps the checkpoint's dtype through `prune`.
#include <QtTest>

#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "checkpoint_writers.h"
#include "lorashear/io/loader.h"
#include "lorashear/io/safetensors.h"
#include "lorashear/model/lora.h"
#include "lorashear/prune/lhspg.h"
#include "lorashear/prune/subnet.h"
#include "lorashear/train/trainer.h"
#include "test_support.h"

using namespace lorashear;
namespace fs = std::filesystem;

namespace {

ModelConfig tiny() {
  auto c = ModelConfig::uniform(61, 32, 3, 4, 2, 40, 8);
  c.max_position_embeddings = 64;
  return c;
}

WindowSampler phrases(int64_t seq_len, uint64_t seed) {
  std::mt19937 rng(seed);
  std::vector<int64_t> phrase(17), tokens;
  for (auto& t : phrase)
    t = static_cast<int64_t>(rng() % 61);
  for (int i = 0; i < 400; ++i) {
    tokens.insert(tokens.end(), phrase.begin(), phrase.end());
    tokens.push_back(static_cast<int64_t>(rng() % 61));
  }
  return WindowSampler(tokens, seq_len, seed);
}

// A copy of `m` whose parameters are stored in `dtype`.
LlamaModel copy_as(LlamaModelImpl& m, torch::Dtype dtype) {
  LlamaModel out(m.config(), ModelOptions{torch::kCPU, dtype});
  torch::NoGradGuard ng;
  const auto src = m.state_dict();
  for (auto& [name, t] : out->state_dict())
    t.copy_(src.at(name));
  return out;
}

// [begin, end) of every mapping of `path` in this process.
std::vector<std::pair<uintptr_t, uintptr_t>> mappings_of(const fs::path& path) {
  std::ifstream in("/proc/self/maps");
  std::vector<std::pair<uintptr_t, uintptr_t>> out;
  const auto want = fs::canonical(path).string();
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() < want.size() || line.compare(line.size() - want.size(), want.size(), want))
      continue;
    std::istringstream ss(line);
    std::string range;
    ss >> range;
    const auto dash = range.find('-');
    out.emplace_back(std::stoull(range.substr(0, dash), nullptr, 16),
                     std::stoull(range.substr(dash + 1), nullptr, 16));
  }
  return out;
}

bool in_mapping(const torch::Tensor& t, const std::vector<std::pair<uintptr_t, uintptr_t>>& maps) {
  const auto p = reinterpret_cast<uintptr_t>(t.data_ptr());
  for (const auto& [b, e] : maps)
    if (p >= b && p < e) return true;
  return false;
}

}  // namespace

class TestLowPrecision : public QObject {
  Q_OBJECT

 private slots:
  void checkpointDtypeRules() {
    const torch::Device cpu(torch::kCPU), cuda(torch::kCUDA);
    QCOMPARE(checkpoint_dtype({"BF16", "BF16"}, cpu), torch::kBFloat16);
    QCOMPARE(checkpoint_dtype({"BF16"}, cuda), torch::kBFloat16);
    QCOMPARE(checkpoint_dtype({"F16"}, cuda), torch::kFloat16);
    QCOMPARE(checkpoint_dtype({"F16"}, cpu), torch::kFloat32);  // no fp16 matmul on the CPU
    QCOMPARE(checkpoint_dtype({"BF16", "F32"}, cpu), torch::kFloat32);
    QCOMPARE(checkpoint_dtype({"Q8_0"}, cpu), torch::kFloat32);
    QCOMPARE(checkpoint_dtype({}, cpu), torch::kFloat32);
  }

  // Factors in fp32 on a bf16 model: they train (fp32 gradients), the base stays bf16 and frozen,
  // and the adapter's output is the fp32 one up to bf16 rounding.
  void fp32FactorsOnBf16Base() {
    auto m32 = test::random_model(tiny(), 5);
    auto m16 = copy_as(*m32, torch::kBFloat16);
    LoraConfig lc;
    lc.seed = 2;
    attach_lora(*m32, lc);
    attach_lora(*m16, lc);
    {
      torch::NoGradGuard ng;  // a non-zero B, the same in both
      auto gen = at::make_generator<at::CPUGeneratorImpl>(4);
      const auto f32 = lora_parameters(*m32), f16 = lora_parameters(*m16);
      for (size_t i = 0; i < f32.size(); ++i) {
        f32[i].copy_(torch::randn(f32[i].sizes(), gen) * 0.05);
        f16[i].copy_(f32[i]);
      }
    }
    for (const auto& f : lora_parameters(*m16))
      QCOMPARE(f.scalar_type(), torch::kFloat32);
    QCOMPARE(m16->parameter("model.layers.0.mlp.up_proj.weight").scalar_type(), torch::kBFloat16);
    freeze_base_weights(*m16);
    const auto batch = phrases(12, 1).batch(1, 2);
    auto loss16 = lm_loss(*m16, batch);
    auto loss32 = lm_loss(*m32, batch);
    QVERIFY(std::abs(loss16.item<double>() - loss32.item<double>()) < 0.02 * loss32.item<double>());
    loss16.backward();
    for (const auto& f : lora_parameters(*m16)) {
      QVERIFY(f.grad().defined());
      QCOMPARE(f.grad().scalar_type(), torch::kFloat32);
    }
    QVERIFY(!m16->parameter("model.layers.0.mlp.up_proj.weight").grad().defined());
    // Merging folds the fp32 update into the bf16 weight (rounded).
    const auto w = m16->parameter("model.layers.1.self_attn.q_proj.weight").clone();
    merge_lora(*m16);
    const auto merged = m16->parameter("model.layers.1.self_attn.q_proj.weight");
    QCOMPARE(merged.scalar_type(), torch::kBFloat16);
    QVERIFY((merged.to(torch::kFloat32) - w.to(torch::kFloat32)).abs().max().item<double>() > 0);
  }

  // The half-space step shrinks a group by a factor close to 1 each step; a bf16 weight would
  // round most such steps away. With fp32 copies of the rows under projection, a bf16 model
  // follows the fp32 run of the same weights.
  void lhspgShrinksBf16LikeFp32() {
    auto base = test::random_model(tiny(), 7);
    auto m32 = copy_as(*copy_as(*base, torch::kBFloat16), torch::kFloat32);  // bf16 values
    auto m16 = copy_as(*m32, torch::kBFloat16);
    const auto w0 = copy_as(*m32, torch::kFloat32);
    LoraConfig lc;
    lc.seed = 3;
    LhspgOptions o;
    o.warmup_steps = 0;  // the selection sees W alone: the same groups in both runs
    o.periods = 1;
    o.period_steps = 2000;
    o.batch_size = 4;
    // lambda_g = the schedule's floor: each step shrinks a group by 1/(steps left), 1/2000 here,
    // far below half a bf16 ulp (1/512 to 1/256 of a value)
    o.lambda = 1e-12;
    o.lambda_amp = 0;
    o.epsilon = 0;  // no early projection
    o.lr = 1e-7;    // LoRA's own updates negligible: the weights move by the shrinking alone
    const int64_t stop_at = 80;
    std::map<std::string, torch::Tensor> after32, after16;
    struct Stop {};
    for (auto* m : {&m32, &m16}) {
      attach_lora(**m, lc);
      const auto deps = analyze_model(**m);
      PruningPlan plan;
      plan.target_ratio = 0.4;
      const auto resolved = resolve_plan(plan, deps);
      auto& into = m == &m32 ? after32 : after16;
      try {
        run_lhspg(**m, deps, resolved, phrases(12, 3), o, nullptr, [&](const LhspgMetrics& x) {
          if (x.step < stop_at) return;
          for (const auto& [name, t] : (*m)->all_parameters())
            if (name.find("lora_") == std::string::npos)
              into[name] = t.detach().to(torch::kFloat32).clone();
          throw Stop{};
        });
        QFAIL("the run was not stopped");
      } catch (const Stop&) {
      }
    }
    double shrink = 0, err = 0, stalled = 0;
    for (const auto& [name, t0] : w0->all_parameters()) {
      const auto a = after32.at(name), b = after16.at(name);
      shrink += (a - t0).pow(2).sum().item<double>();
      err += (b - a).pow(2).sum().item<double>();
      stalled += (b - t0).pow(2).sum().item<double>();
    }
    shrink = std::sqrt(shrink);
    err = std::sqrt(err);
    stalled = std::sqrt(stalled);
    qInfo("fp32 run moved the weights by %.4g; the bf16 run by %.4g, %.4g away from the fp32 run",
          shrink, stalled, err);
    QVERIFY(shrink > 0);
    QVERIFY2(err < 0.1 * shrink, "the bf16 run does not follow the fp32 one");
  }

  // A bf16 LHSPG run stopped mid-period and resumed from its checkpoint (which carries the fp32
  // rows under projection) ends with the weights of the run that was not stopped, bit for bit.
  void lhspgBf16ResumesExactly() {
    QTemporaryDir dir;
    LoraConfig lc;
    lc.seed = 3;
    LhspgOptions o;
    o.warmup_steps = 2;
    o.periods = 2;
    o.period_steps = 6;
    o.recovery_steps = 2;
    o.batch_size = 4;
    o.epsilon = 0;
    auto run = [&](const std::string& ckdir, int64_t stop_after, bool resume) {
      auto m = copy_as(*test::random_model(tiny(), 17), torch::kBFloat16);
      attach_lora(*m, lc);
      const auto deps = analyze_model(*m);
      PruningPlan plan;
      plan.target_ratio = 0.3;
      const auto resolved = resolve_plan(plan, deps);
      LhspgCheckpoint ck{ckdir, 3, resume, "bf16 test"};
      struct Stop {};
      try {
        run_lhspg(
            *m, deps, resolved, phrases(12, 5), o, nullptr,
            [&](const LhspgMetrics& x) {
              if (x.step == stop_after) throw Stop{};
            },
            ck);
      } catch (const Stop&) {
        return std::map<std::string, torch::Tensor>{};
      }
      std::map<std::string, torch::Tensor> out;
      for (const auto& [name, t] : m->all_parameters())
        out[name] = t.detach().clone();
      return out;
    };
    const auto whole = run("", -1, false);
    const std::string ck = dir.filePath("ck").toStdString();
    QVERIFY(run(ck, 11, false).empty());  // stopped in period 2; the checkpoint is of step 9
    QVERIFY(fs::exists(ck + "/latest/shadow_rows.safetensors"));
    const auto resumed = run(ck, -1, true);
    QCOMPARE(resumed.size(), whole.size());
    for (const auto& [name, t] : whole)
      QVERIFY2(torch::equal(t, resumed.at(name)), name.c_str());
  }

  // A bf16 checkpoint kept in bf16: every tensor views the mapped file (none copied), reads the
  // same values as a copying load, and writing to a parameter never reaches the file.
  void mappedWeightsCopyOnWrite() {
    QTemporaryDir dir;
    auto m = test::random_model(tiny(), 11);
    SaveOptions so;
    so.dtype = torch::kBFloat16;
    save_hf(*m, nullptr, dir.path().toStdString(), so);
    const fs::path file = fs::path(dir.path().toStdString()) / "model.safetensors";
    const std::string before = test::read_all(file);

    LoadOptions copied;
    copied.keep_checkpoint_dtype = true;
    auto a = load_model(dir.path().toStdString(), copied);
    LoadOptions mapped = copied;
    mapped.map_weights = true;
    auto b = load_model(dir.path().toStdString(), mapped);
    QCOMPARE(b.model->options().dtype, torch::kBFloat16);
    const auto maps = mappings_of(file);
    QVERIFY(!maps.empty());
    int viewed = 0, total = 0;
    const auto pa = a.model->state_dict();
    for (const auto& [name, t] : b.model->state_dict()) {
      ++total;
      viewed += in_mapping(t, maps);
      QVERIFY2(!in_mapping(pa.at(name), maps), name.c_str());
      QVERIFY2(torch::equal(t, pa.at(name)), name.c_str());
    }
    QCOMPARE(viewed, total);
    {
      torch::NoGradGuard ng;
      b.model->parameter("model.layers.0.mlp.down_proj.weight").fill_(3.0);
    }
    QCOMPARE(b.model->parameter("model.layers.0.mlp.down_proj.weight")[0][0].item<double>(), 3.0);
    QVERIFY(test::read_all(file) == before);
    // The mapping outlives the loader and goes with the model.
    b = LoadedModel{};
    a = LoadedModel{};
    QVERIFY(mappings_of(file).empty());
  }

  // `prune` keeps a bf16 checkpoint in bf16 (and writes bf16); --dtype fp32 still works.
  void pruneKeepsCheckpointDtype() {
    QTemporaryDir dir;
    const auto root = fs::path(dir.path().toStdString());
    const QString cli = LORASHEAR_CLI_PATH;
    const QString demo = QString::fromStdString(test::source_path("resources/demo-model").string());
    const QString bf16 = QString::fromStdString((root / "bf16").string());
    auto r = test::run_process(cli, {"convert", demo, "--to", "hf", bf16, "--out-dtype", "bf16"});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    std::string text;
    for (int i = 0; i < 40; ++i)
      text += "Once upon a time there was a little dog. The dog liked to play in the sun. ";
    test::write_all(root / "text.txt", text);
    const QString txt = QString::fromStdString((root / "text.txt").string());
    auto stored_dtype = [](const fs::path& model) {
      SafetensorsFile f((model / "model.safetensors").string());
      std::set<std::string> d;
      for (const auto& e : f.entries())
        d.insert(e.dtype);
      return d;
    };
    for (const QString& dtype : {QString(), QString("fp32")}) {
      const auto out = root / ("out" + dtype.toStdString());
      QStringList args = {"prune",
                          bf16,
                          "--ratio",
                          "0.3",
                          "--text",
                          txt,
                          "--steps",
                          "12",
                          "--batch",
                          "2",
                          "--seq-len",
                          "32",
                          "--no-analysis",
                          "--quiet",
                          "--json",
                          "--out",
                          QString::fromStdString(out.string())};
      if (!dtype.isEmpty()) args << "--dtype" << dtype;
      r = test::run_process(cli, args);
      QVERIFY2(r.code == 0, qPrintable(r.err));
      QCOMPARE(stored_dtype(out), (std::set<std::string>{dtype.isEmpty() ? "BF16" : "F32"}));
    }
  }
};

QTEST_GUILESS_MAIN(TestLowPrecision)
#include "test_low_precision.moc"
