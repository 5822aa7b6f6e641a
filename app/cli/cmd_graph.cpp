// `lorashear graph` and `lorashear groups`: the traced operator graph of a model (or of a
// config.json alone, traced without weights), its node groups and variable groups, and what a
// removal set would take away before anything is applied.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli_common.h"
#include "lorashear/errors.h"
#include "lorashear/graph/export.h"
#include "lorashear/io/files.h"

namespace lorashear::cli {
namespace {

struct StructureOptions {
  std::string model;
  int64_t lora_rank = 0;
  double lora_alpha = 0;
  std::vector<std::string> lora_targets;
  int64_t context = 0;
};

void add_structure_arguments(CLI::App* app, StructureOptions& o) {
  app->add_option("MODEL", o.model,
                  "Hugging Face directory, .bin or .gguf file, or a config.json alone (traced on "
                  "the meta device, without weights)")
      ->required();
  app->add_option("--lora-rank", o.lora_rank,
                  "attach LoRA adapters of this rank before tracing (default: none)")
      ->check(CLI::NonNegativeNumber);
  app->add_option("--lora-alpha", o.lora_alpha, "LoRA alpha (default: 2 x rank)");
  app->add_option("--lora-targets", o.lora_targets,
                  "layers that get adapters; without adapters, the layers whose groups count as "
                  "prunable (default: q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj)")
      ->delimiter(',');
  app->add_option("--context", o.context,
                  "sequence length for attention FLOPs (default: the model's context)")
      ->check(CLI::PositiveNumber);
}

struct Structure {
  TraceGraph trace;
  DependencyGraph deps;
  double trace_seconds = 0, analyze_seconds = 0;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

Structure build_structure(const StructureOptions& o, const GlobalOptions& global) {
  LoraConfig lora;
  if (!o.lora_targets.empty()) lora.targets = o.lora_targets;
  if (o.lora_rank > 0) {
    lora.rank = o.lora_rank;
    lora.alpha = o.lora_alpha > 0 ? o.lora_alpha : 2.0 * static_cast<double>(o.lora_rank);
  }
  lora.validate();
  const LoraConfig* attach = o.lora_rank > 0 ? &lora : nullptr;
  Structure s;
  const auto t0 = std::chrono::steady_clock::now();
  if (const auto config = config_only_path(o.model); !config.empty()) {
    s.trace = trace_config(ModelConfig::from_file(config), attach);
  } else {
    auto loaded = load_model_for_cli(ModelArgs{o.model, "", ""}, global, false);
    if (attach) attach_lora(*loaded.model, *attach);
    s.trace = trace_model(*loaded.model);
  }
  s.trace_seconds = seconds_since(t0);
  DependencyOptions dopt;
  dopt.lora_targets = lora.targets;
  dopt.context = o.context;
  const auto t1 = std::chrono::steady_clock::now();
  s.deps = analyze_dependencies(s.trace, dopt);
  s.analyze_seconds = seconds_since(t1);
  return s;
}

std::string percent(double part, double whole) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", whole > 0 ? 100.0 * part / whole : 0.0);
  return buf;
}

std::string flops_text(double f) {
  return human_scaled(f, "G");
}

// ---- graph

int run_graph(const StructureOptions& o, const std::string& dot, const std::string& json_path,
              const std::string& layers, const GlobalOptions& global) {
  const auto s = build_structure(o, global);
  const auto range = parse_layer_range(layers, s.trace.config.n_layers());
  const auto j = graph_to_json(s.trace, s.deps, range);
  if (!dot.empty()) io::write_file_atomic(dot, graph_to_dot(s.trace, s.deps, range));
  if (!json_path.empty()) io::write_file_atomic(json_path, j.dump(1) + "\n");
  if (global.json) {
    if (json_path.empty()) {
      print_json(j);
    } else {
      print_json({{"counts", j["counts"]},
                  {"trace_seconds", s.trace_seconds},
                  {"analyze_seconds", s.analyze_seconds}});
    }
    return 0;
  }
  const auto& c = j["counts"];
  std::printf("%s: traced %lld operators %s in %.2f s, analysed in %.2f s\n", o.model.c_str(),
              c["traced_nodes"].get<long long>(),
              s.trace.has_weights ? "with weights" : "without weights (meta device)",
              s.trace_seconds, s.analyze_seconds);
  std::printf("  node groups %lld (%lld prunable), prunable variable groups %lld\n",
              c["node_groups"].get<long long>(), c["prunable_node_groups"].get<long long>(),
              c["prunable_variable_groups"].get<long long>());
  std::printf("  parameters %s, %s FLOPs per token at context %lld\n",
              human_count(s.deps.total.params).c_str(), flops_text(s.deps.total.flops).c_str(),
              static_cast<long long>(s.deps.context));
  if (!dot.empty())
    std::printf("  wrote %s (%lld nodes, %lld edges)\n", dot.c_str(), c["nodes"].get<long long>(),
                c["edges"].get<long long>());
  if (!json_path.empty()) std::printf("  wrote %s\n", json_path.c_str());
  if (dot.empty() && json_path.empty())
    std::printf("  (write the graph with --dot FILE and/or --json FILE)\n");
  return 0;
}

// ---- groups

std::vector<std::string> parse_removal(const std::string& text) {
  std::string list = text;
  if (!text.empty() && text[0] == '@') {
    std::ifstream in(text.substr(1));
    if (!in) throw InputError(text.substr(1) + ": cannot read the removal list");
    std::ostringstream ss;
    std::string line;
    while (std::getline(in, line))
      ss << line.substr(0, line.find('#')) << "\n";
    list = ss.str();
  }
  std::vector<std::string> ids;
  std::string cur;
  for (char ch : list + ",") {
    if (ch == ',' || ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r') {
      if (!cur.empty()) ids.push_back(cur);
      cur.clear();
    } else {
      cur += ch;
    }
  }
  if (ids.empty()) throw UsageError("--remove: no variable group ids given");
  return ids;
}

int run_groups(const StructureOptions& o, const std::string& remove, const GlobalOptions& global) {
  const auto s = build_structure(o, global);
  const auto& deps = s.deps;
  int64_t prunable_params = 0;
  for (const auto& g : deps.node_groups)
    if (g.prunable) prunable_params += g.total().params;
  nlohmann::json j = {{"model", o.model},
                      {"context", deps.context},
                      {"params", deps.total.params},
                      {"flops_per_token", deps.total.flops},
                      {"prunable_variable_groups", deps.prunable_variable_groups()},
                      {"prunable_params", prunable_params},
                      {"node_groups", node_groups_to_json(deps)}};
  for (auto& g : j["node_groups"])
    g.erase("nodes");
  RemovalCost removed;
  std::vector<std::string> ids;
  if (!remove.empty()) {
    ids = parse_removal(remove);
    removed = deps.removal_cost(ids);
    auto layers = nlohmann::json::array();
    for (size_t i = 0; i < removed.layers.size(); ++i)
      layers.push_back({{"layer", i},
                        {"params_before", deps.layers[i].params},
                        {"params_after", deps.layers[i].params - removed.layers[i].params},
                        {"flops_before", deps.layers[i].flops},
                        {"flops_after", deps.layers[i].flops - removed.layers[i].flops}});
    j["removal"] = {{"variable_groups", ids.size()},
                    {"params_removed", removed.total.params},
                    {"params_after", deps.total.params - removed.total.params},
                    {"flops_removed", removed.total.flops},
                    {"flops_after", deps.total.flops - removed.total.flops},
                    {"layers", layers}};
  }
  if (global.json) {
    print_json(j);
    return 0;
  }
  std::printf("%-28s %-10s %8s %13s %12s %13s  %s\n", "node group", "kind", "groups",
              "params/group", "FLOPs/group", "params", "prunable");
  for (const auto& g : deps.node_groups) {
    std::printf("%-28s %-10s %8lld %13s %12s %13s  %s\n", g.id.c_str(), g.kind.c_str(),
                static_cast<long long>(g.size), human_count(g.per_group.params).c_str(),
                flops_text(g.per_group.flops).c_str(), human_count(g.total().params).c_str(),
                g.prunable ? "yes" : ("no: " + g.reason).c_str());
  }
  std::printf("\nmodel: %s parameters, %s FLOPs per token at context %lld\n",
              human_count(deps.total.params).c_str(), flops_text(deps.total.flops).c_str(),
              static_cast<long long>(deps.context));
  std::printf("prunable: %lld variable groups holding %s parameters (%s of the model)\n",
              static_cast<long long>(deps.prunable_variable_groups()),
              human_count(prunable_params).c_str(),
              percent(static_cast<double>(prunable_params), static_cast<double>(deps.total.params))
                  .c_str());
  if (!ids.empty()) {
    std::printf(
        "\nremoving %zu variable groups: parameters %s -> %s (-%s), FLOPs/token %s -> %s "
        "(-%s)\n",
        ids.size(), human_count(deps.total.params).c_str(),
        human_count(deps.total.params - removed.total.params).c_str(),
        percent(static_cast<double>(removed.total.params), static_cast<double>(deps.total.params))
            .c_str(),
        flops_text(deps.total.flops).c_str(),
        flops_text(deps.total.flops - removed.total.flops).c_str(),
        percent(removed.total.flops, deps.total.flops).c_str());
    for (size_t i = 0; i < removed.layers.size(); ++i) {
      if (removed.layers[i].params == 0) continue;
      std::printf("  layer %-3zu parameters %s -> %s\n", i,
                  human_count(deps.layers[i].params).c_str(),
                  human_count(deps.layers[i].params - removed.layers[i].params).c_str());
    }
  }
  return 0;
}

const Register reg_graph([](CLI::App& parent, GlobalOptions& global) {
  auto* app = parent.add_subcommand(
      "graph", "Trace the operator graph and export it as Graphviz DOT and/or JSON");
  auto o = std::make_shared<StructureOptions>();
  auto dot = std::make_shared<std::string>();
  auto json = std::make_shared<std::string>();
  auto layers = std::make_shared<std::string>();
  add_structure_arguments(app, *o);
  app->add_option("--dot", *dot, "write the graph as Graphviz DOT (render: dot -Tsvg FILE)");
  app->add_option("--json", *json, "write nodes, edges, node groups, variable groups, counts");
  app->add_option("--layers", *layers, "only these decoder layers, e.g. 0-3 or 5");
  app->footer(
      "Examples:\n"
      "  lorashear graph resources/demo-model --dot demo.dot && dot -Tsvg demo.dot -o demo.svg\n"
      "  lorashear graph llama-2-70b/config.json --json g.json --layers 0-1   # no weights needed\n"
      "  lorashear graph MODEL --lora-rank 8 --dot g.dot   # with LoRA operators");
  return Command{app, [=, &global] { return run_graph(*o, *dot, *json, *layers, global); }};
});

const Register reg_groups([](CLI::App& parent, GlobalOptions& global) {
  auto* app = parent.add_subcommand(
      "groups", "List node groups, variable groups, their parameters and FLOPs, and prunability");
  auto o = std::make_shared<StructureOptions>();
  auto remove = std::make_shared<std::string>();
  add_structure_arguments(app, *o);
  app->add_option("--remove", *remove,
                  "predict parameters and FLOPs after removing these variable groups "
                  "(comma-separated ids, or @FILE with one id per line)");
  app->footer(
      "Examples:\n"
      "  lorashear groups resources/demo-model\n"
      "  lorashear groups MODEL --remove L0.attn.kv1,L2.mlp.c17,L2.mlp.c18\n"
      "  lorashear groups llama-2-7b/config.json --json > groups.json");
  return Command{app, [=, &global] { return run_groups(*o, *remove, global); }};
});

}  // namespace
}  // namespace lorashear::cli
