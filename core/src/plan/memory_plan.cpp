#include "lorashear/plan/memory_plan.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>

#include "lorashear/errors.h"

namespace lorashear {

namespace {

struct LinearShape {
  std::string name;
  int64_t in = 0, out = 0;
};

// The seven projections of layer i, as the engine builds them.
std::vector<LinearShape> layer_linears(const ModelConfig& c, int64_t i) {
  const auto& d = c.layers[i];
  const int64_t h = c.hidden_size, q = d.n_heads * c.head_dim, kv = d.n_kv_heads * c.head_dim;
  const int64_t m = d.intermediate_size;
  return {{"q_proj", h, q},    {"k_proj", h, kv}, {"v_proj", h, kv},  {"o_proj", q, h},
          {"gate_proj", h, m}, {"up_proj", h, m}, {"down_proj", m, h}};
}

}  // namespace

void MemoryPlanOptions::validate() const {
  if (batch < 1) throw UsageError("--batch must be at least 1");
  if (seq_len < 2) throw UsageError("--seq-len must be at least 2");
  if (world_size < 1) throw UsageError("--world-size must be at least 1");
  if (batch % world_size != 0)
    throw UsageError("--batch " + std::to_string(batch) + " does not split over --world-size " +
                     std::to_string(world_size) + " ranks (each rank takes batch / world size)");
  if (!(prune_ratio > 0 && prune_ratio < 1))
    throw UsageError("the pruning ratio must be in (0, 1), found " + std::to_string(prune_ratio));
  if (periods < 1) throw UsageError("there must be at least one pruning period");
  if (weight_bytes != 2 && weight_bytes != 4)
    throw UsageError("weights are stored in 2 (bf16/fp16) or 4 (fp32) bytes");
  lora.validate();
}

MemoryPlan plan_memory(const ModelConfig& c, const MemoryPlanOptions& o) {
  o.validate();
  MemoryPlan plan;
  plan.world_size = o.world_size;
  plan.parameters = c.num_parameters();
  const int64_t per_rank_batch = o.batch / o.world_size;
  // A window of seq_len tokens predicts seq_len − 1 of them; the forward runs over seq_len − 1.
  const int64_t T = o.seq_len - 1;
  plan.tokens_per_rank = per_rank_batch * T;
  const int64_t wb = o.weight_bytes, ab = o.weight_bytes;  // activations in the weights' dtype
  const int64_t h = c.hidden_size, r = o.lora.rank;

  plan.items.push_back(
      {"base weights", plan.parameters * wb,
       std::to_string(plan.parameters) + " parameters × " + std::to_string(wb) + " bytes, frozen"});

  // LoRA: factors, their gradients and AdamW's two moments, all fp32.
  int64_t lora = 0, largest = 0, projections = 0;
  for (int64_t i = 0; i < c.n_layers(); ++i)
    for (const auto& l : layer_linears(c, i)) {
      largest = std::max(largest, l.in * l.out);
      projections += l.in * l.out;
      if (std::find(o.lora.targets.begin(), o.lora.targets.end(), l.name) != o.lora.targets.end())
        lora += r * (l.in + l.out);
    }
  plan.lora_parameters = lora;
  plan.items.push_back({"LoRA factors + gradients + AdamW", lora * 16,
                        std::to_string(lora) + " parameters × (4 + 4 + 8) bytes (fp32)"});
  if (o.lhspg) {
    plan.items.push_back({"LHSPG merged weight", largest * 4,
                          "the largest projection's W + s·B·A in fp32, one at a time"});
    // The saliency at a period's start: per projection W + s·B·A (fp32), it and W in fp64, and two
    // fp64 products (measured: the peak of a checkpointed 1.1B run is here).
    plan.items.push_back({"LHSPG saliency (between steps)", largest * 36,
                          "the largest projection's W + s·B·A in fp32 and fp64, W in fp64, two "
                          "fp64 products; only while a period's groups are chosen",
                          MemoryItem::When::BetweenSteps});
    // Rows of the redundant groups: about the pruned fraction of the projections' parameters.
    const auto fraction = [](double f) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.3g", f);
      return std::string(buf);
    };
    const double per_period = o.prune_ratio / static_cast<double>(o.periods);
    if (wb < 4)
      plan.items.push_back({"LHSPG fp32 rows under projection",
                            static_cast<int64_t>(per_period * static_cast<double>(projections)) * 4,
                            "one period's redundant rows (ratio " + fraction(o.prune_ratio) +
                                " / " + std::to_string(o.periods) +
                                " periods of the projections) kept in fp32"});
    if (o.mapped_weights)
      plan.items.push_back(
          {"pruned rows copied on write",
           static_cast<int64_t>(o.prune_ratio * static_cast<double>(projections)) * wb,
           "the redundant rows (ratio " + fraction(o.prune_ratio) +
               ") of the memory-mapped weights, copied when first written"});
  }

