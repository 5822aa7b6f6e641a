#pragma once
// The demo model: a small LLaMA (with grouped-query attention) and its SentencePiece tokenizer,
// trained from scratch on a text file, so the app has a model to show without downloads.

#include <cstdint>
#include <functional>
#include <string>

#include "lorashear/task.h"

namespace lorashear {

/// Every knob of the demo recipe. The defaults make a ~0.45M-parameter model (1.8 MB fp32) that
/// trains in about ten minutes on two CPU cores.
struct DemoOptions {
  // Tokenizer: SentencePiece BPE with byte fallback, unk 0 / bos 1 / eos 2.
  int64_t vocab_size = 512;
  // Model.
  int64_t hidden_size = 96;
  int64_t n_layers = 4;
  int64_t n_heads = 4;
  int64_t n_kv_heads = 2;
  int64_t head_dim = 24;
  int64_t intermediate_size = 256;
  int64_t max_position_embeddings = 256;
  bool tie_word_embeddings = true;
  // Training: AdamW on random windows of the tokenised text, cosine schedule after a linear warmup.
  int64_t steps = 2000;
  int64_t batch_size = 16;
  int64_t seq_len = 128;      ///< ≤ max_position_embeddings
  double lr = 3e-3;           ///< peak learning rate
  double min_lr_ratio = 0.1;  ///< final lr = lr * min_lr_ratio
  int64_t warmup_steps = 100;
  double weight_decay = 0.1;  ///< on matrices only, not on norms
  double grad_clip = 1.0;     ///< max global L2 norm of the gradient; 0 = off
  double holdout = 0.05;      ///< fraction of stories (at the end) kept out to measure eval_loss
  uint64_t seed = 1337;
  bool overwrite = false;  ///< replace an existing output directory (only once training succeeded)
};

/// One optimiser step, as reported to the callback (called on the training thread).
struct DemoStep {
  int64_t step = 0;   ///< 1-based
  int64_t steps = 0;  ///< total
  double loss = 0;    ///< cross-entropy of this batch, nats/token
  double lr = 0;
  double seconds = 0;  ///< since training started
};

struct DemoResult {
  int64_t parameters = 0;
  int64_t train_tokens = 0;  ///< tokens in the training part of the text
  double initial_loss = 0;   ///< loss of the first step
  double final_loss = 0;     ///< mean training loss of the last 50 steps
  double eval_loss = 0;      ///< mean loss on held-out windows (NaN when the holdout is too small)
  double tokenizer_seconds = 0;
  double train_seconds = 0;
};

/// Trains the tokenizer and the model on `text_file` and writes the Hugging Face layout to
/// `out_dir` (built in a temporary sibling directory, then renamed: a cancel or an error leaves
/// nothing behind). Deterministic for a given seed and thread count. Throws InputError for an
/// unreadable or too short text, UsageError for bad options or an existing `out_dir` without
/// `overwrite`, CancelledError when `ctx`'s flag is raised. Uses LibTorch's current thread count.
DemoResult make_demo_model(const std::string& text_file, const std::string& out_dir,
                           const DemoOptions& opts = {}, const TaskContext* ctx = nullptr,
                           const std::function<void(const DemoStep&)>& on_step = {});

}  // namespace lorashear
