#include "lorashear/train/state.h"

#include "lorashear/errors.h"
#include "lorashear/io/safetensors.h"
#include "lorashear/model/llama.h"

namespace lorashear {

void save_model_state(const LlamaModelImpl& model, const std::string& path) {
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& [name, t] : model.all_parameters())
    tensors.emplace_back(name, t.detach());
  write_safetensors(path, tensors);
}

void load_model_state(LlamaModelImpl& model, const std::string& path) {
  SafetensorsFile file(path);
  torch::NoGradGuard no_grad;
  for (auto& [name, t] : model.all_parameters()) {
    const auto* e = file.find(name);
    if (e == nullptr || e->shape != t.sizes().vec())
      throw InputError(path + ": tensor '" + name + "' is missing or has another shape");
    t.copy_(file.view(*e));
  }
}

}  // namespace lorashear
