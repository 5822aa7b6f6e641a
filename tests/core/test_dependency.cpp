// Tracer and dependency analysis: the structures of stories260K, LoRA operators in the graph,
// config-only tracing on the meta device, the accounting against hand-computed figures, the
// generic rules on hand-built graphs, and the DOT/JSON exports.
#include <QtTest>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "checkpoint_writers.h"
#include "lorashear/errors.h"
#include "lorashear/graph/export.h"
#include "lorashear/io/loader.h"
#include "lorashear/prune/subnet.h"
#include "test_support.h"

using namespace lorashear;
using lorashear::test::random_model;

namespace {

const NodeGroup& group(const DependencyGraph& d, const std::string& id) {
  const auto i = d.find_node_group(id);
  if (i < 0) throw std::runtime_error("no node group " + id);
  return d.node_groups[static_cast<size_t>(i)];
}

const GroupSlice* slice(const NodeGroup& g, const std::string& param) {
  for (const auto& s : g.slices)
    if (s.param == param) return &s;
  return nullptr;
}

int count_kind(const TraceGraph& g, const std::string& kind) {
  return static_cast<int>(std::count_if(g.nodes.begin(), g.nodes.end(),
                                        [&](const TraceNode& n) { return n.kind == kind; }));
}

// Linear weights' multiply-adds per token plus biases plus attention over the mean causal context.
double expected_flops(const ModelConfig& c, int64_t context) {
  double f = 2.0 * static_cast<double>(c.vocab_size * c.hidden_size);  // head
  for (int64_t i = 0; i < c.n_layers(); ++i) {
    const auto& d = c.layers[static_cast<size_t>(i)];
    f += 2.0 * static_cast<double>(c.layer_attention_parameters(i) + c.layer_mlp_parameters(i));
    if (c.attention_bias) f -= static_cast<double>((d.n_heads + 2 * d.n_kv_heads) * c.head_dim);
    f += 4.0 * static_cast<double>(d.n_heads * c.head_dim) * (static_cast<double>(context) + 1) / 2;
  }
  return f;
}

// A hand-built graph: ids → embedding → up (hidden→width) → <activation> → down (width→hidden)
// → add residual → rms_norm → head. Shows the rules are generic: nothing here is LLaMA.
TraceGraph toy_graph(const std::string& activation) {
  TraceGraph g;
  g.config = ModelConfig::uniform(11, 6, 1, 1, 1, 4, 6);
  auto t = [&](std::vector<int64_t> shape, int64_t producer) {
    g.tensors.push_back({std::move(shape), producer});
    return static_cast<int64_t>(g.tensors.size() - 1);
  };
  auto node = [&](const std::string& kind, const std::string& module, std::vector<int64_t> in,
                  std::vector<std::vector<int64_t>> out_shapes, std::vector<TraceParam> params) {
    TraceNode n;
    n.kind = kind;
    n.module = module;
    n.name = module + "/" + kind;
    n.inputs = std::move(in);
    n.params = std::move(params);
    const auto idx = static_cast<int64_t>(g.nodes.size());
    for (auto& s : out_shapes)
      n.outputs.push_back(t(s, idx));
    g.nodes.push_back(n);
    return g.nodes.back().outputs;
  };
  g.input = t({1, 3}, -1);
  auto h = node("embedding", "emb", {g.input}, {{1, 3, 6}}, {{"emb.weight", "weight", {11, 6}}})[0];
  auto u = node("linear", "blk.up_proj", {h}, {{1, 3, 4}},
                {{"blk.up_proj.weight", "weight", {4, 6}}})[0];
  std::vector<int64_t> a;
  if (activation == "concat") {
    a = node("concat", "blk", {u, u}, {{1, 3, 8}}, {});
  } else {
    a = node(activation, "blk", {u}, {{1, 3, 4}}, {});
  }
  const int64_t width = g.tensors[static_cast<size_t>(a[0])].shape.back();
  auto d = node("linear", "blk.down_proj", {a[0]}, {{1, 3, 6}},
                {{"blk.down_proj.weight", "weight", {6, width}}})[0];
  auto r = node("add", "blk", {h, d}, {{1, 3, 6}}, {})[0];
  auto n = node("rms_norm", "norm", {r}, {{1, 3, 6}}, {{"norm.weight", "weight", {6}}})[0];
  g.output = node("linear", "head", {n}, {{1, 3, 11}}, {{"head.weight", "weight", {11, 6}}})[0];
  return g;
}

}  // namespace

