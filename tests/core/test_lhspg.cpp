// LHSPG and the pruning plan: the half-space projection against hand-computed cases, plans
// resolved to counts (and refused when impossible), and a short run on a tiny model meeting the
// schedule exactly, leaving kept weights alone, and giving the subnet the same logits.
#include <QtTest>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <random>
#include <set>
#include <thread>

#include "checkpoint_writers.h"
#include "lorashear/errors.h"
#include "lorashear/prune/knowledge.h"
#include "lorashear/prune/lhspg.h"
#include "lorashear/prune/subnet.h"

using namespace lorashear;
using lorashear::test::random_model;

namespace {

ModelConfig tiny() {
  auto c = ModelConfig::uniform(61, 32, 3, 4, 2, 40, 8);
  c.max_position_embeddings = 64;
  return c;
}

WindowSampler random_text(int64_t seq_len, uint64_t seed) {
  // A stream with structure (repeated phrases), so the loss can fall.
  std::mt19937 rng(seed);
  std::vector<int64_t> phrase(17);
  for (auto& t : phrase)
    t = static_cast<int64_t>(rng() % 61);
  std::vector<int64_t> tokens;
  for (int i = 0; i < 400; ++i) {
    tokens.insert(tokens.end(), phrase.begin(), phrase.end());
    tokens.push_back(static_cast<int64_t>(rng() % 61));
  }
  return WindowSampler(tokens, seq_len, seed);
}

// A tiny model with adapters, its analysis and a resolved plan.
struct Setup {
  LlamaModel model{nullptr};
  DependencyGraph deps;
  ResolvedPlan plan;
};

Setup with_lora(uint64_t seed, int64_t rank, double ratio,
                const std::set<std::string>& unprunable = {}) {
  Setup s;
  s.model = random_model(tiny(), seed);
  LoraConfig lc;
  lc.rank = rank;
  lc.seed = 3;
  attach_lora(*s.model, lc);
  s.deps = analyze_model(*s.model);
  PruningPlan plan;
  plan.target_ratio = ratio;
  plan.unprunable = unprunable;
  s.plan = resolve_plan(plan, s.deps);
  return s;
}

LhspgOptions short_run(int64_t warmup, int64_t periods, int64_t period_steps, int64_t batch,
                       const std::string& method = "lhspg") {
  LhspgOptions o;
  o.method = method;
  o.warmup_steps = warmup;
  o.periods = periods;
  o.period_steps = period_steps;
  o.batch_size = batch;
  return o;
}

// Every base parameter, copied.
std::map<std::string, torch::Tensor> snapshot_of(const LlamaModelImpl& m) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [k, v] : m.state_dict())
    out[k] = v.clone();
  return out;
}

// The masked model and the subnet without `removed` agree (< 1e-5), and the subnet's size is the
// plan's.
void subnet_matches(LlamaModelImpl& m, const DependencyGraph& deps, const ResolvedPlan& plan,
                    const std::vector<std::string>& removed, const WindowSampler& data) {
  auto sub = construct_subnet(m, deps, removed);
  QCOMPARE(sub->num_parameters(), m.num_parameters() - plan.params_removed);
  torch::NoGradGuard ng;
  sub->eval();
  auto tokens = data.batch(999, 2).narrow(1, 0, 16);
  const double diff = (m.forward(tokens) - sub->forward(tokens)).abs().max().item<double>();
  QVERIFY2(diff < 1e-5, qPrintable(QString::number(diff)));
}

}  // namespace

