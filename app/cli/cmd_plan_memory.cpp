// `lorashear plan-memory MODEL|config.json --batch B --seq-len L [--world-size N]`: the memory a
// pruning (LHSPG) or recovery run needs per rank, item by item, before it starts, and whether it
// fits this machine's available memory.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "cli_common.h"
#include "lorashear/plan/memory_plan.h"

namespace lorashear::cli {
namespace {

struct PlanMemoryArgs {
  std::string model;
  int64_t batch = 1, seq_len = 256, world_size = 0, lora_rank = 8;
  std::vector<std::string> lora_targets = LoraConfig::default_targets();
  std::string stage = "lhspg";
  bool checkpoint_activations = false;
  double ratio = 0.2;
  int64_t periods = 4;
};

// The configuration alone where the path allows (a folder's config.json, a config.json); a
// llama2.c or GGUF file is loaded to read it. `dtype`: the base weights' dtype a run would use.
ModelConfig config_of(const std::string& path, const GlobalOptions& global, torch::Dtype* dtype) {
  namespace fs = std::filesystem;
  std::string config_path = config_only_path(path);
  if (fs::is_directory(path) && fs::exists(fs::path(path) / "config.json"))
    config_path = (fs::path(path) / "config.json").string();
  if (config_path.empty()) {
    ModelArgs args;
    args.model = path;
    auto loaded = load_model_for_cli(args, global, false);
    *dtype = loaded.model->options().dtype;
    return loaded.model->config();
  }
  auto config = ModelConfig::from_file(config_path);
  const auto& choice = global.dtype_choice();
  if (choice != "auto") {
    *dtype = parse_dtype(choice);
  } else {
    *dtype = config_dtype(config, parse_device(global.device));  // config.json's torch_dtype
  }
  return config;
}

int run_plan_memory(const PlanMemoryArgs& a, const GlobalOptions& global) {
  torch::Dtype dtype = torch::kFloat32;
  const auto config = config_of(a.model, global, &dtype);
  const std::string dtype_text = dtype_name(dtype);
  MemoryPlanOptions o;
  o.batch = a.batch;
  o.seq_len = a.seq_len;
  o.world_size = a.world_size;
  if (o.world_size == 0) {
    const char* env = std::getenv("WORLD_SIZE");
    o.world_size = env ? std::atoll(env) : 1;
    if (o.world_size < 1)
      throw UsageError(std::string("WORLD_SIZE=") + env + " is not a positive number");
  }
  o.weight_bytes = dtype == torch::kFloat32 ? 4 : 2;
  o.lora.rank = a.lora_rank;
  o.lora.targets = a.lora_targets;
  o.lhspg = a.stage == "lhspg";
  o.checkpoint_activations = a.checkpoint_activations;
  o.prune_ratio = a.ratio;
  o.periods = a.periods;
  o.mapped_weights = !global.no_mmap;  // as prune and recover load it
  const auto plan = plan_memory(config, o);
  const int64_t available = available_memory_bytes();
  // Ranks launched on this machine share its memory; a cluster gives each its own.
  const bool fits = available < 0 || plan.per_rank_bytes <= available;
  if (global.json) {
    auto j = plan.to_json();
    j["model"] = a.model;
    j["stage"] = a.stage;
    j["batch"] = a.batch;
    j["seq_len"] = a.seq_len;
    j["weight_dtype"] = dtype_text;
    j["checkpoint_activations"] = a.checkpoint_activations;
    j["available_bytes"] = available;
    j["fits_one_rank"] = fits;
    j["fits_all_ranks_here"] = available < 0 || plan.per_rank_bytes * plan.world_size <= available;
    print_json(j);
    return 0;
  }
  std::printf(
      "%s: %s parameters, %s run, batch %lld × %lld tokens over %lld rank(s), weights %s%s\n",
      a.model.c_str(), human_count(plan.parameters).c_str(),
      a.stage == "lhspg" ? "pruning (LHSPG)" : "recovery", static_cast<long long>(a.batch),
      static_cast<long long>(a.seq_len), static_cast<long long>(plan.world_size),
      dtype_text.c_str(), a.checkpoint_activations ? ", activation checkpointing" : "");
  for (const auto& it : plan.items)
    std::printf("  %-34s %12s   %s\n", it.name.c_str(), human_bytes(double(it.bytes)).c_str(),
                it.detail.c_str());
  std::printf(
      "  %-34s %12s   (what is held throughout + the larger of a step's activations "
      "and logits and what exists between steps)\n",
      "per rank", human_bytes(double(plan.per_rank_bytes)).c_str());
  if (plan.world_size > 1)
    std::printf("  %-34s %12s   (each rank holds every weight)\n", "all ranks",
                human_bytes(double(plan.per_rank_bytes * plan.world_size)).c_str());
  if (available >= 0) {
    std::printf("one rank %s: this machine has %s available%s\n", fits ? "fits" : "does NOT fit",
                human_bytes(double(available)).c_str(),
                fits                 ? ""
                : o.weight_bytes > 2 ? " (fewer tokens per step, bf16 weights (--dtype bf16), "
                                       "activation checkpointing or more ranks)"
                                     : " (fewer tokens per step, activation checkpointing or a "
                                       "machine with more memory: ranks each hold every weight)");
    if (plan.world_size > 1)
      std::printf("all %lld ranks on this machine %s (lorashear launch --nproc %lld)\n",
                  static_cast<long long>(plan.world_size),
                  plan.per_rank_bytes * plan.world_size <= available ? "fit" : "do NOT fit",
                  static_cast<long long>(plan.world_size));
  }
  return 0;
}

const Register register_plan_memory([](CLI::App& parent, GlobalOptions& global) {
  auto* cmd = parent.add_subcommand(
      "plan-memory",
      "Memory a pruning or recovery run needs per rank (weights, LoRA + AdamW, activations, "
      "logits), from the configuration alone, and whether it fits this machine");
  auto a = std::make_shared<PlanMemoryArgs>();
  cmd->add_option("model", a->model, "Hugging Face folder, config.json, llama2.c .bin or GGUF")
      ->required();
  cmd->add_option("--batch", a->batch, "Sequences per optimiser step, over all ranks")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--seq-len", a->seq_len, "Tokens per sequence")
      ->check(CLI::Range(int64_t(2), int64_t(1) << 20))
      ->capture_default_str();
  cmd->add_option("--world-size", a->world_size, "Data-parallel ranks (default: $WORLD_SIZE or 1)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--lora-rank", a->lora_rank, "LoRA rank")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--lora-targets", a->lora_targets, "layers that get adapters")->delimiter(',');
  cmd->add_option("--stage", a->stage, "lhspg (pruning) or recovery")
      ->check(CLI::IsMember({"lhspg", "recovery"}))
      ->capture_default_str();
  cmd->add_option("--ratio", a->ratio, "LHSPG: fraction of the parameters pruned")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  cmd->add_option("--periods", a->periods, "LHSPG: pruning periods")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_flag("--checkpoint-activations", a->checkpoint_activations,
                "Plan for activation checkpointing (each layer keeps only its input)");
  return Command{cmd, [a, &global] {
                   global.dtype_default = "auto";  // as prune and recover
                   return run_plan_memory(*a, global);
                 }};
});

}  // namespace
}  // namespace lorashear::cli
