// Graph viewer layout times (Graphviz dot) for configurations traced from config.json alone:
// Llama-2-7B (32 layers) and Llama-2-70B (80 layers, GQA 64/8), all layers collapsed and with one
// layer expanded; and the demo model fully expanded.
#include <chrono>
#include <cstdio>

#include "lorashear/graph/dependency.h"
#include "lorashear/graph/trace.h"
#include "lorashear/io/loader.h"
#include "lorashear/prune/subnet.h"
#include "lorashear/runtime.h"
#include "lorashear/viewers/graph_layout.h"

using namespace lorashear;

namespace {
void report(const char* what, const TraceGraph& g, const DependencyGraph& d,
            const std::set<int64_t>& expanded) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto l = layout_graph(g, d, expanded);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%-44s %5zu nodes %5zu edges: %.3f s (Graphviz %.3f s)\n", what, l.nodes.size(),
              l.edges.size(), s, l.seconds);
}
}  // namespace

int main() {
  init_runtime();
  auto l7 = ModelConfig::uniform(32000, 4096, 32, 32, 32, 11008, 128);
  auto l70 = ModelConfig::uniform(32000, 8192, 80, 64, 8, 28672, 128);
  for (auto* c : {&l7, &l70})
    c->max_position_embeddings = 4096;
  struct Case {
    const char* name;
    ModelConfig cfg;
  };
  for (const auto& c : {Case{"Llama-2-7B", l7}, Case{"Llama-2-70B", l70}}) {
    const auto g = trace_config(c.cfg);
    const auto d = analyze_dependencies(g);
    report((std::string(c.name) + ", collapsed").c_str(), g, d, {});
    report((std::string(c.name) + ", layer 10 expanded").c_str(), g, d, {10});
  }
  auto demo = load_model(std::string(LORASHEAR_SOURCE_DIR) + "/resources/demo-model");
  const auto g = trace_model(*demo.model);
  report("demo model, all 4 layers expanded", g, analyze_model(*demo.model), {0, 1, 2, 3});
  return 0;
}
