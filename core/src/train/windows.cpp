#include "lorashear/train/windows.h"

#include <random>

#include "lorashear/errors.h"
#include "lorashear/model/llama.h"

namespace lorashear {

WindowSampler::WindowSampler(std::vector<int64_t> tokens, int64_t seq_len, uint64_t seed,
                             const std::string& what)
    : tokens_(std::move(tokens)), seq_len_(seq_len), seed_(seed) {
  if (seq_len < 2) throw UsageError("sequence length must be at least 2");
  if (static_cast<int64_t>(tokens_.size()) < seq_len + 1)
    throw InputError(what + " is shorter than one sequence: " + std::to_string(tokens_.size()) +
                     " tokens, need at least " + std::to_string(seq_len + 1) +
                     " (lower --seq-len or give more text)");
}

torch::Tensor WindowSampler::batch(int64_t step, int64_t batch_size) const {
  std::mt19937_64 rng(seed_ * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(step));
  std::uniform_int_distribution<int64_t> pick(0,
                                              static_cast<int64_t>(tokens_.size()) - seq_len_ - 1);
  auto out = torch::empty({batch_size, seq_len_ + 1}, torch::kLong);
  auto* p = out.data_ptr<int64_t>();
  for (int64_t b = 0; b < batch_size; ++b) {
    const int64_t start = pick(rng);
    for (int64_t t = 0; t <= seq_len_; ++t)
      *p++ = tokens_[static_cast<size_t>(start + t)];
  }
  return out;
}

torch::Tensor lm_loss(LlamaModelImpl& model, const torch::Tensor& windows) {
  const int64_t T = windows.size(1) - 1;
  auto w = windows.to(model.options().device);
  auto logits = model.forward(w.narrow(1, 0, T));
  return torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}),
                                              w.narrow(1, 1, T).reshape({-1}));
}

}  // namespace lorashear
