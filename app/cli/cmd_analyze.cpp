// `lorashear analyze MODEL --text FILE`: the knowledge distribution analysis (LORASHEAR.md §2) —
// where the model's knowledge lives, and which node groups to protect.
#include <cstdio>

#include "cli_common.h"
#include "cli_dist.h"
#include "lorashear/dist/distributed.h"
#include "lorashear/errors.h"
#include "lorashear/io/files.h"
#include "lorashear/io/text.h"
#include "lorashear/prune/knowledge.h"
#include "lorashear/prune/plan.h"
#include "lorashear/prune/subnet.h"

namespace lorashear::cli {
namespace {

struct AnalyzeArgs : ModelArgs {
  std::string text, json_out, plan_out;
  double ratio = 0.2;
  double dist_timeout = 600;
  KnowledgeOptions o;
};

int run_analyze(const AnalyzeArgs& a, const GlobalOptions& global) {
  a.o.validate();
  // Data parallel: each rank measures its share of the node groups; rank 0 writes and prints.
  init_distributed(a.dist_timeout, global, {});
  auto& ranks = dist::current();
  auto loaded = load_model_for_cli(a, global, /*need_tokenizer=*/true);
  const auto tokens = loaded.tokenizer->encode(read_text_corpus(a.text));
  const auto deps = analyze_model(*loaded.model);
  GlobalOptions quiet = global;
  if (!ranks.is_root()) quiet.quiet = true;
  ProgressBar bar(quiet);
  auto ctx = bar.context();
  auto options = a.o;
  options.ranks = &ranks;
  const auto r = analyze_knowledge(*loaded.model, deps, tokens, options, &ctx);
  bar.finish();
  if (!ranks.is_root()) return 0;
  auto j = r.to_json();
  j["model"] = a.model;
  j["text"] = a.text;
  j["rho"] = a.o.rho;
  j["gamma"] = a.o.gamma;
  j["world_size"] = ranks.world_size();
  if (!a.json_out.empty()) io::write_file_atomic(a.json_out, j.dump(2) + "\n");
  if (!a.plan_out.empty()) {
    PruningPlan plan;
    plan.target_ratio = a.ratio;
    plan.unprunable.insert(r.protected_ids.begin(), r.protected_ids.end());
    plan.save(a.plan_out);
  }
  if (global.json) {
    print_json(j);
    return 0;
  }
  std::printf(
      "base loss %.4f  (%s)\nzeroing %.0f%% of each node group's variable groups "
      "(lowest magnitude first):\n\n",
      r.base_loss, r.protocol.c_str(), 100 * a.o.rho);
  std::printf("%-10s %8s %10s %10s  %-30s\n", "node group", "zeroed", "loss", "delta",
              "normalised");
  for (const auto& g : r.groups) {
    const int bar_len = static_cast<int>(std::lround(std::max(0.0, g.normalized) * 30));
    std::printf("%-10s %8lld %10.4f %+10.4f  %-30s %s\n", g.id.c_str(),
                static_cast<long long>(g.zeroed), g.loss, g.delta,
                std::string(static_cast<size_t>(bar_len), '#').c_str(),
                g.protect ? "unprunable" : "");
  }
  std::printf("\n%zu of %zu node groups marked unprunable (gamma %.2f) in %.1f s\n",
              r.protected_ids.size(), r.groups.size(), a.o.gamma, r.seconds);
  if (!a.plan_out.empty())
    std::printf("wrote %s (target ratio %.2f; use with: lorashear prune MODEL --plan %s ...)\n",
                a.plan_out.c_str(), a.ratio, a.plan_out.c_str());
  return 0;
}

const Register register_analyze([](CLI::App& parent, GlobalOptions& global) {
  auto* app = parent.add_subcommand(
      "analyze", "Knowledge distribution: which node groups hold the knowledge (to protect)");
  auto a = std::make_shared<AnalyzeArgs>();
  add_model_arguments(app, *a, /*adapter=*/false);
  app->add_option("--text", a->text, "evaluation text (.txt or .jsonl)")->required();
  app->add_option("--rho", a->o.rho, "fraction of each node group zeroed")->capture_default_str();
  app->add_option("--gamma", a->o.gamma, "fraction of node groups protected")
      ->capture_default_str();
  app->add_option("--seq-len", a->o.seq_len)->capture_default_str();
  app->add_option("--windows", a->o.windows, "evaluation windows")->capture_default_str();
  app->add_option("--out-json", a->json_out, "write the result as JSON");
  app->add_option("--plan-out", a->plan_out,
                  "write a pruning plan that protects the marked node groups");
  app->add_option("--ratio", a->ratio, "target ratio of the written plan")->capture_default_str();
  app->add_option("--dist-timeout", a->dist_timeout,
                  "data parallel (RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT or Slurm's variables "
                  "set): seconds after which the other ranks give up on a rank that died or hangs")
      ->capture_default_str();
  app->footer(
      "Data parallel (lorashear launch --nproc N -- analyze ..., torchrun, srun): each rank\n"
      "measures every N-th node group; rank 0 writes and prints the result of one process.");
  return Command{app, [a, &global] { return run_analyze(*a, global); }};
});

}  // namespace
}  // namespace lorashear::cli
