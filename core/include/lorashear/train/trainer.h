#pragma once
// LoRA fine-tuning (the recovery stages, LORASHEAR.md §4): AdamW on the adapter factors with a
// linear warm-up then cosine decay, gradient clipping, gradient accumulation and, where the
// device supports it, bf16 autocast. One `step` call is one optimiser step.

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace lorashear {

class LlamaModelImpl;

struct TrainOptions {
  int64_t steps = 200;  ///< budget (optimiser steps)
  int64_t batch_size = 8;
  int64_t grad_accum = 1;  ///< micro-batches of batch_size per step
  double lr = 1e-3;
  double min_lr_ratio = 0.1;  ///< the cosine ends at lr · min_lr_ratio
  double warmup = 0.05;       ///< fraction of the steps with a linear warm-up
  double weight_decay = 0.0;
  double grad_clip = 1.0;  ///< max global L2 norm; 0 = off
  /// auto: bf16 autocast on CUDA devices that support it, fp32 elsewhere; fp32; bf16.
  std::string precision = "auto";

  /// Learning rate of step `step` (1-based).
  double lr_at(int64_t step) const;
  /// Throws UsageError naming the option (`prefix` + name, e.g. "--stage1-lr").
  void validate(const std::string& prefix = "--") const;
};

class LoraTrainer {
 public:
  /// Freezes the base weights; AdamW over the model's LoRA factors (attach them first).
  LoraTrainer(LlamaModelImpl& model, TrainOptions options);
  ~LoraTrainer();
  /// One optimiser step: `loss_of(i)` computes micro-batch i's loss (i < grad_accum); returns
  /// their mean. Sets the learning rate of `step` first.
  double step(int64_t step, const std::function<torch::Tensor(int64_t)>& loss_of);
  /// Whether forward passes run under bf16 autocast.
  bool mixed_precision() const { return bf16_; }
  void save(const std::string& path) const;  ///< optimiser state
  void load(const std::string& path);
  const TrainOptions& options() const { return options_; }

 private:
  LlamaModelImpl& model_;
  TrainOptions options_;
  std::vector<torch::Tensor> factors_;
  std::unique_ptr<torch::optim::AdamW> opt_;
  bool bf16_ = false;
};

/// Runs `fn` with bf16 autocast enabled on `device` when `enabled` (thread-local state).
void with_autocast(bool enabled, const torch::Device& device, const std::function<void()>& fn);

}  // namespace lorashear
