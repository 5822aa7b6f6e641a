#pragma once
// Perplexity with the "windows-L" protocol (LORASHEAR.md §6): tokenise the whole text (no BOS/EOS),
// cut non-overlapping windows of L tokens, drop the last partial one, score the L-1 next-token
// predictions of each window, PPL = exp(mean NLL).

#include <cstdint>
#include <string>
#include <vector>

#include "lorashear/model/llama.h"
#include "lorashear/task.h"

namespace lorashear {
namespace dist {
class Distributed;
}

struct PerplexityOptions {
  int64_t seq_len = 128;    ///< L; the preset "windows-128" of the LLM-Pruner/LoRAShear tables
  int64_t max_windows = 0;  ///< 0 = all full windows
  int64_t batch = 8;        ///< windows per forward pass
  /// Data parallel: the batches of windows are dealt round-robin over these ranks and the NLL
  /// sums combined, so every rank returns the one-process result (the same sums, added in the
  /// same order). Every rank must call. nullptr: this process alone.
  dist::Distributed* ranks = nullptr;
};

struct PerplexityResult {
  double ppl = 0.0;
  double mean_nll = 0.0;
  int64_t windows = 0;
  int64_t predictions = 0;  ///< windows * (L - 1)
  int64_t text_tokens = 0;  ///< tokens in the whole text
  double seconds = 0.0;
  double tokens_per_second = 0.0;  ///< windows * L / seconds
  std::string protocol() const;    ///< e.g. "windows-512, 200 windows, 102200 predictions"
};

/// Scores pre-tokenised text. Throws UsageError when the text has no full window.
PerplexityResult perplexity(LlamaModelImpl& model, const std::vector<int64_t>& tokens,
                            const PerplexityOptions& opts, const TaskContext* ctx = nullptr);

}  // namespace lorashear
