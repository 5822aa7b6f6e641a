// `lorashear info MODEL`: configuration, per-layer dimensions, parameters by module, memory.
#include <cstdio>
#include <iostream>

#include "cli_common.h"
#include "lorashear/io/gguf.h"
#include "lorashear/model/lora.h"

namespace lorashear::cli {
namespace {

int run_info(const ModelArgs& args, const GlobalOptions& global) {
  const auto& path = args.model;
  auto loaded = load_model_for_cli(args, global, false);
  int64_t adapter_params = 0;
  for (const auto& t : lora_parameters(*loaded.model))
    adapter_params += t.numel();
  const auto& cfg = loaded.model->config();
  const auto elem =
      loaded.model->weight_bytes() / std::max<int64_t>(1, loaded.model->num_parameters());
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
  const int64_t total = loaded.model->num_parameters() - adapter_params;
  nlohmann::json j = {
      {"path", path},
      {"format", format_name(loaded.format)},
      {"source_dtype", loaded.source_dtype},
      {"config", cfg.to_hf_json(dtype_name(loaded.model->options().dtype))},
      {"layers", layers},
      {"parameters",
       {{"total", total},
        {"embedding", embed},
        {"attention", attn_total},
        {"mlp", mlp_total},
        {"norms", norms},
        {"lm_head", head}}},
      {"memory",
       {{"weights_bytes", loaded.model->weight_bytes()},
        {"kv_cache_bytes_per_token", kv_per_token},
        {"kv_cache_bytes_full_context", kv_per_token * cfg.max_position_embeddings}}},
      {"tokenizer", loaded.tokenizer
                        ? nlohmann::json{{"vocab_size", loaded.tokenizer->vocab_size()},
                                         {"bos_id", loaded.tokenizer->bos_id()},
                                         {"eos_id", loaded.tokenizer->eos_id()}}
                        : nlohmann::json(nullptr)}};
  const auto* lora = loaded.model->lora();
  nlohmann::json targets = nlohmann::json::array();
  for (const auto& t : load_targets(cfg))
    targets.push_back({{"tool", t.tool}, {"ok", t.ok}, {"detail", t.detail}});
  j["loads_in"] = targets;
  std::vector<std::pair<std::string, std::string>> gguf_meta;
  if (loaded.format == ModelFormat::Gguf) {
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
  std::printf("%s  (%s, stored %s, loaded as %s)\n", path.c_str(),
              format_name(loaded.format).c_str(), loaded.source_dtype.c_str(),
              dtype_name(loaded.model->options().dtype).c_str());
  std::printf("  architecture     %s, %lld layers, hidden %lld, head_dim %lld, vocab %lld\n",
              cfg.model_type.c_str(), (long long)cfg.n_layers(), (long long)cfg.hidden_size,
              (long long)cfg.head_dim, (long long)cfg.vocab_size);
  std::printf("  rope theta       %g, rms eps %g, context %lld, %s head%s\n", cfg.rope_theta,
              cfg.rms_norm_eps, (long long)cfg.max_position_embeddings,
              cfg.tie_word_embeddings ? "tied" : "untied",
              cfg.attention_bias ? ", q/k/v biases" : "");
  std::printf(
      "  tokenizer        %s\n",
      loaded.tokenizer
          ? ("SentencePiece, " + std::to_string(loaded.tokenizer->vocab_size()) + " pieces").c_str()
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
              human_bytes(double(loaded.model->weight_bytes())).c_str(),
              human_bytes(double(kv_per_token)).c_str(),
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

const Register reg([](CLI::App& parent, GlobalOptions& global) {
  auto* app =
      parent.add_subcommand("info", "Show configuration, per-layer dims, parameters, memory");
  auto args = std::make_shared<ModelArgs>();
  add_model_arguments(app, *args);
  return Command{app, [args, &global] { return run_info(*args, global); }};
});

}  // namespace
}  // namespace lorashear::cli
