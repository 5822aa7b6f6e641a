// `lorashear recover MODEL --domain FILE_OR_DIR ... [--instruct FILE] [--dense MODEL] --out DIR`:
// dynamic knowledge recovery (LORASHEAR.md §4) on any model, writing the recovered model and
// recovery_report.json. The options are shared with `prune --recover`.
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include <optional>

#include "cli_common.h"
#include "cli_dist.h"
#include "lorashear/errors.h"
#include "lorashear/io/checkpoint.h"
#include "lorashear/io/files.h"
#include "lorashear/model/llama.h"
#include "lorashear/plan/memory_plan.h"
#include "lorashear/recover/recovery.h"
#include "lorashear/run_log.h"

namespace lorashear::cli {

void add_recovery_options(CLI::App* app, RecoveryOptions& r, int64_t& steps) {
  app->add_option("--domain", r.domains,
                  "stage 1 data: a text file, a folder of text files or a JSON Lines file (one "
                  "category each; JSONL records with a \"source\" field: one per source); repeat")
      ->delimiter(',');
  app->add_option("--instruct", r.instruct,
                  "stage 2 data: Alpaca records (JSON array or JSONL of instruction / input / "
                  "output)");
  app->add_option("--recover-steps", steps,
                  "total recovery budget: 70% stage 1, 30% stage 2 (without --instruct: all "
                  "stage 1)");
  app->add_option("--stage1-steps", r.stage1.steps)->capture_default_str();
  app->add_option("--stage2-steps", r.stage2.steps)->capture_default_str();
  app->add_option("--sampling", r.sampling,
                  "stage 1 category sampling: adaptive (by the loss gap to the dense model) or "
                  "uniform")
      ->capture_default_str();
  app->add_option("--reestimate-every", r.reestimate_every,
                  "stage 1 steps between per-category validation estimates")
      ->capture_default_str();
  app->add_option("--floor", r.floor, "sampling floor, a fraction of the mean loss gap")
      ->capture_default_str();
  app->add_option("--stage1-patience", r.stage1_patience,
                  "stop stage 1 after this many estimates without a category improving (0: never)")
      ->capture_default_str();
  app->add_option("--stage2-patience", r.stage2_patience,
                  "stop stage 2 after this many evaluations without a better validation loss")
      ->capture_default_str();
  app->add_option("--eval-every", r.eval_every, "stage 2 steps between validation evaluations")
      ->capture_default_str();
  app->add_option("--val-sequences", r.val_sequences, "validation sequences per category")
      ->capture_default_str();
  app->add_option("--instruct-seq-len", r.instruct_seq_len,
                  "longest instruction sequence in tokens (prompt + response)")
      ->capture_default_str();
  app->add_option("--instruct-validation", r.instruct_validation,
                  "fraction of the instruction records held out")
      ->capture_default_str();
  app->add_flag("--skip-bad-lines", r.corpus.skip_bad_lines,
                "skip malformed JSON lines (counted in the report) instead of stopping");
  for (auto* t : {&r.stage1, &r.stage2}) {
    const std::string p = t == &r.stage1 ? "--stage1-" : "--stage2-";
    app->add_option(p + "lr", t->lr)->capture_default_str();
    app->add_option(p + "batch", t->batch_size)->capture_default_str();
    app->add_option(p + "grad-accum", t->grad_accum, "micro-batches per step")
        ->capture_default_str();
    app->add_option(p + "warmup", t->warmup, "fraction of the stage's steps warming up")
        ->capture_default_str();
  }
  app->add_option("--precision", r.stage1.precision,
                  "auto (bf16 autocast on CUDA, fp32 on the CPU), fp32 or bf16")
      ->capture_default_str()
      ->each([&r](const std::string& v) { r.stage2.precision = v; });
  app->add_option("--recover-lora-rank", r.lora.rank)->capture_default_str();
  app->add_option("--recover-lora-alpha", r.lora.alpha)->capture_default_str();
}

void default_recovery_stages(const CLI::App& app, RecoveryOptions& r, int64_t steps) {
  // A stage without its data is off unless its steps were asked for (then validate says why).
  if (r.domains.empty() && app.count("--stage1-steps") == 0) r.stage1.steps = 0;
  if (r.instruct.empty() && app.count("--stage2-steps") == 0) r.stage2.steps = 0;
  if (steps > 0) r.split_budget(steps);
}

void print_recovery(const nlohmann::json& rep) {
  if (rep.contains("stage1")) {
    const auto& s = rep["stage1"];
    std::printf("stage 1: %lld steps (%s sampling%s)\n", s["steps"].get<long long>(),
                s["sampling"].get<std::string>().c_str(),
                s["stopped_early"].get<bool>() ? ", stopped early" : "");
    const auto& first = s["history"].front();
    const auto& last = s["history"].back();
    std::printf("  %-24s %10s %10s %10s %8s\n", "category", "dense", "start", "end", "weight");
    for (const auto& [name, l] : last["loss"].items()) {
      const auto d = rep["dense_loss"].contains(name) ? rep["dense_loss"][name].get<double>() : -1;
      std::printf("  %-24s %10s %10.4f %10.4f %8.3f\n", name.c_str(),
                  d >= 0 ? std::to_string(d).substr(0, 6).c_str() : "-",
                  first["loss"][name].get<double>(), l.get<double>(),
                  last["weights"][name].get<double>());
    }
    const auto& ld = s["loader"];
    std::printf("  data loader: %lld stalls, %.2f s waited (start-up %.2f s)\n",
                ld["stalls"].get<long long>(), ld["waited_seconds"].get<double>(),
                ld["startup_seconds"].get<double>());
  }
  if (rep.contains("stage2")) {
    const auto& s = rep["stage2"];
    std::printf("stage 2: %lld steps%s, validation loss %.4f -> best %.4f at step %lld\n",
                s["steps"].get<long long>(), s["stopped_early"].get<bool>() ? " (early stop)" : "",
                s["validation"].front()["loss"].get<double>(),
                s["best_validation_loss"].get<double>(), s["best_step"].get<long long>());
  }
}

namespace {

struct RecoverArgs : ModelArgs {
  CLI::App* app = nullptr;
  std::string dense, out;
  bool overwrite = false;
  int64_t steps = 0;
  double dist_timeout = 600;
  std::string checkpoint_activations = "auto";
  RecoveryOptions r;
};

int run_recover(RecoverArgs a, const GlobalOptions& global) {
  default_recovery_stages(*a.app, a.r, a.steps);
  if (a.r.checkpoint_dir.empty()) a.r.checkpoint_dir = a.out + ".checkpoint";
  a.r.validate();
  if (a.out.empty()) throw UsageError("an output directory is required (--out DIR)");
  // Data parallel under torchrun / Slurm / `lorashear launch`: rank 0 alone writes and prints.
  std::vector<std::pair<std::string, int64_t>> batches;
  if (a.r.stage1.steps > 0) batches.push_back({"--stage1-batch", a.r.stage1.batch_size});
  if (a.r.stage2.steps > 0) batches.push_back({"--stage2-batch", a.r.stage2.batch_size});
  const auto dopts = init_distributed(a.dist_timeout, global, batches);
  const bool root = dopts.rank == 0;
  // What rank 0 prints at the end: the report, as JSON or as text.
  auto print_report = [&](const nlohmann::json& full) {
    if (!root) return 0;
    if (global.json) {
      print_json(full);
      return 0;
    }
    print_recovery(full);
    std::printf("wrote %s (Hugging Face layout, recovery_report.json)\n", a.out.c_str());
    return 0;
  };
  // A kill after OUT was committed but before its checkpoint was removed: the run is complete.
  if (a.r.resume) {
    const auto full = complete_interrupted_run(a.r.checkpoint_dir, a.out, "recovery_report.json");
    if (full.is_object()) return print_report(full);
  }
  std::optional<io::StagedDirectory> staged;
  if (root) staged.emplace(a.out, a.overwrite);
  // A checkpoint a kill left moved aside is put back, and a damaged one refused, before the load.
  if (a.r.resume) io::verify_checkpoint(a.r.checkpoint_dir + "/latest");
  if (a.r.resume && !std::filesystem::exists(a.r.checkpoint_dir + "/latest/state.json"))
    throw UsageError("--resume: no checkpoint in " + a.r.checkpoint_dir);
  auto loaded = load_model_for_cli(a, global, /*need_tokenizer=*/true);
  if (loaded.model->lora() != nullptr) fold_lora(*loaded.model);  // --adapter: start from it
  std::shared_ptr<const Tokenizer> tok = loaded.tokenizer;
  GlobalOptions quiet = global;
  if (!root) quiet.quiet = true;
  ProgressBar bar(quiet);
  auto ctx = bar.context();
  {
    // Activation checkpointing, planned for the larger of the two stages' batches.
    MemoryPlanOptions mem;
    mem.batch = std::max(a.r.stage1.batch_size, a.r.stage2.batch_size);
    mem.seq_len = std::max(a.r.seq_len, a.r.instruct_seq_len);
    mem.world_size = dopts.world_size;
    mem.weight_bytes = loaded.model->options().dtype == torch::kFloat32 ? 4 : 2;
    mem.lora = a.r.lora;
    mem.lhspg = false;
    std::string why;
    loaded.model->set_activation_checkpointing(
        decide_activation_checkpointing(a.checkpoint_activations, loaded.model->config(), mem,
                                        loaded.model->options().device.is_cuda(), &why));
    if (root && !global.json && !global.quiet) std::cerr << why << "\n";
  }
  std::map<std::string, double> dense;
  if (!a.dense.empty() && a.r.stage1.steps > 0) {
    ModelArgs d{a.dense, a.tokenizer, ""};
    auto dense_model = load_model_for_cli(d, global, false);
    RecoveryData data(a.r, tok);
    dense = data.losses(*dense_model.model, a.r.stage1.batch_size, &ctx);
  }
  const char* kill_at = std::getenv("LORASHEAR_TEST_KILL_AT_STEP");
  const int64_t kill_step = kill_at ? std::atoll(kill_at) : -1;
  int64_t seen = 0;
  std::error_code fs_ec;
  RunLogWriter log(run_dir_for(a.out),
                   {{"kind", "recover"},
                    {"model", std::filesystem::absolute(a.model, fs_ec).string()},
                    {"out", std::filesystem::absolute(a.out, fs_ec).string()},
                    {"total_steps", a.r.stage1.steps + a.r.stage2.steps},
                    {"settings", {{"sampling", a.r.sampling}, {"domains", a.r.domains}}}},
                   root, dopts.world_size);
  nlohmann::json full;
  run_logged(log, [&] {
    const auto report =
        recover_model(*loaded.model, tok, a.r, dense, &ctx, [&](const RecoveryMetrics& m) {
          log.recovery(m);
          if (++seen == kill_step) std::raise(SIGKILL);
        });
    bar.finish();
    full = report;
    full["model"] = a.model;
    full["dense_model"] = a.dense;
    full["world_size"] = dopts.world_size;
    if (!staged) return;
    SaveOptions save;
    save.dtype = loaded.model->options().dtype;  // a bf16 model stays bf16
    save_hf(*loaded.model, loaded.tokenizer.get(), staged->path(), save, &ctx);
    const std::string text = full.dump(2) + "\n";
    io::write_file_atomic(staged->path() + "/recovery_report.json", text);
    io::mark_output_committing(a.r.checkpoint_dir, a.out + "/recovery_report.json", text);
    staged->commit();
    // For the crash tests: killed once OUT is committed, before its checkpoint goes.
    if (std::getenv("LORASHEAR_TEST_KILL_WHEN_SAVED") != nullptr) std::raise(SIGKILL);
  });
  if (root) {
    std::error_code ec;
    std::filesystem::remove_all(a.r.checkpoint_dir, ec);
  }
  return print_report(full);
}

const Register register_recover([](CLI::App& parent, GlobalOptions& global) {
  auto* app = parent.add_subcommand(
      "recover",
      "Dynamic knowledge recovery: LoRA fine-tuning on adaptively sampled categories, "
      "then on instruction data");
  auto a = std::make_shared<RecoverArgs>();
  a->app = app;
  add_model_arguments(app, *a);
  add_recovery_options(app, a->r, a->steps);
  app->add_option("--dense", a->dense,
                  "the dense (unpruned) model: each category's loss gap to it drives adaptive "
                  "sampling");
  app->add_option("--out", a->out, "output directory (Hugging Face layout)")->required();
  app->add_option("--seq-len", a->r.seq_len)->capture_default_str();
  app->add_option("--seed", a->r.seed)->capture_default_str();
  a->r.checkpoint_every = 50;  // a kill loses at most 50 steps
  app->add_option("--checkpoint-every", a->r.checkpoint_every,
                  "save the run's state every N steps (0 = never) into OUT.checkpoint")
      ->capture_default_str();
  app->add_option("--resume", a->r.checkpoint_dir,
                  "continue from a checkpoint directory (OUT.checkpoint); same options required")
      ->each([r = &a->r](const std::string&) { r->resume = true; });
  app->add_flag("--overwrite", a->overwrite, "replace DIR if it exists");
  app->add_option("--checkpoint-activations", a->checkpoint_activations,
                  "keep only each layer's input and recompute it in backward: on, off, or auto "
                  "(on when the run would not fit the available memory; lorashear plan-memory)")
      ->check(CLI::IsMember({"on", "off", "auto"}))
      ->capture_default_str();
  app->add_option("--dist-timeout", a->dist_timeout,
                  "data parallel (RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT set): seconds after "
                  "which the other ranks give up on a rank that died or hangs")
      ->capture_default_str();
  app->footer(
      "Example:\n"
      "  lorashear recover pruned-50 --dense ../shared/models/stories260K/stories260K.bin \\\n"
      "      --domain ../shared/data/text/tinystories_val_subset.txt \\\n"
      "      --domain ../shared/data/text/wikitext2_valid.raw \\\n"
      "      --domain ../shared/data/text/c4_300docs.jsonl \\\n"
      "      --instruct ../shared/data/instruct/instruction-data.json --recover-steps 300 \\\n"
      "      --out recovered-50");
  return Command{app, [a, &global] {
                   global.dtype_default = "auto";  // base weights stay in the checkpoint's dtype
                   return run_recover(*a, global);
                 }};
});

}  // namespace
}  // namespace lorashear::cli
