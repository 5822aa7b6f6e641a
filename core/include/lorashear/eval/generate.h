#pragma once
// Autoregressive generation with a KV cache: greedy, temperature and top-p sampling.

#include <cstdint>
#include <functional>
#include <vector>

#include "lorashear/model/llama.h"
#include "lorashear/task.h"

namespace lorashear {

struct GenerateOptions {
  int64_t max_new_tokens = 128;
  double temperature = 0.0;  ///< 0 = greedy (argmax)
  double top_p = 1.0;        ///< nucleus sampling threshold in (0, 1]
  uint64_t seed = 0;
  bool stop_at_eos = true;
  /// Ids that end generation; empty = the model's (eos_token_id and eos_token_ids).
  std::vector<int64_t> eos_ids;
};

struct GenerateResult {
  std::vector<int64_t> tokens;  ///< new tokens only
  double prefill_seconds = 0.0;
  double decode_seconds = 0.0;
  double decode_tokens_per_second() const;
};

/// `prompt` must hold at least one token (e.g. BOS). `on_token` sees each new id as it is chosen.
/// Stops at EOS (config().eos_token_id or any of eos_token_ids), at max_new_tokens, or at the
/// model's context length.
GenerateResult generate(LlamaModelImpl& model, const std::vector<int64_t>& prompt,
                        const GenerateOptions& opts,
                        const std::function<void(int64_t)>& on_token = {},
                        const TaskContext* ctx = nullptr);

}  // namespace lorashear
