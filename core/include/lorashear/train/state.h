#pragma once
// Training checkpoints: every parameter of a model, LoRA factors included, by name.

#include <string>

namespace lorashear {

class LlamaModelImpl;

/// Writes every parameter (base and LoRA) to a safetensors file.
void save_model_state(const LlamaModelImpl& model, const std::string& path);
/// Copies them back; throws InputError naming the file and tensor when one is missing or has
/// another shape.
void load_model_state(LlamaModelImpl& model, const std::string& path);

}  // namespace lorashear
