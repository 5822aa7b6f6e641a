// `lorashear info MODEL`: configuration, per-layer dimensions, parameters by module, memory.
#include <cstdio>
#include <iostream>

#include "cli_common.h"
#include "lorashear/io/gguf.h"
#include "lorashear/model/lora.h"

namespace lorashear::cli {
namespace {

int64_t dtype_bytes(const std::string& torch_dtype) {
  return torch_dtype == "bfloat16" || torch_dtype == "float16" ? 2 : 4;
}

int run_info(const ModelArgs& args, const GlobalOptions& global) {
  const auto& path = args.model;
  // A config.json (or a folder with no weights) is described from the configuration alone.
  const std::string config_path = config_only_path(path);
  const bool weights = config_path.empty();
  LoadedModel loaded;
  ModelConfig config_only;
  if (weights) {
    loaded = load_model_for_cli(args, global, false);
  } else {
    config_only = ModelConfig::from_file(config_path);
  }
  int64_t adapter_params = 0;
  if (weights)
    for (const auto& t : lora_parameters(*loaded.model))
      adapter_params += t.numel();
  const auto& cfg = weights ? loaded.model->config() : config_only;
  const std::string dtype =
      weights ? dtype_name(loaded.model->options().dtype)
              : (cfg.stored_dtype.empty() ? std::string("float32") : cfg.stored_dtype);
  const int64_t total =
      weights ? loaded.model->num_parameters() - adapter_params : cfg.num_parameters();
  const int64_t weight_bytes = weights ? loaded.model->weight_bytes() : total * dtype_bytes(dtype);
  const auto elem =
      weights ? loaded.model->weight_bytes() / std::max<int64_t>(1, loaded.model->num_parameters())
              : dtype_bytes(dtype);
  const int64_t embed = cfg.vocab_size * cfg.hidden_size;
  const int64_t head = cfg.tie_word_embeddings ? 0 : embed;
  int64_t attn_total = 0, mlp_total = 0, kv_per_token = 0;
  nlohmann::json layers = nlohmann::json::array();
  for (int64_t i = 0; i < cfg.n_layers(); ++i) {
    const auto& d = cfg.layers[i];
    attn_total += cfg.layer_attention_parameters(i);
    mlp_total += cfg.layer_mlp_parameters(i);
    kv_per_token += 2 * d.n_kv_heads * cfg.head_dim * elem;
    layers.push_back({{"layer", i},
                      {"heads", d.n_heads},
                      {"kv_heads", d.n_kv_heads},
                      {"intermediate_size", d.intermediate_size},
                      {"attention_parameters", cfg.layer_attention_parameters(i)},
                      {"mlp_parameters", cfg.layer_mlp_parameters(i)}});
  }
  const int64_t norms = (2 * cfg.n_layers() + 1) * cfg.hidden_size;
  nlohmann::json j = {
      {"path", path},
      {"format", weights ? format_name(loaded.format) : std::string("config")},
      {"weights", weights},
      {"source_dtype", weights ? loaded.source_dtype : cfg.stored_dtype},
      {"config", cfg.to_hf_json(dtype)},
      {"layers", layers},
      {"parameters",
       {{"total", total},
        {"embedding", embed},
        {"attention", attn_total},
        {"mlp", mlp_total},
        {"norms", norms},
        {"lm_head", head}}},
      {"memory",
       {{"weights_bytes", weight_bytes},
        {"kv_cache_bytes_per_token", kv_per_token},
        {"kv_cache_bytes_full_context", kv_per_token * cfg.max_position_embeddings}}},
      {"tokenizer",
       loaded.tokenizer ? nlohmann::json{{"kind", loaded.tokenizer->kind()},
                                         {"vocab_size", loaded.tokenizer->vocab_size()},
                                         {"bos_id", loaded.tokenizer->bos_id()},
                                         {"eos_id", loaded.tokenizer->eos_id()},
                                         {"eos_ids", loaded.tokenizer->eos_ids()},
                                         {"add_bos", loaded.tokenizer->add_bos()},
                                         {"add_eos", loaded.tokenizer->add_eos()},
                                         {"description", loaded.tokenizer->description()}}
                        : nlohmann::json(nullptr)}};
  const auto* lora = weights ? loaded.model->lora() : nullptr;
  nlohmann::json targets = nlohmann::json::array();
  for (const auto& t : load_targets(cfg))
    targets.push_back({{"tool", t.tool}, {"ok", t.ok}, {"detail", t.detail}});
  j["loads_in"] = targets;
  std::vector<std::pair<std::string, std::string>> gguf_meta;
  if (weights && loaded.format == ModelFormat::Gguf) {
    gguf_meta = gguf_metadata(path);
    nlohmann::json m = nlohmann::json::object();
    for (const auto& [k, v] : gguf_meta)
      m[k] = v;
    j["gguf_metadata"] = m;
  }
  j["adapter"] = lora ? nlohmann::json{{"path", loaded.adapter_path},
                                       {"rank", lora->rank},
                                       {"alpha", lora->alpha},
                                       {"targets", lora->targets},
                                       {"parameters", adapter_params}}
                      : nlohmann::json(nullptr);
  if (global.json) {
    print_json(j);
    return 0;
  }
  if (weights)
    std::printf("%s  (%s, stored %s, loaded as %s)\n", path.c_str(),
                format_name(loaded.format).c_str(), loaded.source_dtype.c_str(), dtype.c_str());
  else
    std::printf("%s  (configuration only, no weights; sizes at %s)\n", config_path.c_str(),
                dtype.c_str());
  std::printf("  architecture     %s, %lld layers, hidden %lld, head_dim %lld, vocab %lld\n",
              cfg.model_type.c_str(), (long long)cfg.n_layers(), (long long)cfg.hidden_size,
              (long long)cfg.head_dim, (long long)cfg.vocab_size);
  std::printf(
      "  rope theta       %g, rms eps %g, context %lld, %s head%s\n", cfg.rope_theta,
      cfg.rms_norm_eps, (long long)cfg.max_position_embeddings,
      cfg.tie_word_embeddings ? "tied" : "untied",
      cfg.attention_bias ? (cfg.o_proj_bias() ? ", q/k/v/o biases" : ", q/k/v biases") : "");
  std::string extras;
  if (cfg.qk_norm) extras += ", per-head q/k RMSNorm";
  if (cfg.mlp_bias) extras += ", MLP biases";
  if (cfg.sliding_window > 0) extras += ", sliding window " + std::to_string(cfg.sliding_window);
  std::string eos;
  for (auto id : cfg.eos_token_ids)
    eos += (eos.empty() ? "" : ",") + std::to_string(id);
  std::printf("  rope scaling     %s; bos %lld, eos %s\n",
              describe_rope_scaling(cfg.rope_scaling).c_str(), (long long)cfg.bos_token_id,
              eos.c_str());
  if (weights)
    std::printf("  tokenizer        %s\n", loaded.tokenizer
                                               ? loaded.tokenizer->description().c_str()
                                               : "none found (pass --tokenizer)");
  if (lora) {
    std::string targets;
    for (const auto& t : lora->targets)
      targets += (targets.empty() ? "" : ",") + t;
    std::printf(
        "  adapter          %s: LoRA rank %lld, alpha %g on %s, %s parameters (not in the "
        "totals below)\n",
        loaded.adapter_path.c_str(), (long long)lora->rank, lora->alpha, targets.c_str(),
        human_count(adapter_params).c_str());
  }
  std::printf("\n  layer  heads  kv_heads  intermediate   attn params    mlp params\n");
  for (int64_t i = 0; i < cfg.n_layers(); ++i) {
    const auto& d = cfg.layers[i];
    std::printf("  %5lld  %5lld  %8lld  %12lld  %12s  %12s\n", (long long)i, (long long)d.n_heads,
                (long long)d.n_kv_heads, (long long)d.intermediate_size,
                human_count(cfg.layer_attention_parameters(i)).c_str(),
                human_count(cfg.layer_mlp_parameters(i)).c_str());
  }
  auto share = [&](int64_t n) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%12s  %5.1f%%", human_count(n).c_str(), 100.0 * n / total);
    return std::string(buf);
  };
  std::printf("\n  parameters       %s (%lld)\n", human_count(total).c_str(), (long long)total);
  std::printf("    embedding      %s%s\n", share(embed).c_str(),
              cfg.tie_word_embeddings ? "  (shared with the head)" : "");
  std::printf("    attention      %s\n", share(attn_total).c_str());
  std::printf("    mlp            %s\n", share(mlp_total).c_str());
  std::printf("    norms          %s\n", share(norms).c_str());
  if (head) std::printf("    lm_head        %s\n", share(head).c_str());
  std::printf("  memory           weights %s; KV cache %s per token, %s at full context\n",
              human_bytes(double(weight_bytes)).c_str(), human_bytes(double(kv_per_token)).c_str(),
              human_bytes(double(kv_per_token * cfg.max_position_embeddings)).c_str());
  std::string where;
  for (const auto& t : load_targets(cfg))
    where += (where.empty() ? "" : "; ") + t.text();
  std::printf("  loads in         %s\n", where.c_str());
  if (!gguf_meta.empty()) {
    std::printf("\n  GGUF metadata (%zu keys)\n", gguf_meta.size());
    for (const auto& [k, v] : gguf_meta)
      std::printf("    %-44s %s\n", k.c_str(), v.c_str());
  }
  return 0;
}

const Register register_info([](CLI::App& parent, GlobalOptions& global) {
  auto* app =
      parent.add_subcommand("info", "Show configuration, per-layer dims, parameters, memory");
  auto args = std::make_shared<ModelArgs>();
  add_model_arguments(app, *args);
  return Command{app, [args, &global] { return run_info(*args, global); }};
});

}  // namespace
}  // namespace lorashear::cli
