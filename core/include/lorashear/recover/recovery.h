#pragma once
// Dynamic knowledge recovery (LORASHEAR.md §4): two LoRA fine-tuning stages on the pruned model.
//   Stage 1 — pretraining-style categories, sampled adaptively: every `reestimate_every` steps
//   each category's validation loss L_c is measured; delta_c = max(0, L_c − L_c(dense)) and a
//   batch draws each sequence from category c with probability w_c ∝ delta_c + floor·mean(delta).
//   The stage ends when the budget is spent or no delta_c improved for `patience` estimates.
//   Stage 2 — instruction data (Alpaca template, loss on the response only), early stopping on
//   the validation loss (the best adapter is kept).
// Each stage trains its own adapter, folded into the weights when the stage ends. Cancel, pause,
// atomic checkpoints and resume work as in the pruning pipeline.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lorashear/data/corpus.h"
#include "lorashear/model/lora.h"
#include "lorashear/task.h"
#include "lorashear/train/trainer.h"

namespace lorashear {

class LlamaModelImpl;
class Tokenizer;

struct RecoveryOptions {
  std::vector<std::string> domains;  ///< files / folders of pretraining-style text (stage 1)
  std::string instruct;              ///< Alpaca JSON / JSONL (stage 2); empty: no stage 2
  CorpusOptions corpus;
  int64_t seq_len = 128;
  int64_t val_sequences = 16;  ///< per category
  LoraConfig lora;
  uint64_t seed = 0;

  TrainOptions stage1;                ///< steps = stage 1 budget (0: skip the stage)
  std::string sampling = "adaptive";  ///< adaptive (needs dense losses) or uniform
  int64_t reestimate_every = 25;      ///< steps between validation estimates
  double floor = 0.05;                ///< of the mean delta
  int64_t stage1_patience =
      4;  ///< estimates without a category improving before stopping; 0: never

  TrainOptions stage2;               ///< steps = stage 2 budget (0: skip)
  double instruct_validation = 0.1;  ///< fraction of the records held out
  /// Instruction sequences are longer than text windows: the Alpaca prompt alone is ~40 words.
  int64_t instruct_seq_len = 256;
  int64_t eval_every = 25;
  int64_t stage2_patience = 4;  ///< evaluations without improvement before stopping

  int64_t checkpoint_every = 0;  ///< steps; 0: none
  std::string checkpoint_dir;
  bool resume = false;

  /// Splits a total budget between the stages that have data: 70% stage 1, 30% stage 2; all of it
  /// to the one stage when only one has data (`domains` / `instruct`).
  void split_budget(int64_t steps);
  /// Throws UsageError naming the option.
  void validate() const;
};

/// What the trainer reports after every step (on the training thread).
struct RecoveryMetrics {
  int stage = 1;
  int64_t step = 0, total_steps = 0;  ///< within the stage, 1-based
  /// Steps of both stages so far, this one included (a resumed run continues the count).
  int64_t run_step = 0;
  double loss = 0, lr = 0, tokens_per_second = 0, seconds_left = 0;
  /// Set on the steps that re-estimate (stage 1) or evaluate (stage 2), else empty / < 0.
  std::map<std::string, double> category_loss, weights;
  double validation_loss = -1;
  /// Categories each sequence of this step's batch came from (stage 1).
  std::map<std::string, int64_t> drawn;
};

/// The categories' data, open: one CategoryStream each, in the order of `options.domains`.
class RecoveryData {
 public:
  RecoveryData(const RecoveryOptions& options, std::shared_ptr<const Tokenizer> tokenizer,
               const std::vector<int64_t>& start_at = {});
  std::vector<std::unique_ptr<CategoryStream>>& streams() { return streams_; }
  std::vector<std::string> names() const;
  /// Mean validation loss of `model` per category.
  std::map<std::string, double> losses(LlamaModelImpl& model, int64_t batch_size,
                                       const TaskContext* ctx = nullptr);

 private:
  std::vector<std::unique_ptr<CategoryStream>> streams_;
};

/// Sampling weights w_c ∝ max(0, L_c − dense_c) + floor · mean(delta); uniform when every delta
/// is zero or `dense` is empty.
std::map<std::string, double> sampling_weights(const std::map<std::string, double>& losses,
                                               const std::map<std::string, double>& dense,
                                               double floor);

/// Runs both stages on `model` (its adapters are replaced; on return each stage's adapter is
/// folded in). `dense_losses`: each category's validation loss of the dense model (from
/// RecoveryData::losses before pruning); required for adaptive sampling. Returns the report:
/// settings, per-category losses / weights / deltas over time, stage 2 validation curve, loader
/// stalls, times.
nlohmann::json recover_model(LlamaModelImpl& model, std::shared_ptr<const Tokenizer> tokenizer,
                             const RecoveryOptions& options,
                             const std::map<std::string, double>& dense_losses,
                             const TaskContext* ctx = nullptr,
                             const std::function<void(const RecoveryMetrics&)>& on_step = {});

}  // namespace lorashear