class TestDependency : public QObject {
  Q_OBJECT
 private slots:
  void stories260KStructures() {
    LORASHEAR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
    auto loaded = load_model(test::shared_path("models/stories260K/stories260K.bin").string());
    const auto trace = trace_model(*loaded.model);
    QVERIFY(trace.has_weights);
    const auto deps = analyze_dependencies(trace);
    int attention = 0, mlp = 0;
    for (const auto& g : deps.node_groups) {
      if (g.kind == "attention") {
        ++attention;
        QVERIFY(g.prunable);
        QCOMPARE(g.size, int64_t(4));
      }
      if (g.kind == "mlp") {
        ++mlp;
        QVERIFY(g.prunable);
        QCOMPARE(g.size, int64_t(172));
      }
    }
    QCOMPARE(attention, 5);
    QCOMPARE(mlp, 5);
    // Two query heads per kv head: a kv group owns 2 heads of q rows, one of k and v rows, and the
    // matching o_proj columns.
    const auto& a = group(deps, "L2.attn");
    const int64_t hd = loaded.model->config().head_dim;
    QCOMPARE(slice(a, "model.layers.2.self_attn.q_proj.weight")->block, 2 * hd);
    QCOMPARE(slice(a, "model.layers.2.self_attn.k_proj.weight")->block, hd);
    QCOMPARE(slice(a, "model.layers.2.self_attn.v_proj.weight")->role, GroupSlice::Role::Producing);
    const auto* o = slice(a, "model.layers.2.self_attn.o_proj.weight");
    QVERIFY(o != nullptr);
    QCOMPARE(o->dim, 1);
    QCOMPARE(o->role, GroupSlice::Role::Consuming);
    QCOMPARE(a.variable_group_id(3), std::string("L2.attn.kv3"));
    QCOMPARE(group(deps, "L4.mlp").variable_group_id(117), std::string("L4.mlp.c117"));
    QCOMPARE(group(deps, "L2.attn.kv_repeat").size, int64_t(2));
    // Unprunable: hidden, vocabulary, head_dim, each with its reason.
    const auto& hidden = group(deps, "hidden");
    QVERIFY(!hidden.prunable);
    QCOMPARE(hidden.size, loaded.model->config().hidden_size);
    QVERIFY(QString::fromStdString(hidden.reason).contains("RMSNorm"));
    QVERIFY(!group(deps, "vocab").prunable);
    QCOMPARE(group(deps, "vocab").size, int64_t(512));
    QVERIFY(!group(deps, "head_dim").prunable);
    QCOMPARE(group(deps, "head_dim").size, hd);
    QVERIFY(QString::fromStdString(group(deps, "head_dim").reason).contains("RoPE"));
    // Accounting agrees with the model.
    QCOMPARE(deps.total.params, loaded.model->num_parameters());
    QCOMPARE(deps.total.flops, expected_flops(loaded.model->config(), deps.context));
  }

  void loraOperatorsAreTraced() {
    auto m = random_model(ModelConfig::uniform(37, 32, 2, 4, 2, 24, 8), 1);
    LoraConfig lc;
    lc.rank = 3;
    attach_lora(*m, lc);
    const auto trace = trace_model(*m);
    QCOMPARE(count_kind(trace, "lora_A"), 14);
    QCOMPARE(count_kind(trace, "lora_B"), 14);
    QCOMPARE(count_kind(trace, "scale"), 14);
    QVERIFY(trace.find_node("model.layers.1.mlp.down_proj.lora_A") >= 0);
    QVERIFY(trace.lora.has_value());
    const auto deps = analyze_dependencies(trace);
    const auto& a = group(deps, "L1.attn");
    QCOMPARE(slice(a, "model.layers.1.self_attn.q_proj.lora_B.weight")->role,
             GroupSlice::Role::Producing);
    QCOMPARE(slice(a, "model.layers.1.self_attn.o_proj.lora_A.weight")->dim, 1);
    QCOMPARE(slice(a, "model.layers.1.self_attn.o_proj.lora_A.weight")->role,
             GroupSlice::Role::Consuming);
    const auto& c = group(deps, "L0.mlp");
    QCOMPARE(c.per_group.params, int64_t(3 * 32 + 3 * 3));  // gate/up/down + B rows + A column
    const auto& r = group(deps, "L0.mlp.down_proj.lora_rank");
    QVERIFY(!r.prunable);
    QCOMPARE(r.size, int64_t(3));
    QCOMPARE(deps.total.params, m->num_parameters());
    // Detaching restores the plain graph.
    detach_lora(*m);
    QCOMPARE(count_kind(trace_model(*m), "lora_A"), 0);
    QCOMPARE(m->all_parameters().size(), m->state_dict().size());
  }

