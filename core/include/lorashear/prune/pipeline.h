#pragma once
// The pruning pipeline behind `lorashear prune` and the GUI's run: text → train / held-out split →
// dense perplexity → dependency analysis → knowledge distribution (protections) → plan → LoRA
// adapters → LHSPG (or a baseline) → subnet construction →
// LoRA folded in → pruned perplexity → Hugging Face export and a JSON report, written atomically.

#include <nlohmann/json.hpp>

#include <functional>
#include <string>

#include "lorashear/io/gguf.h"
#include "lorashear/io/loader.h"
#include "lorashear/model/lora.h"
#include "lorashear/prune/knowledge.h"
#include "lorashear/prune/lhspg.h"
#include "lorashear/prune/plan.h"
#include "lorashear/recover/recovery.h"
#include "lorashear/task.h"

namespace lorashear {

struct PruneOptions {
  PruningPlan plan;
  std::string method = "lhspg";  ///< or a baseline: magnitude, random, taylor, loraprune
  LoraConfig lora;               ///< adapters trained by LHSPG (rank 8, alpha 16 by default)
  LhspgOptions lhspg;
  /// Run the knowledge distribution analysis first and protect its top-gamma node groups.
  bool analyze = true;
  KnowledgeOptions knowledge;
  int64_t seq_len = 128;     ///< training windows and the perplexity protocol (windows-L)
  double holdout = 0.1;      ///< fraction of the text's tokens, at its end, kept for perplexity
  int64_t eval_windows = 0;  ///< 0 = every held-out window
  /// > 0: the dense model's held-out perplexity under exactly these text / seq_len / holdout /
  /// eval_windows settings, measured before (a sweep measures it once for all its runs).
  double dense_ppl = 0.0;
  uint64_t seed = 0;
  std::string out_dir;
  bool overwrite = false;
  /// Keep the trained LoRA adapter apart: OUT holds the pruned base weights (the removed groups'
  /// LoRA updates are in them already, the kept groups' base weights are the original ones) and
  /// OUT/adapter the adapter in the PEFT layout, unmerged. Default: folded into the weights.
  bool keep_adapter = false;
  /// Also write the pruned model (adapter merged) as GGUF for llama.cpp to this file, once the
  /// output directory is in place. A failure there leaves the saved directory and says how to
  /// retry.
  std::string export_gguf;
  GgufDtype gguf_dtype = GgufDtype::F32;
  /// Run dynamic knowledge recovery (LORASHEAR.md §4) on the pruned model before it is written:
  /// the categories' dense losses are measured before pruning. `recovery.seq_len` and `.seed`
  /// follow the options above; its checkpoints live in CHECKPOINT_DIR/recovery.
  bool recover = false;
  RecoveryOptions recovery;
  /// Checkpoints every N LHSPG steps into `checkpoint_dir` (default: OUT_DIR.checkpoint), removed
  /// once the run succeeds; `resume` continues from the last one (same settings required).
  int64_t checkpoint_every = 0;
  std::string checkpoint_dir;
  bool resume = false;
  /// The run's live record in OUT_DIR.run (run.json + metrics.jsonl, lorashear/run_log.h); off
  /// on the ranks other than 0 of a distributed run, which also sets `world_size` there.
  bool write_run_log = true;
  int world_size = 1;
  /// Activation checkpointing during LHSPG and recovery: "on", "off" or "auto" (on when the run
  /// would not fit the available memory without it; decide_activation_checkpointing).
  std::string checkpoint_activations = "auto";
  /// Throws UsageError naming the option.
  void validate() const;
};

/// The text's tokens split as prune_model splits them: the last `holdout` fraction is held out.
struct TextSplit {
  std::vector<int64_t> all, train, heldout;
};
TextSplit split_text(const Tokenizer& tokenizer, const std::string& text_path, double holdout);

/// Prunes `loaded` (its model is modified: adapters attached, groups zeroed) and writes the pruned
/// model with its tokenizer to `options.out_dir`, plus `pruning_report.json` (also returned):
/// settings, data split, parameters and dims before/after per layer, perplexity before/after with
/// its protocol, the removed group ids, LHSPG's counts, times. Nothing appears at `out_dir` unless
/// everything succeeded.
nlohmann::json prune_model(
    LoadedModel& loaded, const std::string& text_path, const PruneOptions& options,
    const TaskContext* ctx = nullptr, const std::function<void(const LhspgMetrics&)>& on_step = {},
    const std::function<void(const RecoveryMetrics&)>& on_recovery_step = {});

}  // namespace lorashear
