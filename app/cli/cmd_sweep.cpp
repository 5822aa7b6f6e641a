// `lorashear sweep MODEL --ratios … --methods … --text FILE --out DIR`: every (method, ratio)
// pruned with the same budget and evaluated (held-out ppl, zero-shot tasks, speed-up against the
// dense model); results.json / .csv / .md in DIR; a killed or cancelled sweep resumes.
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "cli_common.h"
#include "lorashear/errors.h"
#include "lorashear/model/llama.h"
#include "lorashear/prune/sweep.h"

namespace lorashear::cli {
namespace {

struct SweepArgs : ModelArgs {
  SweepOptions o;
  int64_t steps = 0, recover_steps = 0;
  bool uniform = false, no_bench = false;
  std::string plan;
  CLI::App* app = nullptr;
};

int run_sweep_command(SweepArgs a, const GlobalOptions& global) {
  auto& o = a.o;
  o.model = a.model;
  o.tokenizer = a.tokenizer;
  o.bench = !a.no_bench;
  LoadOptions lo;
  apply_model_flags(global, lo);
  o.model_options = lo.model;
  o.keep_checkpoint_dtype = lo.keep_checkpoint_dtype;
  o.map_weights = lo.map_weights;
  if (!a.plan.empty()) o.prune.plan = PruningPlan::load(a.plan);
  if (a.uniform) o.prune.plan.uniform = true;
  if (a.steps > 0) o.prune.lhspg.split_budget(a.steps);
  default_recovery_stages(*a.app, o.prune.recovery, a.recover_steps);
  if (!o.prune.recover && (!o.prune.recovery.domains.empty() || !o.prune.recovery.instruct.empty()))
    throw UsageError("--domain / --instruct are recovery data: add --recover");
  if (o.task_data.empty() && !o.tasks.empty()) {
    if (const char* env = std::getenv("LORASHEAR_EVAL_DATA"); env != nullptr && *env != 0)
      o.task_data.emplace_back(env);
  }
  ProgressBar bar(global);
  auto ctx = bar.context();
  nlohmann::json last;
  try {
    last = run_sweep(o, &ctx, [&](const nlohmann::json& r) { last = r; });
  } catch (const CancelledError&) {
    bar.finish();
    std::string missing;
    for (const auto& id : sweep_missing(last))
      missing += (missing.empty() ? "" : ", ") + id;
    std::cerr << "cancelled; finished runs are in " << o.out_dir
              << "/results.* — missing: " << (missing.empty() ? "none" : missing)
              << "\nrun the same command again to continue\n";
    throw;
  }
  bar.finish();
  const auto missing = sweep_missing(last);
  if (global.json) {
    print_json(last);
  } else {
    std::printf("%s", sweep_markdown(last).c_str());
    std::printf(
        "\nwrote %s/results.json, results.csv, results.md; the pruned models are in "
        "%s/runs/ID/model\n",
        o.out_dir.c_str(), o.out_dir.c_str());
  }
  int failed = 0;
  for (const auto& run : last["runs"])
    if (run.value("status", "") == "failed") {
      ++failed;
      std::fprintf(stderr, "run %s failed: %s\n", run.value("id", "").c_str(),
                   run.value("error", "").c_str());
    }
  return failed > 0 ? 1 : 0;
}

const Register register_sweep([](CLI::App& parent, GlobalOptions& global) {
  auto* app = parent.add_subcommand(
      "sweep",
      "Prune with every method at every ratio (same budget), evaluate each (held-out ppl, "
      "zero-shot tasks, speed-up) and write the papers' table; resumes where it stopped");
  auto a = std::make_shared<SweepArgs>();
  a->app = app;
  add_model_arguments(app, *a, /*adapter=*/false);
  auto& o = a->o;
  o.prune.checkpoint_every = 50;
  app->add_option("--ratios", o.ratios, "fractions of the parameters to remove, e.g. 0.2,0.35,0.5")
      ->delimiter(',')
      ->required();
  app->add_option("--methods", o.methods,
                  "lhspg, magnitude, taylor, loraprune, random (comma-separated)")
      ->delimiter(',')
      ->required();
  app->add_option("--text", o.text, "pruning text (.txt or .jsonl); its end is held out")
      ->required();
  app->add_option("--out", o.out_dir,
                  "output folder: results.json/.csv/.md, runs/ID/model (created; an existing "
                  "sweep there with the same settings is resumed)")
      ->required();
  app->add_option("--steps", a->steps, "step budget of every run (as `prune --steps`)");
  app->add_option("--plan", a->plan, "base plan JSON (protections, per-layer ratios)");
  app->add_flag("--uniform", a->uniform, "same size in every layer (as `prune --uniform`)");
  app->add_option("--lora-rank", o.prune.lora.rank)->capture_default_str();
  app->add_option("--seq-len", o.prune.seq_len, "training windows and perplexity protocol")
      ->capture_default_str();
  app->add_option("--holdout", o.prune.holdout, "fraction of the text held out for perplexity")
      ->capture_default_str();
  app->add_option("--eval-windows", o.prune.eval_windows, "held-out windows scored (0 = all)")
      ->capture_default_str();
  app->add_option("--seed", o.prune.seed)->capture_default_str();
  app->add_flag("!--no-analysis", o.prune.analyze, "skip the knowledge distribution analysis");
  app->add_flag("--recover", o.prune.recover,
                "run knowledge recovery on every pruned model (--domain, --instruct, "
                "--recover-steps, …)");
  add_recovery_options(app, o.prune.recovery, a->recover_steps);
  app->add_option("--tasks", o.tasks, "zero-shot tasks to evaluate (comma-separated)")
      ->delimiter(',');
  app->add_option("--task-data", o.task_data,
                  "task files or folders (default $LORASHEAR_EVAL_DATA when --tasks is given)")
      ->delimiter(',');
  app->add_option("--task-limit", o.task_options.limit, "items per task (0 = all)")
      ->capture_default_str();
  app->add_flag("--no-bench", a->no_bench, "skip the speed measurement");
  app->add_option("--bench-prompt", o.speed.prompt)->capture_default_str();
  app->add_option("--bench-generate", o.speed.generate)->capture_default_str();
  app->add_option("--bench-reps", o.speed.reps)->capture_default_str();
  app->footer(
      "Example:\n"
      "  lorashear sweep ../shared/models/stories260K/stories260K.bin --ratios 0.2,0.5 \\\n"
      "      --methods lhspg,magnitude,taylor,loraprune,random --steps 200 \\\n"
      "      --text ../shared/data/text/tinystories_val_subset.txt \\\n"
      "      --tasks arc_easy,piqa --task-data ../shared/data/eval --out sweep-260k");
  return Command{app, [a, &global] {
                   global.dtype_default = "auto";  // base weights stay in the checkpoint's dtype
                   return run_sweep_command(*a, global);
                 }};
});

}  // namespace
}  // namespace lorashear::cli