  // Activations autograd keeps per token, per layer (elements): the two RMSNorms' inputs and
  // outputs (4h), q/k/v (q + 2kv), q and k after RoPE (q + kv), k and v repeated to the query
  // heads (2q, only with grouped-query attention), the attention scores and their softmax
  // (2·heads·T: the training path materialises them), the attention output (q), the MLP's gate,
  // SiLU(gate), up and their product (4m), and each adapter's A·x (r per adapted projection).
  int64_t per_token = 0, largest_layer = 0;
  for (int64_t i = 0; i < c.n_layers(); ++i) {
    const auto& d = c.layers[i];
    const int64_t q = d.n_heads * c.head_dim, kv = d.n_kv_heads * c.head_dim;
    int64_t e = 4 * h + (q + 2 * kv) + (q + kv) + q + 4 * d.intermediate_size + 2 * d.n_heads * T +
                r * static_cast<int64_t>(o.lora.targets.size());
    if (d.n_kv_heads != d.n_heads) e += 2 * q;
    // 16-bit activations: the two RMSNorms compute in fp32 and keep its input and normalised
    // values in fp32 too (measured: 6% of a bf16 1.1B step's peak without them).
    const int64_t layer_bytes = e * ab + (ab < 4 ? 2 * 2 * h * 4 : 0);
    largest_layer = std::max(largest_layer, layer_bytes);
    // With checkpointing a layer keeps only its input (h values per token).
    per_token += o.checkpoint_activations ? h * ab : layer_bytes;
  }
  per_token += 2 * h * ab;  // embeddings out, final norm
  plan.activation_bytes_per_token = per_token;
  const std::string batch_text = std::to_string(plan.tokens_per_rank) + " tokens (" +
                                 std::to_string(per_rank_batch) + " × " + std::to_string(T) + ")";
  if (o.checkpoint_activations) {
    plan.items.push_back({"layer inputs (checkpointing)", per_token * plan.tokens_per_rank,
                          std::to_string(per_token) + " bytes per token × " + batch_text,
                          MemoryItem::When::Step});
    plan.items.push_back({"one layer recomputed", largest_layer * plan.tokens_per_rank,
                          std::to_string(largest_layer) + " bytes per token × " + batch_text,
                          MemoryItem::When::Step});
  } else {
    plan.items.push_back({"activations kept for backward", per_token * plan.tokens_per_rank,
                          std::to_string(per_token) + " bytes per token × " + batch_text,
                          MemoryItem::When::Step});
  }
  // Logits (fp32) and the log-softmax cross-entropy keeps; in backward their gradient replaces
  // the latter (measured: 2 copies at the peak, not 3).
  plan.items.push_back({"logits and log-softmax", 2 * c.vocab_size * 4 * plan.tokens_per_rank,
                        "2 × vocab " + std::to_string(c.vocab_size) + " × 4 bytes per token",
                        MemoryItem::When::Step});
  plan.items.push_back({"runtime", o.runtime_bytes, "LibTorch, OpenBLAS, allocator (measured)"});
  // Everything held throughout, plus the larger of a step's activations and logits and what
  // exists between steps.
  int64_t held = 0, in_step = 0, between = 0;
  for (const auto& it : plan.items)
    (it.when == MemoryItem::When::Step           ? in_step
     : it.when == MemoryItem::When::BetweenSteps ? between
                                                 : held) += it.bytes;
  plan.per_rank_bytes = held + std::max(in_step, between);
  return plan;
}

int64_t available_memory_bytes() {
  // An override for what /proc/meminfo cannot know (a cgroup or scheduler allotment) and for
  // tests that need a run not to fit.
  if (const char* env = std::getenv("LORASHEAR_AVAILABLE_MEMORY_BYTES"); env && *env) {
    char* end = nullptr;
    errno = 0;
    const long long bytes = std::strtoll(env, &end, 10);
    if (errno != 0 || *end != '\0' || bytes < 0)
      throw UsageError(std::string("LORASHEAR_AVAILABLE_MEMORY_BYTES=") + env +
                       " is not a number of bytes");
    return bytes;
  }
  std::ifstream in("/proc/meminfo");
  std::string key, unit;
  int64_t kib = 0;
  while (in >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib * 1024;
  return -1;
}

bool decide_activation_checkpointing(const std::string& mode, const ModelConfig& config,
                                     MemoryPlanOptions options, bool cuda, std::string* why) {
  const auto say = [&](const std::string& text) {
    if (why) *why = text;
  };
  if (mode == "on" || mode == "off") {
    say(std::string("activation checkpointing ") + mode + " (--checkpoint-activations " + mode +
        ")");
    return mode == "on";
  }
  if (mode != "auto")
    throw UsageError("--checkpoint-activations must be on, off or auto, not \"" + mode + "\"");
  if (cuda) {
    say("activation checkpointing off (auto: GPU memory is not queried; --checkpoint-activations "
        "on to save memory)");
    return false;
  }
  options.checkpoint_activations = false;
  const int64_t need = plan_memory(config, options).per_rank_bytes;
  const int64_t available = available_memory_bytes();
  const auto gib = [](int64_t b) { return std::to_string(b / (int64_t(1) << 20)) + " MiB"; };
  if (available >= 0 && need > available) {
    say("activation checkpointing on (auto: the run needs about " + gib(need) + " without it, " +
        gib(available) + " are available)");
    return true;
  }
  say("activation checkpointing off (auto: about " + gib(need) + " needed" +
      (available >= 0 ? ", " + gib(available) + " available)" : ")"));
  return false;
}

nlohmann::json MemoryPlan::to_json() const {
  nlohmann::json items_json = nlohmann::json::array();
  for (const auto& it : items)
    items_json.push_back({{"name", it.name},
                          {"bytes", it.bytes},
                          {"detail", it.detail},
                          {"when", it.when == MemoryItem::When::Step           ? "step"
                                   : it.when == MemoryItem::When::BetweenSteps ? "between_steps"
                                                                               : "always"}});
  return {{"items", items_json},
          {"per_rank_bytes", per_rank_bytes},
          {"total_bytes", per_rank_bytes * world_size},
          {"world_size", world_size},
          {"tokens_per_rank", tokens_per_rank},
          {"activation_bytes_per_token", activation_bytes_per_token},
          {"parameters", parameters},
          {"lora_parameters", lora_parameters}};
}

}  // namespace lorashear
