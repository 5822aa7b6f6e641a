#pragma once
// Method × ratio sweeps (`lorashear sweep`, the app's Experiments tab): every (method, ratio)
// pruned from the same dense model with the same budget and settings, each result evaluated
// (held-out perplexity, zero-shot tasks, speed against the dense model), the dense evaluation done
// once. Each finished run is saved at once (OUT/runs/ID/result.json beside its model), so a killed
// or cancelled sweep resumes where it stopped; OUT/results.json, results.csv and results.md (the
// papers' table: rows method × ratio, columns tasks + mean + ppl + speed-up) are rewritten after
// every run.

#include <nlohmann/json.hpp>

#include <functional>
#include <string>
#include <vector>

#include "lorashear/eval/speed.h"
#include "lorashear/eval/tasks.h"
#include "lorashear/prune/pipeline.h"

namespace lorashear {

struct SweepOptions {
  std::string model;      ///< the dense model's path
  std::string tokenizer;  ///< explicit tokenizer file; empty = beside the model
  std::string text;       ///< pruning text; its held-out end gives the perplexity
  std::vector<double> ratios;
  std::vector<std::string> methods;  ///< lhspg, magnitude, taylor, loraprune, random
  /// The settings every run shares (steps, LoRA, seq_len, recovery, …); the plan's target ratio,
  /// the method and the output folder are set per run.
  PruneOptions prune;
  std::vector<std::string> tasks;      ///< task names; empty with task_data = every task there
  std::vector<std::string> task_data;  ///< directories / files; empty = no task evaluation
  TaskEvalOptions task_options;
  bool bench = true;  ///< measure each pruned model's speed against the dense one
  SpeedOptions speed{128, 32, 1, 1, 3, 0};
  ModelOptions model_options;          ///< device and dtype the models are loaded with
  bool keep_checkpoint_dtype = false;  ///< LoadOptions::keep_checkpoint_dtype (--dtype auto)
  bool map_weights = false;            ///< LoadOptions::map_weights
  std::string out_dir;

  /// Throws UsageError naming what is wrong (no ratios, a ratio outside (0, 1), an unknown
  /// method, no text, no output folder, …).
  void validate() const;
  /// Everything that decides the results; a sweep resumes only with the same.
  nlohmann::json to_json() const;
  /// The run ids in order: METHOD-RATIO (e.g. "lhspg-0.20").
  std::vector<std::string> run_ids() const;
};

/// Runs (or resumes) the sweep. `on_update` sees the results document after the dense evaluation
/// and after every run (finished, failed or skipped because it was already on disk). A run that
/// fails (an impossible ratio for this model, say) is recorded with its error and the others go
/// on. Throws CancelledError after writing what finished; UsageError when OUT holds a sweep with
/// other settings.
nlohmann::json run_sweep(const SweepOptions& options, const TaskContext* ctx = nullptr,
                         const std::function<void(const nlohmann::json&)>& on_update = {});

/// The papers' table in Markdown (rows method × ratio, columns tasks + mean + ppl + speed-up).
std::string sweep_markdown(const nlohmann::json& results);
/// One row per run (and the dense model), every figure in its own column.
std::string sweep_csv(const nlohmann::json& results);
/// Ids of the runs not finished in `results`.
std::vector<std::string> sweep_missing(const nlohmann::json& results);

}  // namespace lorashear
