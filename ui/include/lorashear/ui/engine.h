#pragma once
// The engine: one object that runs every core operation (open = load + trace + dependency
// analysis, perplexity, knowledge analysis; later pruning and recovery) on a worker QThread, one
// task at a time. Progress and metrics are written by the worker into buffers that a GUI-thread
// timer drains every 100 ms, so a task emits a handful of signals per second whatever its step
// rate. cancel() works at any moment (the task stops at its next check); an exception ends the
// task with taskFailed and the previous document stays open.

#include <QMap>
#include <QObject>
#include <QString>
#include <QStringList>
#include <QThread>
#include <QTimer>
#include <QVector>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "lorashear/task.h"

namespace lorashear {

struct ModelDocument;

/// One value of a named series (loss, tokens/s, …) at step `x`, pushed by a task.
struct MetricPoint {
  QString series;
  double x = 0, y = 0;
  double wall = 0;  ///< seconds since the task started
};

/// Thread-safe queue of metric points: the worker pushes, the GUI drains in batches.
class MetricsBuffer {
 public:
  void push(const QString& series, double x, double y, double wall);
  QVector<MetricPoint> drain();
  size_t pending() const;

 private:
  mutable std::mutex mutex_;
  QVector<MetricPoint> points_;
};

/// A snapshot of the running task's progress.
struct EngineProgress {
  QString task, stage, message;
  qint64 done = 0, total = 0;
  double elapsed = 0;  ///< seconds since the task started
  double eta = -1;     ///< seconds left in the current stage; < 0 when unknown
};

/// How a model is opened: device ("cpu", "cuda", "cuda:1"), storage dtype ("float32",
/// "bfloat16", "float16") and a LoRA adapter folder (PEFT layout) to attach, if any.
struct OpenOptions {
  QString device = "cpu";
  QString dtype = "float32";
  QString adapter;
};

/// A pruning run from the GUI (the CLI's `prune` options the run panel exposes). The plan comes
/// from the plan editor as the CLI's plan JSON.
struct RunSettings {
  QString text;     ///< training text; its last 10% is held out for perplexity
  QString out_dir;  ///< where the pruned model is written (Hugging Face layout)
  QString method = "lhspg";
  qint64 steps = 200;  ///< split 5% warm-up / 35% periods / 60% recovery
  qint64 periods = 4;
  double lr = 1e-3, epsilon = 0.9, lambda = 1e-2;
  qint64 lora_rank = 8, batch = 8, seq_len = 128;
  QStringList lora_targets;  ///< leaf names (q_proj, …); empty = all seven projections
  qint64 eval_windows = 0;   ///< held-out windows scored (0 = all)
  qint64 checkpoint_every = 50;
  /// Activation checkpointing during the training stages: "on", "off" or "auto" (on when the run
  /// would not fit the available memory without it; `prune --checkpoint-activations`).
  QString checkpoint_activations = "auto";
  bool resume = false;  ///< continue from OUT.checkpoint when it exists
  /// Dynamic knowledge recovery after pruning (LORASHEAR.md §4): stage 1 on `domains` (text files,
  /// folders or JSONL, one category each) sampled adaptively or uniformly, stage 2 on `instruct`
  /// (Alpaca records); `recover_steps` split 70/30 between the stages that have data.
  bool recover = false;
  QStringList domains;
  QString instruct;
  qint64 recover_steps = 200;
  QString sampling = "adaptive";
};

/// One model's figures in a comparison.
struct ModelFigures {
  QString path;
  qint64 parameters = 0;
  double flops_per_token = 0;
  double perplexity = -1;  ///< < 0: no text given
  QString perplexity_protocol;
  double prefill_tokens_per_second = 0, decode_tokens_per_second = 0;  ///< medians
  double ttft_ms = 0;                   ///< time to first token, median
  QMap<QString, double> task_accuracy;  ///< per task: acc_norm where it has one, else acc
  double task_mean = -1;                ///< < 0: no tasks
};

/// What a comparison measures besides parameters and FLOPs (the CLI's `eval ppl`, `eval tasks`
/// and `bench --compare`).
struct CompareSettings {
  QString text;                                  ///< perplexity text (empty: none)
  qint64 windows = 200;                          ///< windows of 128 tokens (0 = all)
  QStringList task_data;                         ///< task files / folders (empty: no tasks)
  QStringList tasks;                             ///< task names (empty: every task in task_data)
  qint64 task_limit = 0;                         ///< items per task (0 = all)
  qint64 prompt = 128, generate = 32, reps = 3;  ///< speed: alternating repetitions
};

/// An experiment: every method at every ratio with the Run dock's settings (`lorashear sweep`).
struct SweepSettings {
  QString out_dir;
  QList<double> ratios;
  QStringList methods;
  QStringList task_data, tasks;
  qint64 task_limit = 0;
  bool bench = true;
};

/// One node group of the dense model against the pruned one (same id in both).
struct GroupDiff {
  QString id, kind;
  qint64 layer = -1;
  qint64 before = 0, after = 0;  ///< variable groups (kv groups, channels)
  std::vector<int64_t> removed;  ///< original indices of the removed variable groups
  bool indices_known = true;     ///< false when the pruned model does not record its indices
};

/// Dense vs pruned: the larger model by parameters is the dense one, whichever is open.
struct Comparison {
  ModelFigures dense, pruned;
  bool open_is_dense = false;
  QString text;  ///< perplexity text (empty: none)
  /// Pruned over dense, per alternating repetition: median and range.
  double prefill_speedup = 0, prefill_speedup_min = 0, prefill_speedup_max = 0;
  double decode_speedup = 0, decode_speedup_min = 0, decode_speedup_max = 0;
  QString speed_protocol, task_protocol;
  QStringList tasks;          ///< in the order evaluated
  QVector<GroupDiff> groups;  ///< every node group with variable groups, in model order
  bool empty() const { return dense.path.isEmpty(); }
};

class Engine : public QObject {
  Q_OBJECT
 public:
  explicit Engine(QObject* parent = nullptr);
  ~Engine() override;

