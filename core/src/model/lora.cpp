#include "lorashear/model/lora.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "lorashear/errors.h"
#include "lorashear/model/llama.h"

namespace lorashear {

void LoraConfig::validate() const {
  if (rank < 1) throw UsageError("LoRA rank must be at least 1, found " + std::to_string(rank));
  if (!(alpha > 0)) throw UsageError("LoRA alpha must be positive, found " + std::to_string(alpha));
  if (targets.empty()) throw UsageError("LoRA targets: name at least one layer");
  const auto known = default_targets();
  std::set<std::string> seen;
  for (const auto& t : targets) {
    if (std::find(known.begin(), known.end(), t) == known.end())
      throw UsageError("LoRA target '" + t +
                       "' is not a layer of the model; expected some of q_proj, k_proj, v_proj, "
                       "o_proj, gate_proj, up_proj, down_proj");
    if (!seen.insert(t).second) throw UsageError("LoRA target '" + t + "' is listed twice");
  }
}

void attach_lora(LlamaModelImpl& model, const LoraConfig& config) {
  config.validate();
  detach_lora(model);
  torch::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(config.seed);
  const bool meta = model.options().device.is_meta();
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    auto* lin = dynamic_cast<LinearImpl*>(item.value().get());
    if (lin == nullptr || lin->kind != "linear") continue;
    const auto& path = item.key();
    const auto leaf = path.substr(path.rfind('.') + 1);
    if (std::find(config.targets.begin(), config.targets.end(), leaf) == config.targets.end())
      continue;
    const int64_t in = lin->weight.size(1), out = lin->weight.size(0);
    auto a = std::make_shared<LinearImpl>(in, config.rank, false, model.options());
    auto b = std::make_shared<LinearImpl>(config.rank, out, false, model.options());
    a->kind = "lora_A";
    b->kind = "lora_B";
    if (!meta) {
      // Kaiming-uniform with a = sqrt(5), as PEFT and torch.nn.Linear: bound = 1 / sqrt(fan_in).
      const double bound = in > 0 ? 1.0 / std::sqrt(static_cast<double>(in)) : 0.0;
      a->weight.copy_(torch::empty({config.rank, in}).uniform_(-bound, bound, gen));
      b->weight.zero_();
    }
    lin->lora_A = lin->register_module("lora_A", a);
    lin->lora_B = lin->register_module("lora_B", b);
    lin->lora_scaling = config.scaling();
  }
  model.lora_.assign(1, config);
  model.assign_paths();
}

void detach_lora(LlamaModelImpl& model) {
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    auto* lin = dynamic_cast<LinearImpl*>(item.value().get());
    if (lin == nullptr || !lin->lora_A) continue;
    lin->unregister_module("lora_A");
    lin->unregister_module("lora_B");
    lin->lora_A.reset();
    lin->lora_B.reset();
    lin->lora_scaling = 0.0;
  }
  model.lora_.clear();
}

}  // namespace lorashear