  void configOnlyTraceOnTheMetaDevice() {
    // Llama-2-7B's shape, without a byte of weights.
    auto cfg = ModelConfig::uniform(32000, 4096, 32, 32, 32, 11008, 128);
    cfg.max_position_embeddings = 4096;
    const auto trace = trace_config(cfg);
    QVERIFY(!trace.has_weights);
    const auto deps = analyze_dependencies(trace);
    QCOMPARE(deps.total.params, cfg.num_parameters());
    QCOMPARE(deps.total.params, int64_t(6738415616));
    QCOMPARE(deps.total.flops, expected_flops(cfg, 4096));
    QCOMPARE(group(deps, "L31.attn").size, int64_t(32));
    QCOMPARE(group(deps, "L31.mlp").size, int64_t(11008));
    QCOMPARE(deps.find_node_group("L0.attn.kv_repeat"), int64_t(-1));  // MHA: nothing repeated
    QCOMPARE(deps.prunable_variable_groups(), int64_t(32 * (32 + 11008)));
  }

  void accountingOfRemovalSets() {
    auto cfg = ModelConfig::uniform(37, 32, 3, 4, 2, 24, 8);
    cfg.attention_bias = true;
    cfg.model_type = "qwen2";
    cfg.max_position_embeddings = 64;
    auto m = random_model(cfg, 2);
    const auto deps = analyze_model(*m);
    QCOMPARE(deps.total.params, m->num_parameters());
    QCOMPARE(deps.total.flops, expected_flops(cfg, 64));
    // One kv group: 2 query heads + 1 k head + 1 v head of rows (+ biases), o_proj columns; and
    // half of the layer's attention core.
    const auto& a = group(deps, "L1.attn");
    QCOMPARE(a.per_group.params, int64_t((2 + 1 + 1) * 8 * (32 + 1) + 2 * 8 * 32));
    const auto cost = deps.removal_cost({"L1.attn.kv0", "L2.mlp.c5", "L2.mlp.c6"});
    QCOMPARE(cost.total.params, a.per_group.params + 2 * 3 * 32);
    QCOMPARE(cost.layers[0].params, int64_t(0));
    QCOMPARE(cost.layers[1].params, a.per_group.params);
    const double attn_core = 4.0 * 4 * 8 * 65 / 2;
    QCOMPARE(cost.layers[1].flops,
             2.0 * (2 * 8 * 32 * 2 + 2 * 8 * 32) + 2 * 8 + 2 * 8 + attn_core / 2);
    QCOMPARE(cost.layers[2].flops, 2.0 * 2 * 3 * 32);
    QCOMPARE(deps.removal_cost(std::vector<std::string>{}).total.params, int64_t(0));
  }

  void genericRulesOnHandBuiltGraphs() {
    // An elementwise activation passes channels through: the width is one prunable family.
    auto ok = analyze_dependencies(toy_graph("silu"));
    const auto& blk = group(ok, "blk");
    QVERIFY(blk.prunable);
    QCOMPARE(blk.kind, std::string("channels"));
    QCOMPARE(blk.size, int64_t(4));
    QCOMPARE(blk.group_prefix, std::string("blk.c"));
    QCOMPARE(slice(blk, "blk.down_proj.weight")->role, GroupSlice::Role::Consuming);
    QVERIFY(!group(ok, "hidden").prunable);
    int vocab = 0;  // untied: the ids' rows and the logits are two families
    for (const auto& g : ok.node_groups)
      if (g.kind == "vocab") {
        ++vocab;
        QVERIFY(!g.prunable);
      }
    QCOMPARE(vocab, 2);
    // An operator without a coupling rule keeps its channels out of the search space.
    auto unknown = analyze_dependencies(toy_graph("gelu"));
    bool found = false;
    for (const auto& g : unknown.node_groups) {
      if (g.size == 4) {
        found = true;
        QVERIFY(!g.prunable);
        QVERIFY2(QString::fromStdString(g.reason).contains("gelu"), g.reason.c_str());
      }
    }
    QVERIFY(found);
    // Channels concatenated together are not sliceable.
    auto cat = analyze_dependencies(toy_graph("concat"));
    for (const auto& g : cat.node_groups)
      if (g.size == 4 || g.size == 8) QVERIFY2(!g.prunable, g.id.c_str());
    // Only the targets' groups count as prunable when no adapter is attached.
    DependencyOptions only_q;
    only_q.lora_targets = {"q_proj"};
    auto m = random_model(ModelConfig::uniform(37, 32, 1, 4, 2, 24, 8), 1);
    const auto d = analyze_model(*m, only_q);
    QVERIFY(group(d, "L0.attn").prunable);
    QVERIFY(!group(d, "L0.mlp").prunable);
  }