class TestLhspg : public QObject {
  Q_OBJECT
 private slots:
  void halfSpaceProjection_data() {
    QTest::addColumn<double>("lambda");
    QTest::addColumn<double>("epsilon");
    QTest::addColumn<bool>("projected");
    QTest::addColumn<double>("scale");  // x_tilde = scale · x when not projected
    // x = (3, 4), ||x|| = 5, eta = 0.1: c = eta·lambda/5; <x_tilde, x> = (1 - c)·25.
    QTest::newRow("inside, eps 0.5") << 10.0 << 0.5 << false << 0.8;  // 20 >= 12.5
    QTest::newRow("outside, eps 0.9") << 10.0 << 0.9 << true << 0.0;  // 20 < 22.5
    QTest::newRow("on the boundary") << 10.0 << 0.8 << false << 0.8;  // 20 == 20: kept
    QTest::newRow("tiny step, eps 0") << 1.0 << 0.0 << false << 0.98;
    QTest::newRow("overshoot, eps 0") << 100.0 << 0.0 << true << 0.0;  // c = 2: -25 < 0
    QTest::newRow("exactly to zero") << 50.0 << 0.0 << false << 0.0;   // c = 1: 0 < 0 is false
  }
  void halfSpaceProjection() {
    QFETCH(double, lambda);
    QFETCH(double, epsilon);
    QFETCH(bool, projected);
    QFETCH(double, scale);
    auto x = torch::tensor({3.0, 4.0}, torch::kFloat64);
    bool p = false;
    auto y = half_space_step(x, 0.1, lambda, epsilon, 1e-8, &p);
    QCOMPARE(p, projected);
    QVERIFY2(torch::allclose(y, x * scale), qPrintable(QString::number(y[0].item<double>())));
    // A zero group stays zero.
    QVERIFY(
        torch::equal(half_space_step(torch::zeros({3}), 0.1, 1.0, 0.5, 1e-8), torch::zeros({3})));
  }

  void planResolution() {
    auto m = random_model(tiny(), 1);
    const auto deps = analyze_model(*m);
    PruningPlan plan;
    plan.target_ratio = 0.3;
    auto r = resolve_plan(plan, deps);
    QVERIFY2(std::abs(r.achieved_ratio - 0.3) < 0.02,
             qPrintable(QString::number(r.achieved_ratio)));
    int64_t sum = 0;
    for (const auto& e : r.entries)
      sum += e.remove;
    QCOMPARE(sum, r.total_groups);
    // Fixed ratios win; unprunable marks keep a node group whole.
    plan.node_group_ratios["L1.mlp"] = 0.5;
    plan.layer_ratios[2] = 0.25;
    plan.unprunable = {"L0.attn"};
    r = resolve_plan(plan, deps);
    QCOMPARE(r.count(static_cast<size_t>(deps.find_node_group("L1.mlp"))), int64_t(20));
    QCOMPARE(r.count(static_cast<size_t>(deps.find_node_group("L2.mlp"))), int64_t(10));
    QCOMPARE(r.count(static_cast<size_t>(deps.find_node_group("L0.attn"))), int64_t(0));
    // Save and load give the same plan.
    QTemporaryDir dir;
    const auto path = dir.filePath("plan.json").toStdString();
    plan.save(path);
    const auto back = PruningPlan::load(path);
    QCOMPARE(back.to_json().dump(), plan.to_json().dump());
  }

