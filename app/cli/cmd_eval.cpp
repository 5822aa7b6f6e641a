// `lorashear eval ppl MODEL --text FILE`: perplexity with the windows-L protocol (LORASHEAR.md §6).
// `lorashear eval tasks MODEL --tasks … --data …`: zero-shot accuracy (lm-eval-harness protocol).
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "cli_common.h"
#include "cli_dist.h"
#include "lorashear/dist/distributed.h"
#include "lorashear/errors.h"
#include "lorashear/eval/perplexity.h"
#include "lorashear/eval/tasks.h"
#include "lorashear/io/text.h"

namespace lorashear::cli {
namespace {

struct PplArgs : ModelArgs {
  std::string text, preset;
  int64_t seq_len = 0, max_windows = 0, batch = 8;
  double dist_timeout = 600;
};

constexpr const char* kDistTimeoutHelp =
    "data parallel (RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT or Slurm's variables set): seconds "
    "after which the other ranks give up on a rank that died or hangs";

int run_ppl(const PplArgs& a, const GlobalOptions& global) {
  // Data parallel: each rank scores its share of the windows; rank 0 prints the whole result.
  init_distributed(a.dist_timeout, global, {});
  auto& ranks = dist::current();
  auto loaded = load_model_for_cli(a, global, true);
  PerplexityOptions opts;
  opts.ranks = &ranks;
  opts.batch = a.batch;
  opts.max_windows = a.max_windows;
  if (a.seq_len > 0) {
    opts.seq_len = a.seq_len;
  } else if (a.preset == "windows-ctx") {
    opts.seq_len = loaded.model->config().max_position_embeddings;
  } else {
    opts.seq_len = 128;  // "windows-128"
  }
  const std::string text = read_text_corpus(a.text);
  const auto tokens = loaded.tokenizer->encode(text);
  GlobalOptions quiet = global;
  if (!ranks.is_root()) quiet.quiet = true;
  ProgressBar bar(quiet);
  auto ctx = bar.context();
  auto r = perplexity(*loaded.model, tokens, opts, &ctx);
  bar.finish();
  if (!ranks.is_root()) return 0;
  if (global.json) {
    print_json({{"model", a.model},
                {"text", a.text},
                {"ppl", r.ppl},
                {"mean_nll", r.mean_nll},
                {"seq_len", opts.seq_len},
                {"windows", r.windows},
                {"predictions", r.predictions},
                {"text_tokens", r.text_tokens},
                {"protocol", r.protocol()},
                {"seconds", r.seconds},
                {"tokens_per_second", r.tokens_per_second},
                {"world_size", ranks.world_size()}});
  } else {
    std::printf("ppl %.4f  (mean NLL %.5f; %s; text %lld tokens)\n", r.ppl, r.mean_nll,
                r.protocol().c_str(), static_cast<long long>(r.text_tokens));
    std::printf("%.1f s, %.0f tokens/s\n", r.seconds, r.tokens_per_second);
  }
  return 0;
}

struct TasksArgs : ModelArgs {
  std::vector<std::string> tasks, data;
  int64_t limit = 0, batch = 64;
  bool per_item = false;
  double dist_timeout = 600;
};

void print_task_table(const std::vector<TaskResult>& results) {
  std::printf("%-16s %7s %8s %8s %9s %8s %9s %8s\n", "task", "items", "acc", "±", "acc_norm", "±",
              "truncated", "items/s");
  for (const auto& r : results) {
    std::printf("%-16s %7lld %8.4f %8.4f ", r.name.c_str(), static_cast<long long>(r.items), r.acc,
                r.acc_stderr);
    if (r.has_norm())
      std::printf("%9.4f %8.4f", r.acc_norm, r.acc_norm_stderr);
    else
      std::printf("%9s %8s", "-", "");
    std::printf(" %9lld %8.0f", static_cast<long long>(r.truncated), r.items_per_second());
    if (r.format == TaskFormat::Lambada) std::printf("  ppl %.3f", r.ppl);
    std::printf("\n");
  }
  if (results.size() > 1) {
    const auto m = task_means(results);
    std::printf(
        "%-16s %7s %8.4f %8s %9.4f   (headline: acc_norm where lm-eval-harness reports it, else "
        "acc)\n",
        ("mean of " + std::to_string(results.size())).c_str(), "", m.acc, "", m.headline);
  }
}

int run_tasks(const TasksArgs& a, const GlobalOptions& global) {
  auto data = a.data;
  if (data.empty()) {
    if (const char* env = std::getenv("LORASHEAR_EVAL_DATA"); env != nullptr && *env != 0)
      data.emplace_back(env);
  }
  if (data.empty())
    throw UsageError(
        "give the task files: --data DIR or --data FILE,… (or set LORASHEAR_EVAL_DATA)");
  // The task files are read before the model is loaded: a typo should not cost a load.
  const auto files = resolve_task_files(a.tasks, data);
  const auto tasks = load_tasks(files);
  // Data parallel: each rank scores its share of every task's requests; rank 0 prints.
  init_distributed(a.dist_timeout, global, {});
  auto& ranks = dist::current();
  const bool root = ranks.is_root();
  auto loaded = load_model_for_cli(a, global, true);
  TaskEvalOptions opts;
  opts.limit = a.limit;
  opts.batch = a.batch;
  opts.ranks = &ranks;
  GlobalOptions quiet = global;
  if (!root) quiet.quiet = true;
  ProgressBar bar(quiet);
  auto ctx = bar.context();
  std::vector<TaskResult> done;
  const auto protocol = task_protocol(*loaded.model, *loaded.tokenizer);
  try {
    evaluate_tasks(*loaded.model, *loaded.tokenizer, tasks, opts, &ctx,
                   [&](const TaskResult& r) { done.push_back(r); });
  } catch (const CancelledError&) {
    bar.finish();
    if (!root) throw;
    // What was finished is still worth printing; say what is missing.
    if (!done.empty()) print_task_table(done);
    std::string missing;
    for (size_t i = done.size(); i < files.size(); ++i)
      missing += (missing.empty() ? "" : ", ") + files[i].name;
    std::cerr << "cancelled before " << missing << " finished\n";
    throw;
  }
  bar.finish();
  if (!root) return 0;
  if (global.json) {
    nlohmann::json per_task = nlohmann::json::array();
    for (const auto& r : done)
      per_task.push_back(to_json(r, a.per_item));
    const auto m = task_means(done);
    print_json({{"model", a.model},
                {"protocol", protocol},
                {"tasks", per_task},
                {"mean_acc", m.acc},
                {"mean_headline", m.headline},
                {"world_size", ranks.world_size()}});
  } else {
    print_task_table(done);
    std::printf("protocol: %s\n", protocol.c_str());
  }
  return 0;
}

const Register register_eval([](CLI::App& parent, GlobalOptions& global) {
  auto* eval = parent.add_subcommand("eval", "Evaluate a model");
  eval->require_subcommand(1);
  auto* ppl = eval->add_subcommand(
      "ppl",
      "Perplexity: non-overlapping windows of L tokens (no BOS, last partial window dropped), "
      "PPL = exp(mean NLL of the L-1 predictions per window)");
  auto a = std::make_shared<PplArgs>();
  add_model_arguments(ppl, *a);
  ppl->add_option("--text", a->text, "Text file (.txt/.raw as is; .jsonl: the \"text\" field)")
      ->required()
      ->check(CLI::ExistingFile);
  ppl->add_option("--preset", a->preset,
                  "windows-128 (LLM-Pruner/LoRAShear tables) or windows-ctx (model context)")
      ->check(CLI::IsMember({"windows-128", "windows-ctx"}))
      ->default_str("windows-128");
  ppl->add_option("--seq-len", a->seq_len, "Window length L (overrides --preset)")
      ->check(CLI::Range(int64_t(2), int64_t(1) << 20));
  ppl->add_option("--max-windows", a->max_windows, "Score only the first N windows (0 = all)")
      ->check(CLI::NonNegativeNumber);
  ppl->add_option("--batch", a->batch, "Windows per forward pass")
      ->check(CLI::Range(int64_t(1), int64_t(4096)))
      ->capture_default_str();
  ppl->add_option("--dist-timeout", a->dist_timeout, kDistTimeoutHelp)->capture_default_str();
  ppl->footer(
      "Data parallel (lorashear launch --nproc N -- eval ppl ..., torchrun, srun): each rank\n"
      "scores every N-th batch of windows; rank 0 prints the result of one process.");

  auto* tasks = eval->add_subcommand(
      "tasks",
      "Zero-shot accuracy (lm-eval-harness loglikelihood): per task acc and acc_norm with "
      "standard errors, the mean, the protocol");
  auto t = std::make_shared<TasksArgs>();
  add_model_arguments(tasks, *t);
  std::string known;
  for (const auto& k : known_tasks())
    known += (known.empty() ? "" : ",") + k;
  tasks
      ->add_option(
          "--tasks", t->tasks,
          "Tasks, comma-separated: " + known + " (default: every task with a file in --data)")
      ->delimiter(',');
  tasks
      ->add_option("--data", t->data,
                   "Directories and task files, comma-separated (JSONL {query,choices,gold}, "
                   "{context_options,continuation,gold}, {context,continuation}, or llama.cpp's "
                   "HellaSwag text); default $LORASHEAR_EVAL_DATA")
      ->delimiter(',');
  tasks->add_option("--limit", t->limit, "Score only the first N items of each task (0 = all)")
      ->check(CLI::NonNegativeNumber);
  tasks->add_option("--batch", t->batch, "Sequences per forward pass")
      ->check(CLI::Range(int64_t(1), int64_t(4096)))
      ->capture_default_str();
  tasks->add_flag("--per-item", t->per_item, "With --json: each item's prediction and lls");
  tasks->add_option("--dist-timeout", t->dist_timeout, kDistTimeoutHelp)->capture_default_str();
  tasks->footer(
      "Data parallel (lorashear launch --nproc N -- eval tasks ..., torchrun, srun): each rank\n"
      "scores every N-th batch of requests; rank 0 prints the result of one process.");
  // `eval` itself does nothing; the chosen subcommand runs. Report `eval` as the parsed command.
  return Command{eval, [a, t, ppl, tasks, &global] {
                   if (tasks->parsed()) return run_tasks(*t, global);
                   return run_ppl(*a, global);
                 }};
});

}  // namespace
}  // namespace lorashear::cli