  void exports() {
    auto m = random_model(ModelConfig::uniform(37, 32, 4, 4, 2, 24, 8), 1);
    const auto trace = trace_model(*m);
    const auto deps = analyze_dependencies(trace);
    const auto dot = QString::fromStdString(graph_to_dot(trace, deps));
    QVERIFY(dot.startsWith("digraph"));
    for (int l = 0; l < 4; ++l) {
      QVERIFY(dot.contains(QString("subgraph cluster_L%1 {").arg(l)));
      QVERIFY(dot.contains(QString("subgraph cluster_L%1_attn {").arg(l)));
      QVERIFY(dot.contains(QString("subgraph cluster_L%1_mlp {").arg(l)));
    }
    QVERIFY(dot.contains("model.layers.2.mlp.down_proj"));
    const auto j = graph_to_json(trace, deps);
    QCOMPARE(j["nodes"].size(), trace.nodes.size());
    QCOMPARE(j["counts"]["prunable_variable_groups"].get<int64_t>(), int64_t(4 * (2 + 24)));
    QCOMPARE(j["accounting"]["total"]["params"].get<int64_t>(), m->num_parameters());
    bool has_attn = false;
    for (const auto& g : j["node_groups"])
      if (g["id"] == "L3.attn") {
        has_attn = true;
        QCOMPARE(g["variable_groups"]["count"].get<int64_t>(), int64_t(2));
        QCOMPARE(g["variable_groups"]["id_prefix"].get<std::string>(), std::string("L3.attn.kv"));
      }
    QVERIFY(has_attn);
    // Every edge joins existing endpoints.
    for (const auto& e : j["edges"]) {
      if (e["from"].is_number()) QVERIFY(e["from"].get<size_t>() < trace.nodes.size());
      if (e["to"].is_number()) QVERIFY(e["to"].get<size_t>() < trace.nodes.size());
    }
    // A layer range keeps those layers, the parts outside the layers, and placeholders.
    const auto range = parse_layer_range("1-2", 4);
    const auto part = QString::fromStdString(graph_to_dot(trace, deps, range));
    QVERIFY(part.contains("cluster_L1 {") && part.contains("cluster_L2 {"));
    QVERIFY(!part.contains("cluster_L0 {") && !part.contains("cluster_L3 {"));
    QVERIFY(part.contains("elided_before") && part.contains("elided_after"));
    QVERIFY(part.contains("lm_head"));
    const auto jp = graph_to_json(trace, deps, range);
    for (const auto& n : jp["nodes"]) {
      const auto layer = n["layer"].get<int64_t>();
      QVERIFY(layer == -1 || layer == 1 || layer == 2);
    }
    QVERIFY_THROWS_EXCEPTION(UsageError, parse_layer_range("2-9", 4));
    QVERIFY_THROWS_EXCEPTION(UsageError, parse_layer_range("x", 4));
    QVERIFY_THROWS_EXCEPTION(UsageError, parse_layer_range("3-1", 4));
  }

  void badTraceSettings() {
    auto m = random_model(ModelConfig::uniform(37, 32, 1, 4, 2, 24, 8), 1);
    TraceOptions o;
    o.seq_len = 0;
    QVERIFY_THROWS_EXCEPTION(UsageError, trace_model(*m, o));
    LoraConfig lc;
    lc.targets = {"q_proj", "wq"};
    try {
      attach_lora(*m, lc);
      QFAIL("unknown target accepted");
    } catch (const UsageError& e) {
      QVERIFY(QString(e.what()).contains("'wq'"));
    }
    QVERIFY(m->lora() == nullptr);
  }
};

QTEST_GUILESS_MAIN(TestDependency)
#include "test_dependency.moc"
