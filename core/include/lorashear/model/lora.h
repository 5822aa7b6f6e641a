#pragma once
// LoRA adapters on the model's linear layers (LORASHEAR.md notation): the base weight W stays,
// each target layer gains A [r, in] (Kaiming-uniform) and B [out, r] (zero), and computes
// y = x W^T + b + s · (x A^T) B^T with s = alpha / r. Parameter names follow PEFT inside the model:
// `model.layers.3.self_attn.q_proj.lora_A.weight`. A and B are fp32 whatever the base weights'
// dtype (bf16 / fp16 bases stay frozen in their dtype; the adapter is computed in theirs).

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace lorashear {

class LlamaModelImpl;

struct LoraConfig {
  int64_t rank = 8;
  double alpha = 16.0;
  double dropout = 0.0;  ///< on the adapter input while training
  /// Leaf names of the linear layers that get an adapter.
  std::vector<std::string> targets = default_targets();
  uint64_t seed = 0;  ///< for A's initialisation

  double scaling() const { return alpha / static_cast<double>(rank); }
  static std::vector<std::string> default_targets() {
    return {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  }
  /// Throws UsageError naming the field: rank < 1, alpha <= 0, unknown or repeated targets.
  void validate() const;
};

/// Adds adapters to every target layer (replacing adapters already attached). Base weights are
/// untouched, so the model's outputs do not change (B = 0).
void attach_lora(LlamaModelImpl& model, const LoraConfig& config);
/// Removes every adapter without merging it.
void detach_lora(LlamaModelImpl& model);

/// W += s·B·A in every adapted layer; the adapters stay attached but are skipped until unmerged,
/// so the outputs do not change. Idempotent.
void merge_lora(LlamaModelImpl& model);
/// Reverses merge_lora (W -= s·B·A).
void unmerge_lora(LlamaModelImpl& model);
/// Merges and detaches: the result is a plain model with the adapters' effect in its weights.
void fold_lora(LlamaModelImpl& model);

/// The adapters' factors (A then B, layer by layer), e.g. for an optimiser.
std::vector<torch::Tensor> lora_parameters(LlamaModelImpl& model);
/// Freezes every base parameter and makes the LoRA factors trainable.
void freeze_base_weights(LlamaModelImpl& model);

/// PEFT layout: DIR/adapter_config.json and DIR/adapter_model.safetensors with tensor names like
/// `base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight`. Written atomically.
void save_lora_adapter(const LlamaModelImpl& model, const std::string& dir);
/// Attaches the adapter saved in DIR (PEFT layout). Throws InputError naming the file and the
/// field or tensor when it does not fit the model; the model is unchanged then.
void load_lora_adapter(LlamaModelImpl& model, const std::string& dir);

}  // namespace lorashear
