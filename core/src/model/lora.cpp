#include "lorashear/model/lora.h"

#include <algorithm>
#include <cmath>
#include <set>

#include <nlohmann/json.hpp>

#include <filesystem>

#include "lorashear/errors.h"
#include "lorashear/io/files.h"
#include "lorashear/io/json.h"
#include "lorashear/io/safetensors.h"
#include "lorashear/model/llama.h"

namespace lorashear {

void LoraConfig::validate() const {
  if (rank < 1) throw UsageError("LoRA rank must be at least 1, found " + std::to_string(rank));
  if (!(alpha > 0)) throw UsageError("LoRA alpha must be positive, found " + std::to_string(alpha));
  if (!(dropout >= 0 && dropout < 1))
    throw UsageError("LoRA dropout must be in [0, 1), found " + std::to_string(dropout));
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
  // The factors and so their gradients and AdamW state are fp32 whatever the base weights' dtype:
  // bf16 / fp16 master weights would lose the small updates LoRA makes.
  const ModelOptions factor_options{model.options().device, torch::kFloat32};
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    auto* lin = dynamic_cast<LinearImpl*>(item.value().get());
    if (lin == nullptr || lin->kind != "linear") continue;
    const auto& path = item.key();
    const auto leaf = path.substr(path.rfind('.') + 1);
    if (std::find(config.targets.begin(), config.targets.end(), leaf) == config.targets.end())
      continue;
    const int64_t in = lin->weight.size(1), out = lin->weight.size(0);
    auto a = std::make_shared<LinearImpl>(in, config.rank, false, factor_options);
    auto b = std::make_shared<LinearImpl>(config.rank, out, false, factor_options);
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
    lin->lora_dropout = config.dropout;
    lin->lora_merged = false;
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

namespace {

// Every adapted linear layer with its path.
std::vector<std::pair<std::string, LinearImpl*>> adapted(LlamaModelImpl& model) {
  std::vector<std::pair<std::string, LinearImpl*>> out;
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    auto* lin = dynamic_cast<LinearImpl*>(item.value().get());
    if (lin != nullptr && lin->lora_A) out.emplace_back(item.key(), lin);
  }
  return out;
}

const char* kPeftPrefix = "base_model.model.";

}  // namespace

void merge_lora(LlamaModelImpl& model) {
  torch::NoGradGuard no_grad;
  for (auto& [path, lin] : adapted(model)) {
    if (lin->lora_merged) continue;
    lin->weight.add_(
        torch::matmul(lin->lora_B->weight, lin->lora_A->weight).to(lin->weight.scalar_type()),
        lin->lora_scaling);
    lin->lora_merged = true;
  }
}

void unmerge_lora(LlamaModelImpl& model) {
  torch::NoGradGuard no_grad;
  for (auto& [path, lin] : adapted(model)) {
    if (!lin->lora_merged) continue;
    lin->weight.sub_(
        torch::matmul(lin->lora_B->weight, lin->lora_A->weight).to(lin->weight.scalar_type()),
        lin->lora_scaling);
    lin->lora_merged = false;
  }
}

void fold_lora(LlamaModelImpl& model) {
  merge_lora(model);
  detach_lora(model);
}

std::vector<torch::Tensor> lora_parameters(LlamaModelImpl& model) {
  std::vector<torch::Tensor> out;
  for (auto& [path, lin] : adapted(model)) {
    out.push_back(lin->lora_A->weight);
    out.push_back(lin->lora_B->weight);
  }
  return out;
}

void freeze_base_weights(LlamaModelImpl& model) {
  for (auto& p : model.named_parameters(true)) {
    const bool lora = p.key().find(".lora_A.") != std::string::npos ||
                      p.key().find(".lora_B.") != std::string::npos;
    p.value().set_requires_grad(lora);
  }
}

void save_lora_adapter(const LlamaModelImpl& model, const std::string& dir) {
  const auto* cfg = model.lora();
  if (cfg == nullptr) throw UsageError("the model has no LoRA adapter to save");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw Error(dir + ": cannot create the directory: " + ec.message());
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& [name, t] : model.all_parameters())
    if (name.find(".lora_A.") != std::string::npos || name.find(".lora_B.") != std::string::npos)
      tensors.emplace_back(kPeftPrefix + name, t.detach());
  write_safetensors(dir + "/adapter_model.safetensors", tensors, {{"format", "pt"}});
  nlohmann::json j = {{"peft_type", "LORA"},
                      {"task_type", "CAUSAL_LM"},
                      {"r", cfg->rank},
                      {"lora_alpha", cfg->alpha},
                      {"lora_dropout", cfg->dropout},
                      {"target_modules", cfg->targets},
                      {"bias", "none"},
                      {"fan_in_fan_out", false},
                      {"inference_mode", true},
                      {"base_model_name_or_path", nullptr}};
  io::write_file_atomic(dir + "/adapter_config.json", j.dump(2) + "\n");
}