  bool busy() const { return busy_; }
  QString currentTask() const { return task_; }
  /// The open document (null before the first successful open).
  std::shared_ptr<const ModelDocument> document() const { return document_; }
  /// Normalised knowledge deltas per node group id from the last analysis of this document.
  const std::map<std::string, double>& importance() const { return importance_; }

  /// The devices this build can use: "cpu", then "cuda:N" for each visible GPU.
  static QStringList availableDevices();

  /// Each returns false (and does nothing) while another task runs.
  /// A model directory or file the CLI loads, or a config.json (traced without weights). A bad
  /// device, dtype or adapter fails the task with a message naming it.
  bool openModel(const QString& path, const OpenOptions& options = {});
  /// Perplexity of the open model on a text file (windows of 128 tokens; 0 = all).
  bool evaluatePerplexity(const QString& text_path, qint64 max_windows = 0);
  /// Knowledge distribution analysis (LORASHEAR.md §2) of the open model on a text file.
  bool analyzeKnowledge(const QString& text_path, qint64 windows = 64);
  /// Prunes the open model with `plan_json` (the CLI's plan format) and LHSPG or a baseline,
  /// streaming metrics: loss, lr, tokens/s, zeroed, scheduled, and "sparsity:<node group>"; with
  /// recovery, after the pruning steps (x counts on): "recovery" (its loss), lr, tokens/s,
  /// "validation:<category>" and "weight:<category>" at each re-estimate (stage 1), and
  /// "validation:instructions" at each stage 2 evaluation.
  /// On success the pruned model is opened; on failure or cancel the model is reopened from its
  /// file (the run changed it in memory).
  bool runPruning(const RunSettings& settings, const QString& plan_json);
  /// Writes the open model to `dir` in the Hugging Face layout with `dtype` ("float32",
  /// "bfloat16", "float16"); an attached LoRA adapter is merged into the weights, or kept apart in
  /// `dir/adapter` (PEFT layout) when `keep_adapter`. The export is then loaded back and its logits
  /// compared with the open model's; the task fails when they differ beyond the dtype's precision.
  /// The summary reports the measured difference.
  /// `shard_bytes` > 0 splits the weights into shards of at most that size with an index (the
  /// Hugging Face sharded layout). The export is written to a temporary folder beside `dir` and
  /// put in place only once checked: a cancelled or failed export leaves `dir` as it was.
  bool exportModel(const QString& dir, const QString& dtype, bool keep_adapter,
                   qint64 shard_bytes = 0);
  /// Writes the open model to the GGUF file `file` for llama.cpp with `dtype` ("f32", "f16",
  /// "bf16", "q8_0"); an attached adapter is merged into the written weights ("llama" when every
  /// layer has the same size, else "deci"). Like exportModel, the file is written beside `file`,
  /// loaded back and its logits compared before it replaces `file`.
  bool exportGguf(const QString& file, const QString& dtype);
  /// Where the open model loads: "llama.cpp ✓ (deci)", "transformers / vLLM: needs …".
  QStringList documentLoadTargets() const;
  /// Compares the open model with another one (weights required on both): parameters, FLOPs per
  /// token, perplexity on `text_path` (optional; `windows` of 128 tokens, 0 = all) and measured
  /// forward tokens/s, and the node groups' variable groups before / after with the removed
  /// indices. The two must be the same architecture (layers, hidden size, vocabulary).
  bool compareWith(const QString& other_path, const QString& text_path, qint64 windows = 200);
  /// The same with zero-shot tasks and the speed measurement of `lorashear bench --compare`.
  bool compareWith(const QString& other_path, const CompareSettings& settings);
  /// Runs (or resumes) a sweep from the open model with the Run dock's settings and the plan
  /// editor's plan (its ratio replaced by each of the sweep's); sweepChanged after every run.
  bool runSweep(const RunSettings& run, const QString& plan_json, const SweepSettings& sweep);
  /// The last sweep results document (JSON text; empty before any).
  QString sweepResults() const { return sweep_results_; }
  /// The last comparison (cleared when another model is opened).
  const Comparison& comparison() const { return comparison_; }
  /// Whether the open model has a LoRA adapter attached.
  bool documentHasAdapter() const;
  /// Parameters of the open document by the accounting (0 when none).
  qint64 documentParameters() const;
  bool paused() const { return pause_; }

