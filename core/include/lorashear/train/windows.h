#pragma once
// Training batches from a token stream: random windows of seq_len + 1 tokens (inputs and their
// next-token targets). Reproducible per step — batch(step) depends only on the seed and the step —
// so a resumed run sees the same data as an uninterrupted one.

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace lorashear {

class WindowSampler {
 public:
  /// Throws InputError when the stream is shorter than one window (`what` names its source).
  WindowSampler(std::vector<int64_t> tokens, int64_t seq_len, uint64_t seed,
                const std::string& what = "the text");
  /// [batch, seq_len + 1] int64 on the CPU.
  torch::Tensor batch(int64_t step, int64_t batch_size) const;
  int64_t seq_len() const { return seq_len_; }
  int64_t tokens() const { return static_cast<int64_t>(tokens_.size()); }

 private:
  std::vector<int64_t> tokens_;
  int64_t seq_len_;
  uint64_t seed_;
};

/// Causal LM loss (mean cross-entropy of the next-token predictions) of `model` on a batch from
/// WindowSampler::batch.
class LlamaModelImpl;
torch::Tensor lm_loss(LlamaModelImpl& model, const torch::Tensor& windows);

}  // namespace lorashear
