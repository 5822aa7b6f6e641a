#pragma once
// Zero-shot task accuracy as the papers report it (LoRAShear, LLM-Pruner, SliceGPT tables): the
// `loglikelihood` protocol of lm-evaluation-harness, spelled out in task_protocol() and README.md.
//
// Each item becomes requests (context c, continuation x = " " + choice; trailing whitespace of c
// moves to the front of x). Tokens: whole = enc(c + x), ctx = enc(c), cont = whole[len(ctx):]; the
// model reads [BOS] + ctx + cont (BOS when the tokenizer's policy adds one), cut from the left to
// the context length + 1. ll = Σ log p(cont_i | before), greedy = every cont token is the argmax.
// acc: argmax ll is gold; acc_norm: argmax ll / characters of the choice is gold.
//
// Requests that share their context tokens run the context once; the continuations are scored
// from its KV cache, and contexts of equal length are batched across items.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "lorashear/model/llama.h"
#include "lorashear/task.h"
#include "lorashear/tokenizer/tokenizer.h"

namespace lorashear {
namespace dist {
class Distributed;
}

enum class TaskFormat {
  MultipleChoice,  ///< {"query", "choices", "gold"} JSONL (ARC, BoolQ, PIQA, OpenBookQA, COPA)
  Partial,         ///< {"context_options", "continuation", "gold"} (WinoGrande partial scoring)
  Lambada,         ///< {"context", "continuation"}: acc = greedy continuation, perplexity
  HellaswagText,   ///< llama.cpp's text file: context, gold index, 4 endings (6 lines per item)
};
std::string task_format_name(TaskFormat f);  ///< "multiple_choice", "partial", …

/// One item: its requests (context, continuation text without the delimiter) and the gold one.
/// MultipleChoice / HellaswagText: one request per choice, same context. Partial: one per
/// context option, same continuation. Lambada: one request, gold 0.
struct TaskItem {
  std::vector<std::string> contexts;
  std::vector<std::string> continuations;
  int64_t gold = 0;
  int64_t line = 0;  ///< 1-based line of the item in its file
};

struct TaskData {
  std::string name;  ///< canonical task name, or the file's stem for other files
  std::string path;
  TaskFormat format = TaskFormat::MultipleChoice;
  std::string template_note;  ///< how the context was formed, e.g. query + "\nAnswer:"
  bool headline_acc = false;  ///< the papers' figure is acc even with acc_norm (BoolQ)
  std::vector<TaskItem> items;
};

/// The tasks this build knows templates for: arc_easy, arc_challenge, boolq, piqa, hellaswag,
/// winogrande, openbookqa, copa, lambada.
const std::vector<std::string>& known_tasks();
/// Canonical name for a known task or one of its file stems (openbook_qa → openbookqa,
/// hellaswag_val_full → hellaswag, lambada_openai → lambada); empty when unknown.
std::string canonical_task_name(const std::string& name);
/// The file of task `name` in `dir` (NAME.jsonl, its aliases, NAME.txt). Throws InputError naming
/// the names looked for when none exists.
std::string find_task_file(const std::string& name, const std::string& dir);

/// A task to run: its name (canonical, or the file's stem) and file.
struct TaskFile {
  std::string name, path;
};
/// The tasks to evaluate. `data` holds directories and task files; `names` picks tasks by name
/// (empty = every file named in `data` plus every known task with a file in its directories).
/// A name matches a named file by its stem, else is looked up in the directories. Throws
/// UsageError for an unknown name (listing the known ones) or empty `data`, InputError for a path
/// that does not exist or a task without a file.
std::vector<TaskFile> resolve_task_files(const std::vector<std::string>& names,
                                         const std::vector<std::string>& data);

/// Reads a task file, detecting its format; `name` chooses the context template (unknown names:
/// the text as it is). Throws InputError naming the file and line for anything unreadable: an
/// unknown format, a missing or mistyped field, a gold index out of range.
TaskData load_task(const std::string& name, const std::string& path);

struct TaskEvalOptions {
  int64_t limit = 0;   ///< score only the first N items (0 = all)
  int64_t batch = 64;  ///< sequences per forward pass
  /// Data parallel: the batches of requests (contexts of one length, as one process forms them)
  /// are dealt round-robin over these ranks and every request's log-likelihood is combined, so
  /// every rank returns the one-process result (the same passes; equal bit for bit where the
  /// BLAS does not change its summation order with the thread count). Every rank must call.
  /// nullptr: this process alone.
  dist::Distributed* ranks = nullptr;
};

struct TaskResult {
  std::string name, path;
  TaskFormat format = TaskFormat::MultipleChoice;
  std::string template_note;
  int64_t items = 0;
  int64_t requests = 0;
  int64_t truncated = 0;  ///< requests cut from the left to fit the context
  int64_t correct = 0;
  int64_t correct_norm = -1;  ///< -1 when the format has no acc_norm
  double acc = 0.0, acc_stderr = 0.0;
  double acc_norm = 0.0, acc_norm_stderr = 0.0;
  double ppl = 0.0;  ///< Lambada: exp(-mean item ll); 0 otherwise
  double seconds = 0.0;
  std::vector<int64_t> predictions;      ///< argmax ll per item (Lambada: 1 = greedy match)
  std::vector<std::vector<double>> lls;  ///< ll of each request, per item
  bool has_norm() const { return correct_norm >= 0; }
  bool headline_acc = false;
  /// The figure a paper table shows: acc_norm where lm-eval-harness reports it (multiple choice
  /// and HellaSwag, not BoolQ), else acc.
  double headline() const { return has_norm() && !headline_acc ? acc_norm : acc; }
  double items_per_second() const { return seconds > 0 ? items / seconds : 0.0; }
};

/// One line describing the scoring protocol, printed with every result.
std::string task_protocol(const LlamaModelImpl& model, const Tokenizer& tokenizer);

/// Scores `task`. Throws UsageError for bad options, InputError when the tokenizer's ids fall
/// outside the model's vocabulary or a request has no token to condition on, CancelledError.
TaskResult evaluate_task(LlamaModelImpl& model, const Tokenizer& tokenizer, const TaskData& task,
                         const TaskEvalOptions& options, const TaskContext* ctx = nullptr);

/// {"task", "file", "format", "items", "acc", "acc_stderr", "acc_norm", … } (null where absent);
/// `per_item` adds predictions and lls.
nlohmann::json to_json(const TaskResult& r, bool per_item = false);

/// Reads every task file (load_task): a broken one fails before any scoring.
std::vector<TaskData> load_tasks(const std::vector<TaskFile>& files);

/// Scores each task in turn; `on_result` sees each result as it is finished (so a cancel keeps
/// the finished ones). Progress: stage = task name.
std::vector<TaskResult> evaluate_tasks(
    LlamaModelImpl& model, const Tokenizer& tokenizer, const std::vector<TaskData>& tasks,
    const TaskEvalOptions& options, const TaskContext* ctx = nullptr,
    const std::function<void(const TaskResult&)>& on_result = {});

/// Mean over tasks of acc, and of headline().
struct TaskMeans {
  double acc = 0.0, headline = 0.0;
};
TaskMeans task_means(const std::vector<TaskResult>& results);

}  // namespace lorashear