  /// A task is a function run on the worker thread; it returns what to apply on the GUI thread
  /// when it succeeds (may be empty) and a one-line result. It should call ctx.check() often.
  struct Outcome {
    std::function<void()> apply;
    QString summary;
  };
  using Job = std::function<Outcome(const TaskContext& ctx, MetricsBuffer& metrics)>;
  bool submit(const QString& name, Job job);

 public slots:
  /// Asks the running task to stop; taskCancelled follows within one of its steps.
  void cancel();
  /// Holds the running task at its next check (even between two decoder layers) / lets it go on.
  void setPaused(bool paused);

 signals:
  void taskStarted(const QString& task);
  /// At most every 100 ms while a task runs.
  void progressChanged(const lorashear::EngineProgress& progress);
  /// Batches of metric points, at most every 100 ms.
  void metricsReady(const QVector<lorashear::MetricPoint>& points);
  void taskFinished(const QString& task, const QString& summary);
  void taskFailed(const QString& task, const QString& message);
  void taskCancelled(const QString& task);
  /// After taskFinished, taskFailed or taskCancelled: the engine takes new tasks.
  void idle();
  /// A new document was opened.
  void documentChanged();
  /// A knowledge analysis of the open document finished (importance() holds it).
  void importanceChanged();
  /// A comparison finished (comparison() holds it).
  void comparisonChanged();
  /// The sweep's results document changed (JSON text, as OUT/results.json).
  void sweepChanged(const QString& results);

 private:
  void poll();
  void finish(const QString& task, int outcome, const QString& text, std::function<void()> apply);

  QThread thread_;
  QObject* worker_ = nullptr;  // lives in thread_
  QTimer timer_;
  bool busy_ = false;
  QString task_;
  std::atomic<bool> cancel_{false};
  std::atomic<bool> pause_{false};
  std::atomic<bool> document_modified_{false};  // the task changed the document's weights
  OpenOptions open_options_;                    // of the open document, to reopen it
  std::shared_ptr<const ModelDocument> document_;
  std::map<std::string, double> importance_;
  Comparison comparison_;
  QString sweep_results_;
  MetricsBuffer metrics_;

  mutable std::mutex progress_mutex_;
  EngineProgress progress_;
  bool progress_dirty_ = false;
  double stage_started_ = 0;
  double started_ = 0;  // steady clock seconds
};

}  // namespace lorashear

Q_DECLARE_METATYPE(lorashear::EngineProgress)
Q_DECLARE_METATYPE(lorashear::MetricPoint)
