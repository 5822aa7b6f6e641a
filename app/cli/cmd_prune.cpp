// `lorashear prune MODEL --ratio R --text FILE --out DIR`: the LoRAShear pruning pipeline (LHSPG
// so far) writing the pruned model and pruning_report.json.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "cli_common.h"
#include "cli_dist.h"
#include "lorashear/dist/distributed.h"
#include "lorashear/errors.h"
#include "lorashear/prune/pipeline.h"

namespace lorashear::cli {
namespace {

struct PruneArgs : ModelArgs {
  std::string text, plan, gguf_dtype;
  double ratio = 0;
  bool uniform = false;
  int64_t steps = 0, recover_steps = 0;
  double dist_timeout = 600;
  CLI::App* app = nullptr;
  PruneOptions o;
};

int run_prune(PruneArgs a, const GlobalOptions& global) {
  if (!a.plan.empty()) {
    a.o.plan = PruningPlan::load(a.plan);
    if (a.ratio > 0) a.o.plan.target_ratio = a.ratio;
  } else if (a.ratio != 0) {
    a.o.plan.target_ratio = a.ratio;
  } else {
    throw UsageError("give --ratio (fraction of parameters to remove) or --plan FILE");
  }
  if (a.uniform) a.o.plan.uniform = true;
  if (a.steps > 0) a.o.lhspg.split_budget(a.steps);
  default_recovery_stages(*a.app, a.o.recovery, a.recover_steps);
  if (!a.o.recover && (!a.o.recovery.domains.empty() || !a.o.recovery.instruct.empty()))
    throw UsageError("--domain / --instruct are recovery data: add --recover");
  if (!a.gguf_dtype.empty()) {
    if (a.o.export_gguf.empty()) throw UsageError("--gguf-dtype needs --export-gguf FILE");
    a.o.gguf_dtype = parse_gguf_dtype(a.gguf_dtype);
  }
  a.o.validate();
  // Data parallel under torchrun / Slurm / `lorashear launch`: RANK, WORLD_SIZE, MASTER_ADDR,
  // MASTER_PORT. Rank 0 writes the output and prints; the other ranks write and print nothing.
  std::vector<std::pair<std::string, int64_t>> batches{{"--batch", a.o.lhspg.batch_size}};
  if (a.o.recover) {
    if (a.o.recovery.stage1.steps > 0)
      batches.push_back({"--stage1-batch", a.o.recovery.stage1.batch_size});
    if (a.o.recovery.stage2.steps > 0)
      batches.push_back({"--stage2-batch", a.o.recovery.stage2.batch_size});
  }
  const auto dopts = init_distributed(a.dist_timeout, global, batches);
  const bool root = dist::current().is_root();
  a.o.write_run_log = root;  // OUT.run: rank 0's record, with the world size
  a.o.world_size = dopts.world_size;
  auto loaded = load_model_for_cli(a, global, /*need_tokenizer=*/true);
  GlobalOptions quiet = global;
  if (!root) quiet.quiet = true;
  ProgressBar bar(quiet);
  auto ctx = bar.context();
  // For the crash tests: LORASHEAR_TEST_KILL_AT_STEP=N kills the process with SIGKILL at step N.
  const char* kill_at = std::getenv("LORASHEAR_TEST_KILL_AT_STEP");
  const int64_t kill_step = kill_at ? std::atoll(kill_at) : -1;
  // LORASHEAR_TEST_KILL_WHEN_SAVED=1: killed once OUT is committed, before its checkpoint goes.
  if (std::getenv("LORASHEAR_TEST_KILL_WHEN_SAVED") != nullptr) {
    ctx.on_progress = [inner = ctx.on_progress, saved = "saved " + a.o.out_dir](const Progress& p) {
      if (p.stage == "save" && p.message == saved) std::raise(SIGKILL);
      if (inner) inner(p);
    };
  }
  int64_t recovery_steps = 0;
  const auto report = prune_model(
      loaded, a.text, a.o, &ctx,
      [&](const LhspgMetrics& m) {
        if (m.step == kill_step) std::raise(SIGKILL);
      },
      [&](const RecoveryMetrics&) {
        // Recovery steps count on after the pruning steps.
        if (a.o.lhspg.total_steps() + ++recovery_steps == kill_step) std::raise(SIGKILL);
      });
  bar.finish();
  if (!root) return 0;
  if (global.json) {
    print_json(report);
    return 0;
  }
  const auto& p = report["parameters"];
  std::printf("pruned %.1f%% of the parameters (%s -> %s), %zu variable groups removed\n",
              100.0 * p["removed_ratio"].get<double>(),
              human_count(p["before"].get<int64_t>()).c_str(),
              human_count(p["after"].get<int64_t>()).c_str(), report["pruning"]["removed"].size());
  if (a.o.recover)
    std::printf("held-out ppl %.4f -> %.4f pruned -> %.4f recovered  (%s)\n",
                report["ppl"]["before"].get<double>(), report["ppl"]["pruned"].get<double>(),
                report["ppl"]["after"].get<double>(),
                report["ppl"]["protocol"].get<std::string>().c_str());
  else
    std::printf("held-out ppl %.4f -> %.4f  (%s)\n", report["ppl"]["before"].get<double>(),
                report["ppl"]["after"].get<double>(),
                report["ppl"]["protocol"].get<std::string>().c_str());
  std::printf(
      "LHSPG: %lld steps in %.1f s, %lld groups zeroed by the half-space projection, %lld "
      "by the period-end projection\n",
      report["pruning"]["steps"].get<long long>(), report["seconds"]["pruning"].get<double>(),
      report["pruning"]["zeroed_by_projection"].get<long long>(),
      report["pruning"]["zeroed_by_hard_projection"].get<long long>());
  if (a.o.recover) print_recovery(report["recovery"]);
  for (const auto& w : report["warnings"])
    std::fprintf(stderr, "warning: %s\n", w.get<std::string>().c_str());
  std::printf("wrote %s (Hugging Face layout, pruning_report.json%s)\n", a.o.out_dir.c_str(),
              a.o.keep_adapter ? ", the LoRA adapter in adapter/ (PEFT layout)" : "");
  if (report.contains("gguf"))
    std::printf("wrote %s (GGUF for llama.cpp, architecture %s, %s)\n", a.o.export_gguf.c_str(),
                report["gguf"]["architecture"].get<std::string>().c_str(),
                report["gguf"]["dtype"].get<std::string>().c_str());
  std::string where;
  for (const auto& t : report["loads_in"])
    where += (where.empty() ? "" : "; ") + t.get<std::string>();
  std::printf("loads in: %s%s\n", where.c_str(),
              report.contains("gguf") ? "" : " (llama.cpp: --export-gguf FILE)");
  return 0;
}

const Register register_prune([](CLI::App& parent, GlobalOptions& global) {
  auto* app = parent.add_subcommand(
      "prune", "Prune with LHSPG (LoRAShear) and write the smaller model and a JSON report");
  auto a = std::make_shared<PruneArgs>();
  a->app = app;
  add_model_arguments(app, *a, /*adapter=*/false);
  auto& o = a->o;
  o.checkpoint_every = 50;  // a kill loses at most 50 steps
  app->add_option("--text", a->text, "training text (.txt or .jsonl); its end is held out")
      ->required();
  app->add_option("--out", o.out_dir, "output directory (Hugging Face layout)")->required();
  app->add_option("--ratio", a->ratio, "fraction of all parameters to remove, in (0, 1)");
  app->add_option("--plan", a->plan, "plan JSON (per-layer / per-node-group ratios, protections)");
  app->add_flag("--uniform", a->uniform,
                "same size in every layer (kv groups, MLP width), so transformers / vLLM load the "
                "result as a plain LLaMA; the knowledge analysis's protections are then not "
                "applied (one would keep every layer whole)");
  app->add_option(
         "--method", o.method,
         "lhspg, or a baseline on the same plan: magnitude, random, taylor (full-gradient, "
         "LLM-Pruner style), loraprune (LoRA-gradient); baselines prune at once, then "
         "fine-tune LoRA for the same steps")
      ->capture_default_str();
  app->add_option("--steps", a->steps,
                  "total step budget: 5% warm-up, 35% over the periods, 60% recovery (baselines: "
                  "all fine-tuning after pruning at once)");
  app->add_option("--warmup-steps", o.lhspg.warmup_steps)->capture_default_str();
  app->add_option("--periods", o.lhspg.periods)->capture_default_str();
  app->add_option("--period-steps", o.lhspg.period_steps)->capture_default_str();
  app->add_option("--recovery-steps", o.lhspg.recovery_steps,
                  "LoRA steps after the last period, removed groups at zero")
      ->capture_default_str();
  app->add_option("--batch", o.lhspg.batch_size)->capture_default_str();
  app->add_option("--lr", o.lhspg.lr, "AdamW learning rate of the LoRA factors")
      ->capture_default_str();
  app->add_option("--epsilon", o.lhspg.epsilon, "half-space threshold in [0, 1)")
      ->capture_default_str();
  app->add_option("--lambda", o.lhspg.lambda, "base shrink strength")->capture_default_str();
  app->add_option("--magnitude-weight", o.lhspg.magnitude_weight,
                  "LHSPG saliency: weight of the magnitude criterion")
      ->capture_default_str();
  app->add_option("--taylor-weight", o.lhspg.taylor_weight,
                  "LHSPG saliency: weight of the LoRA-aware Taylor criterion")
      ->capture_default_str();
  app->add_option("--lora-rank", o.lora.rank)->capture_default_str();
  app->add_option("--lora-alpha", o.lora.alpha)->capture_default_str();
  app->add_option("--lora-targets", o.lora.targets, "layers that get adapters")->delimiter(',');
  app->add_option("--seq-len", o.seq_len, "training windows and perplexity protocol")
      ->capture_default_str();
  app->add_option("--holdout", o.holdout, "fraction of the text held out for perplexity")
      ->capture_default_str();
  app->add_option("--eval-windows", o.eval_windows, "held-out windows scored (0 = all)")
      ->capture_default_str();
  app->add_option("--seed", o.seed)->capture_default_str();
  app->add_flag("!--no-analysis", o.analyze,
                "skip the knowledge distribution analysis (no automatic protections)");
  app->add_option("--gamma", o.knowledge.gamma, "fraction of node groups the analysis protects")
      ->capture_default_str();
  app->add_flag("--recover", o.recover,
                "then run dynamic knowledge recovery on the pruned model (the options of "
                "`lorashear recover`: --domain, --instruct, --recover-steps, ...)");
  add_recovery_options(app, o.recovery, a->recover_steps);
  app->add_flag("--keep-adapter", o.keep_adapter,
                "write the LoRA adapter apart (OUT/adapter, PEFT layout) instead of merging it; "
                "load with --adapter OUT/adapter");
  app->add_option("--export-gguf", o.export_gguf,
                  "also write the pruned model as GGUF for llama.cpp to FILE (adapter merged)");
  app->add_option("--gguf-dtype", a->gguf_dtype, "GGUF tensor type: f32 (default), f16, bf16, q8_0")
      ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0"}));
  app->add_flag("--overwrite", o.overwrite, "replace DIR if it exists (once pruning succeeded)");
  app->add_option("--checkpoint-every", o.checkpoint_every,
                  "save the run's state every N steps (0 = never) into OUT.checkpoint")
      ->capture_default_str();
  app->add_option("--checkpoint-activations", o.checkpoint_activations,
                  "keep only each layer's input and recompute it in backward: on, off, or auto "
                  "(on when the run would not fit the available memory; lorashear plan-memory)")
      ->check(CLI::IsMember({"on", "off", "auto"}))
      ->capture_default_str();
  app->add_option(
         "--resume", o.checkpoint_dir,
         "continue a killed or cancelled run from its checkpoint directory (OUT.checkpoint); "
         "the other options must be the same as the first time")
      ->each([&o](const std::string&) { o.resume = true; });
  app->add_option("--dist-timeout", a->dist_timeout,
                  "data parallel (RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT set): seconds after "
                  "which the other ranks give up on a rank that died or hangs")
      ->capture_default_str();
  app->footer(
      "Examples:\n"
      "  lorashear prune ../shared/models/stories260K/stories260K.bin --ratio 0.2 \\\n"
      "      --text ../shared/data/text/tinystories_val_subset.txt --out pruned-20\n"
      "  lorashear eval ppl pruned-20 --text FILE      # the result loads like any model");
  return Command{app, [a, &global] {
                   global.dtype_default = "auto";  // base weights stay in the checkpoint's dtype
                   return run_prune(*a, global);
                 }};
});

}  // namespace
}  // namespace lorashear::cli