void load_lora_adapter(LlamaModelImpl& model, const std::string& dir) {
  const std::string cfg_path = dir + "/adapter_config.json";
  const auto j = io::read_json_file(cfg_path);
  auto field = [&](const char* key) -> const nlohmann::json& {
    if (!j.contains(key)) throw InputError(cfg_path + ": field '" + key + "': missing");
    return j.at(key);
  };
  LoraConfig cfg;
  try {
    if (j.value("peft_type", std::string("LORA")) != "LORA")
      throw InputError(cfg_path + ": field 'peft_type': only LORA adapters are supported");
    // get<int64_t>() of a float outside int64's range is undefined behaviour: integers only.
    if (!field("r").is_number_integer())
      throw InputError(cfg_path + ": field 'r': expected an integer, found " + field("r").dump());
    cfg.rank = field("r").get<int64_t>();
    cfg.alpha = field("lora_alpha").get<double>();
    cfg.dropout = j.value("lora_dropout", 0.0);
    cfg.targets = field("target_modules").get<std::vector<std::string>>();
  } catch (const nlohmann::json::exception& e) {
    throw InputError(cfg_path + ": " + e.what());
  }
  try {
    cfg.validate();
  } catch (const UsageError& e) {
    throw InputError(cfg_path + ": " + e.what());
  }
  const std::string st_path = dir + "/adapter_model.safetensors";
  SafetensorsFile file(st_path);
  // Check every tensor before touching the model.
  LlamaModel probe(model.config(), ModelOptions{torch::Device(torch::kMeta), torch::kFloat32});
  attach_lora(*probe, cfg);
  const auto expected = probe->all_parameters();
  std::map<std::string, const SafetensorsEntry*> found;
  for (const auto& e : file.entries()) {
    const std::string name = e.name.rfind(kPeftPrefix, 0) == 0 ? e.name.substr(17) : e.name;
    const auto it = expected.find(name);
    if (it == expected.end() ||
        (name.find(".lora_A.") == std::string::npos && name.find(".lora_B.") == std::string::npos))
      throw InputError(st_path + ": tensor '" + e.name + "' is not an adapter of this model");
    if (it->second.sizes().vec() != e.shape)
      throw InputError(st_path + ": tensor '" + e.name + "' has the wrong shape for this model");
    found[name] = &e;
  }
  for (const auto& [name, t] : expected)
    if ((name.find(".lora_A.") != std::string::npos ||
         name.find(".lora_B.") != std::string::npos) &&
        !found.count(name))
      throw InputError(st_path + ": tensor '" + std::string(kPeftPrefix) + name + "' is missing");
  attach_lora(model, cfg);
  torch::NoGradGuard no_grad;
  for (auto& [name, t] : model.all_parameters())
    if (auto it = found.find(name); it != found.end()) t.copy_(file.view(*it->second));
}

}  // namespace lorashear
