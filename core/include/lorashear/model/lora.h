#pragma once
// LoRA adapters on the model's linear layers (LORASHEAR.md notation): the base weight W stays,
// each target layer gains A [r, in] (Kaiming-uniform) and B [out, r] (zero), and computes
// y = x W^T + b + s · (x A^T) B^T with s = alpha / r. Parameter names follow PEFT inside the model:
// `model.layers.3.self_attn.q_proj.lora_A.weight`.

#include <cstdint>
#include <string>
#include <vector>

namespace lorashear {

class LlamaModelImpl;

struct LoraConfig {
  int64_t rank = 8;
  double alpha = 16.0;
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

}  // namespace lorashear
