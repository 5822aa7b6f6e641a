#pragma once
// The operator graph of one forward pass (LORASHEAR.md §1): nodes are operators with the module
// that ran them and the parameters they used, edges are the tensors between them. Recorded from
// the model's own forward code on a dummy batch, also on the meta device, so a 70B configuration
// can be traced from its config.json without weights.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lorashear/model/config.h"
#include "lorashear/model/lora.h"

namespace lorashear {

class LlamaModelImpl;

struct TraceTensor {
  std::vector<int64_t> shape;
  int64_t producer = -1;  ///< node index; -1 for the token ids
};

struct TraceParam {
  std::string name;  ///< full Hugging Face name, `model.layers.3.self_attn.q_proj.weight`
  std::string role;  ///< the parameter's name inside its module: "weight" or "bias"
  std::vector<int64_t> shape;
};

/// Operator kinds: embedding, rms_norm, linear, lora_A, lora_B, scale (by the LoRA scaling), add,
/// mul, silu, rotary (cos/sin tables), reshape_heads, rope, repeat_kv, attention, merge_heads,
/// zeros (a block pruned to nothing).
struct TraceNode {
  std::string kind;
  std::string module;  ///< `model.layers.3.self_attn.q_proj`; "" for the model itself
  std::string name;    ///< unique: the module for layers with weights, else `module/kind[.tag]`
  std::vector<int64_t> inputs, outputs;  ///< tensor indices
  std::vector<TraceParam> params;
  int64_t layer = -1;  ///< decoder layer the module belongs to, -1 outside the layers
};

struct TraceGraph {
  ModelConfig config;
  std::optional<LoraConfig> lora;  ///< adapters attached while tracing
  bool has_weights = true;         ///< false when traced on the meta device
  std::vector<TraceNode> nodes;    ///< in execution order
  std::vector<TraceTensor> tensors;
  int64_t input = -1;   ///< token ids [batch, time]
  int64_t output = -1;  ///< logits [batch, time, vocab]

  /// Index of the node called `name`, or -1.
  int64_t find_node(const std::string& name) const;
};

struct TraceOptions {
  int64_t batch = 1;
  int64_t seq_len = 4;
};

/// One forward pass of `model` on a dummy batch (on the model's device, without gradients).
TraceGraph trace_model(LlamaModelImpl& model, const TraceOptions& options = {});

/// Builds `config` on the meta device (no memory for weights), optionally with adapters, and
/// traces it.
TraceGraph trace_config(const ModelConfig& config, const LoraConfig* lora = nullptr,
                        const TraceOptions& options = {});

}  // namespace lorashear