  // Same size in every layer: equal kept counts per kind, the target met as closely as steps of
  // one group in every layer allow, fixed counts forcing their kind, and the subnet a plain LLaMA.
  void uniformPlans() {
    auto m = random_model(tiny(), 1);  // 3 layers, 2 kv groups, 40 MLP channels
    const auto deps = analyze_model(*m);
    auto kept = [&](const ResolvedPlan& r, const std::string& kind) {
      std::set<int64_t> k;
      for (const auto& e : r.entries)
        if (deps.node_groups[e.node_group].kind == kind)
          k.insert(deps.node_groups[e.node_group].size - e.remove);
      return k;
    };
    PruningPlan plan;
    plan.uniform = true;
    for (const double target : {0.1, 0.3, 0.5}) {
      plan.target_ratio = target;
      const auto r = resolve_plan(plan, deps);
      QCOMPARE(kept(r, "attention").size(), size_t(1));
      QCOMPARE(kept(r, "mlp").size(), size_t(1));
      // Within half of the finest step (one MLP channel in every layer) of the target, unless
      // the coarse attention step decides: here every combination is checked.
      const double mlp_step = 3.0 * 3 * 32 / static_cast<double>(deps.total.params);
      QVERIFY2(std::abs(r.achieved_ratio - target) <= mlp_step,
               qPrintable(QString("%1 vs %2").arg(r.achieved_ratio).arg(target)));
      std::vector<std::string> ids;
      for (const auto& e : r.entries)
        for (int64_t k = 0; k < e.remove; ++k)
          ids.push_back(deps.node_groups[e.node_group].variable_group_id(k));
      auto sub = construct_subnet(*m, deps, ids);
      QVERIFY(sub->config().uniform_layers());
      QVERIFY(!sub->config().to_hf_json().contains("intermediate_size_per_layer"));
      QCOMPARE(sub->num_parameters(), m->num_parameters() - r.params_removed);
    }
    // A protected MLP keeps every MLP whole; attention alone carries a small target…
    plan.target_ratio = 0.15;
    plan.unprunable = {"L1.mlp"};
    auto r = resolve_plan(plan, deps);
    QCOMPARE(kept(r, "mlp"), std::set<int64_t>{40});
    QCOMPARE(kept(r, "attention"), std::set<int64_t>{1});
    QVERIFY(!r.notes.empty());
    bool named = false;
    for (const auto& n : r.notes)
      named = named || n.find("L1.mlp is kept whole") != std::string::npos;
    QVERIFY(named);
    // … not a tiny one (one kv group in every layer is 18.5% here) …
    plan.target_ratio = 0.05;
    try {
      resolve_plan(plan, deps);
      QFAIL("accepted");
    } catch (const UsageError& e) {
      QVERIFY2(QString(e.what()).contains("rounds to removing nothing"), e.what());
    }
    // … nor a large one.
    plan.target_ratio = 0.4;
    try {
      resolve_plan(plan, deps);
      QFAIL("accepted");
    } catch (const UsageError& e) {
      QVERIFY2(QString(e.what()).contains("at most"), e.what());
    }
    // Fixed ratios of one kind must agree; a layer ratio counts too.
    plan = PruningPlan{};
    plan.uniform = true;
    plan.target_ratio = 0.3;
    plan.node_group_ratios = {{"L0.mlp", 0.5}};
    r = resolve_plan(plan, deps);
    QCOMPARE(kept(r, "mlp"), std::set<int64_t>{20});
    plan.layer_ratios = {{2, 0.25}};
    try {
      resolve_plan(plan, deps);
      QFAIL("accepted");
    } catch (const UsageError& e) {
      QVERIFY2(QString(e.what()).contains("L0.mlp") && QString(e.what()).contains("L2.mlp"),
               e.what());
    }
    // An already pruned model (layers of different widths) is made uniform again.
    auto uneven = construct_subnet(*m, deps, {"L0.mlp.c1", "L0.mlp.c2", "L2.mlp.c9"});
    const auto deps2 = analyze_model(*uneven);
    PruningPlan again;
    again.uniform = true;
    again.target_ratio = 0.2;
    const auto r2 = resolve_plan(again, deps2);
    std::set<int64_t> widths;
    for (const auto& e : r2.entries)
      if (deps2.node_groups[e.node_group].kind == "mlp")
        widths.insert(deps2.node_groups[e.node_group].size - e.remove);
    QCOMPARE(widths.size(), size_t(1));
    QVERIFY(*widths.begin() <= 38);
    // The JSON keeps the option.
    QVERIFY(PruningPlan::from_json(again.to_json(), "plan").uniform);
    QVERIFY_THROWS_EXCEPTION(InputError,
                             PruningPlan::from_json(nlohmann::json::parse(R"({"target_ratio": 0.2,
                                           "uniform": "yes"})"),
                                                    "plan"));
  }

  void impossiblePlansAreRefused_data() {
    QTest::addColumn<QString>("json");
    QTest::addColumn<QString>("message");
    QTest::newRow("ratio 0") << R"({"target_ratio": 0})"
                             << "outside (0, 1)";
    QTest::newRow("ratio 1.5") << R"({"target_ratio": 1.5})"
                               << "outside (0, 1)";
    QTest::newRow("unknown layer") << R"({"target_ratio": 0.2, "layer_ratios": {"7": 0.1}})"
                                   << "layers 0 to 2";
    QTest::newRow("unknown group") << R"({"target_ratio": 0.2, "unprunable": ["L9.mlp"]})"
                                   << "L9.mlp";
    QTest::newRow("unprunable group")
        << R"({"target_ratio": 0.2, "node_group_ratios": {"hidden": 0.1}})"
        << "not prunable";
    QTest::newRow("every head") << R"({"target_ratio": 0.2, "node_group_ratios": {"L1.attn": 1.0}})"
                                << "at most 1 of 2";
    QTest::newRow("too much") << R"({"target_ratio": 0.97})"
                              << "at most";
    QTest::newRow("fixed over target")
        << R"({"target_ratio": 0.05, "node_group_ratios": {"L0.mlp": 1.0, "L1.mlp": 1.0}})"
        << "more than the target";
  }
  void impossiblePlansAreRefused() {
    QFETCH(QString, json);
    QFETCH(QString, message);
    auto m = random_model(tiny(), 1);
    const auto deps = analyze_model(*m);
    const auto plan = PruningPlan::from_json(nlohmann::json::parse(json.toStdString()), "plan");
    try {
      resolve_plan(plan, deps);
      QFAIL("plan accepted");
    } catch (const UsageError& e) {
      QVERIFY2(QString(e.what()).contains(message), e.what());
    }
  }

  void theLoraTargetsDecideTheSearchSpace() {
    // Without adapters on the layers producing MLP channels (gate/up), only attention can go;
    // with adapters only on o_proj / down_proj nothing can, and a target is refused, not met by
    // removing nothing.
    auto m = random_model(tiny(), 1);
    DependencyOptions attention_only;
    attention_only.lora_targets = {"q_proj", "v_proj", "down_proj"};
    const auto deps = analyze_model(*m, attention_only);
    QVERIFY(deps.node_groups[static_cast<size_t>(deps.find_node_group("L1.attn"))].prunable);
    QVERIFY(!deps.node_groups[static_cast<size_t>(deps.find_node_group("L1.mlp"))].prunable);
    PruningPlan plan;
    plan.target_ratio = 0.05;
    const auto r = resolve_plan(plan, deps);
    for (const auto& e : r.entries)
      QCOMPARE(deps.node_groups[e.node_group].kind, std::string("attention"));
    DependencyOptions none;
    none.lora_targets = {"o_proj", "down_proj"};
    try {
      resolve_plan(plan, analyze_model(*m, none));
      QFAIL("a plan with nothing prunable was accepted");
    } catch (const UsageError& e) {
      QVERIFY2(QString(e.what()).contains("nothing can be removed"), e.what());
    }
  }

  void removalsSpreadOverPeriods() {
    using V = std::vector<int64_t>;
    QCOMPARE(spread_over_periods(3, 4), (V{1, 1, 1, 0}));  // not all three in the last period
    QCOMPARE(spread_over_periods(8, 4), (V{2, 2, 2, 2}));
    QCOMPARE(spread_over_periods(5, 3), (V{2, 2, 1}));
    QCOMPARE(spread_over_periods(146, 4), (V{37, 37, 36, 36}));
    QCOMPARE(spread_over_periods(0, 2), (V{0, 0}));
    QCOMPARE(spread_over_periods(7, 1), (V{7}));
  }

  void shortRunMeetsTheSchedule() {
    auto setup = with_lora(2, 4, 0.25, {"L0.mlp"});
    auto& m = setup.model;
    const auto& deps = setup.deps;
    const auto& resolved = setup.plan;
    const auto snapshot = snapshot_of(*m);
    auto o = short_run(3, 3, 4, 4);
    o.lr = 5e-3;
    std::vector<LhspgMetrics> log;
    const auto data = random_text(16, 5);
    const auto result = run_lhspg(*m, deps, resolved, data, o, nullptr,
                                  [&](const LhspgMetrics& x) { log.push_back(x); });
    QCOMPARE(static_cast<int64_t>(log.size()), o.total_steps());
    // At the end of each period the zero count equals the schedule; at the end exactly K.
    for (const auto& x : log) {
      const bool period_end = x.period > 0 && (x.step - o.warmup_steps) % o.period_steps == 0;
      if (period_end) QCOMPARE(x.zeroed, x.scheduled);
      QVERIFY(x.zeroed <= x.scheduled);
      // Scheduled by the end of period p: p · floor(remove / P) + min(p, remove mod P) of
      // every node group (the remainder in the first periods).
      if (x.period >= 1 && x.period <= o.periods) {
        int64_t expected = 0;
        for (const auto& e : resolved.entries)
          expected += x.period * (e.remove / o.periods) + std::min(x.period, e.remove % o.periods);
        QCOMPARE(x.scheduled, expected);
      }
    }
    QCOMPARE(log.back().zeroed, resolved.total_groups);
    QCOMPARE(static_cast<int64_t>(result.removed.size()), resolved.total_groups);
    QCOMPARE(result.zeroed_by_projection + result.zeroed_by_hard_projection, resolved.total_groups);
    QCOMPARE(result.zeroed_by_hard_projection, int64_t(0));  // the schedule floor gets them all
    for (const auto& e : resolved.entries) {
      const auto& g = deps.node_groups[e.node_group];
      const auto it = log.back().sparsity.find(g.id);
      const double sparsity = it == log.back().sparsity.end() ? 0.0 : it->second;
      QCOMPARE(sparsity, double(e.remove) / double(g.size));
    }

    // Kept groups' and unprunable groups' base weights never changed.
    const auto plan_removal = deps.plan(result.removed);
    std::map<std::string, std::vector<char>> touched;  // rows of removed producing slices
    for (const auto& [g, list] : plan_removal)
      for (const auto& s : deps.node_groups[g].slices)
        if (s.role == GroupSlice::Role::Producing && s.param.find(".lora_") == std::string::npos) {
          auto& mask = touched[s.param];
          mask.resize(static_cast<size_t>(s.shape[0]), 0);
          for (auto k : list)
            for (auto i : s.indices(k))
              mask[static_cast<size_t>(i)] = 1;
        }
    for (const auto& [name, t] : m->state_dict()) {
      auto it = touched.find(name);
      if (it == touched.end()) {
        QVERIFY2(torch::equal(t, snapshot.at(name)), name.c_str());
        continue;
      }
      for (int64_t i = 0; i < t.size(0); ++i) {
        if (it->second[static_cast<size_t>(i)])
          QVERIFY2(t[i].abs().max().item<double>() == 0.0, name.c_str());
        else
          QVERIFY2(torch::equal(t[i], snapshot.at(name)[i]), name.c_str());
      }
    }
    // The masked model and the subnet agree; the subnet's size is the plan's.
    subnet_matches(*m, deps, resolved, result.removed, data);
    // Training did something.
    QVERIFY(log.back().loss < log.front().loss);
  }

  void baselinesOnTheSamePlan_data() {
    QTest::addColumn<QString>("method");
    for (const char* m : {"magnitude", "random", "taylor", "loraprune"})
      QTest::newRow(m) << m;
  }
  void baselinesOnTheSamePlan() {
    QFETCH(QString, method);
    auto setup = with_lora(7, 4, 0.3);
    auto& m = setup.model;
    const auto& deps = setup.deps;
    const auto& resolved = setup.plan;
    const auto o = short_run(2, 2, 3, 4, method.toStdString());
    std::vector<LhspgMetrics> log;
    const auto data = random_text(16, 9);
    const auto result = run_lhspg(*m, deps, resolved, data, o, nullptr,
                                  [&](const LhspgMetrics& x) { log.push_back(x); });
    QCOMPARE(static_cast<int64_t>(log.size()), o.total_steps());
    for (const auto& x : log)  // zero from the first step on, held there
      QCOMPARE(x.zeroed, resolved.total_groups);
    QCOMPARE(result.zeroed_by_hard_projection, resolved.total_groups);
    QCOMPARE(static_cast<int64_t>(result.removed.size()), resolved.total_groups);
    QVERIFY(!m->parameter("model.layers.0.mlp.up_proj.weight").requires_grad());
    subnet_matches(*m, deps, resolved, result.removed, data);
  }

  void criteriaDiffer() {
    // Different criteria pick different groups on the same model and plan.
    std::map<std::string, std::vector<std::string>> picked;
    for (const char* method : {"magnitude", "random", "taylor"}) {
      auto s = with_lora(11, 4, 0.3);
      auto r =
          run_lhspg(*s.model, s.deps, s.plan, random_text(16, 3), short_run(1, 1, 1, 8, method));
      std::sort(r.removed.begin(), r.removed.end());
      picked[method] = r.removed;
    }
    QVERIFY(picked["magnitude"] != picked["random"]);
    QVERIFY(picked["magnitude"] != picked["taylor"]);
  }

  void knowledgeDistribution() {
    auto m = random_model(tiny(), 13);
    const auto deps = analyze_model(*m);
    const auto before = snapshot_of(*m);
    std::vector<int64_t> text;
    auto sampler = random_text(16, 2);
    for (int i = 0; i < 20; ++i) {
      auto b = sampler.batch(i, 1);
      for (int64_t t = 0; t < b.size(1); ++t)
        text.push_back(b[0][t].item<int64_t>());
    }
    KnowledgeOptions ko;
    ko.seq_len = 16;
    ko.windows = 8;
    const auto r = analyze_knowledge(*m, deps, text, ko);
    QCOMPARE(static_cast<int>(r.groups.size()), 6);         // 3 layers × (attention, MLP)
    QCOMPARE(static_cast<int>(r.protected_ids.size()), 2);  // ceil(0.2 · 6)
    double max_norm = 0, min_protected = 1e9, max_free = -1e9;
    for (const auto& g : r.groups) {
      max_norm = std::max(max_norm, g.normalized);
      QCOMPARE(g.zeroed, g.kind == "attention" ? int64_t(1) : int64_t(20));
      QCOMPARE(g.delta, g.loss - r.base_loss);
      (g.protect ? min_protected : max_free) =
          g.protect ? std::min(min_protected, g.delta) : std::max(max_free, g.delta);
    }
    QCOMPARE(max_norm, 1.0);
    QVERIFY(min_protected >= max_free);
    for (const auto& [k, v] : m->state_dict())  // restored exactly
      QVERIFY2(torch::equal(v, before.at(k)), k.c_str());
    ko.rho = 0;
    QVERIFY_THROWS_EXCEPTION(UsageError, analyze_knowledge(*m, deps, text, ko));
  }

  void pauseAndCancel() {
    auto setup = with_lora(2, 2, 0.2);
    auto& m = setup.model;
    const auto& deps = setup.deps;
    const auto& resolved = setup.plan;
    const auto o = short_run(2, 2, 3, 2);
    const auto data = random_text(16, 5);
    std::atomic<bool> pause{false}, cancel{false};
    std::atomic<int64_t> steps{0};
    TaskContext ctx;
    ctx.pause = &pause;
    ctx.cancel = &cancel;
    LhspgResult result;
    std::thread worker([&] {
      result = run_lhspg(*m, deps, resolved, data, o, &ctx, [&](const LhspgMetrics& x) {
        steps = x.step;
        if (x.step == 3) pause = true;  // the run waits before step 4
      });
    });
    QTRY_COMPARE_WITH_TIMEOUT(steps.load(), int64_t(3), 10000);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    QCOMPARE(steps.load(), int64_t(3));  // no progress while paused
    pause = false;
    worker.join();
    QCOMPARE(steps.load(), o.total_steps());
    QCOMPARE(static_cast<int64_t>(result.removed.size()), resolved.total_groups);

    // Cancel while paused: returns promptly with CancelledError.
    auto m2 = with_lora(2, 2, 0.2).model;
    pause = false;
    bool cancelled = false;
    std::thread second([&] {
      try {
        run_lhspg(*m2, deps, resolved, data, o, &ctx, [&](const LhspgMetrics& x) {
          if (x.step == 2) pause = true;
        });
      } catch (const CancelledError&) {
        cancelled = true;
      }
    });
    QTRY_VERIFY_WITH_TIMEOUT(pause.load(), 10000);
    const auto t0 = std::chrono::steady_clock::now();
    cancel = true;
    second.join();
    QVERIFY(cancelled);
    QVERIFY(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(1));
  }

  void badOptions() {
    auto m = random_model(tiny(), 2);
    const auto deps = analyze_model(*m);
    PruningPlan plan;
    const auto resolved = resolve_plan(plan, deps);
    const auto data = random_text(16, 5);
    LhspgOptions o;
    QVERIFY_THROWS_EXCEPTION(UsageError, run_lhspg(*m, deps, resolved, data, o));  // no LoRA
    o.epsilon = 1.0;
    QVERIFY_THROWS_EXCEPTION(UsageError, o.validate());
    o.epsilon = 0.5;
    o.method = "obd";
    QVERIFY_THROWS_EXCEPTION(UsageError, o.validate());
    QVERIFY_THROWS_EXCEPTION(InputError, WindowSampler(std::vector<int64_t>(10, 1), 16, 1));
  }
};

QTEST_GUILESS_MAIN(TestLhspg)
#include "test_lhspg.moc"
