#pragma once
// Memory a pruning or recovery run needs, computed from the configuration alone before a run
// starts (`lorashear plan-memory`): base weights, LoRA factors with their gradients and AdamW
// state, the activations autograd keeps for the backward pass (per token, per layer), the logits
// and the runtime itself. Data parallelism (world size N) splits the batch, not the model: each
// rank holds every weight and 1/N of the activations. bench/bench_memory_plan compares the figures
// with the peak RSS of real training steps.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "lorashear/model/config.h"
#include "lorashear/model/lora.h"

namespace lorashear {

struct MemoryPlanOptions {
  int64_t batch = 1;  ///< global batch (sequences per optimiser step, over all ranks)
  int64_t seq_len = 256;
  int64_t world_size = 1;  ///< data-parallel ranks; must divide `batch`
  /// Bytes per base weight element: 4 (fp32, the engine's default), 2 (bf16 / fp16).
  int64_t weight_bytes = 4;
  LoraConfig lora;
  /// LHSPG (pruning) keeps one merged weight matrix per node group at a time for the saliency and
  /// the projections; recovery does not.
  bool lhspg = true;
  /// LHSPG: the fraction of the parameters pruned and the periods it is spread over. The rows of
  /// a period's redundant groups are rewritten every step; 16-bit weights keep fp32 copies of
  /// them, and weights viewing a memory-mapped checkpoint copy the pages written.
  double prune_ratio = 0.2;
  int64_t periods = 4;
  /// The base weights view the memory-mapped checkpoint (LoadOptions::map_weights; the CLI's
  /// default): pruned rows are copied when first written.
  bool mapped_weights = false;
  /// Activation checkpointing (LlamaModelImpl::set_activation_checkpointing): each layer keeps
  /// only its input; one layer's intermediates exist at a time, during its recomputation.
  bool checkpoint_activations = false;
  /// Process overhead: LibTorch, OpenBLAS buffers, the allocator's reserve (measured on CPU by
  /// bench_memory_plan: the resident size before the first step less weights and LoRA).
  int64_t runtime_bytes = int64_t(130) << 20;
  /// Throws UsageError naming the option.
  void validate() const;
};

struct MemoryItem {
  std::string name;
  int64_t bytes = 0;
  std::string detail;  ///< how it was counted
  /// Always: held for the whole run. Step: only during a step's forward and backward
  /// (activations, logits). BetweenSteps: only between steps (LHSPG's saliency at a period's
  /// start). The total is Always + the larger of Step and BetweenSteps.
  enum class When { Always, Step, BetweenSteps };
  When when = When::Always;
};

struct MemoryPlan {
  std::vector<MemoryItem> items;           ///< per rank
  int64_t per_rank_bytes = 0;              ///< sum of items
  int64_t activation_bytes_per_token = 0;  ///< all layers, kept for backward
  int64_t tokens_per_rank = 0;
  int64_t world_size = 1;
  int64_t lora_parameters = 0;
  int64_t parameters = 0;
  nlohmann::json to_json() const;
};

MemoryPlan plan_memory(const ModelConfig& config, const MemoryPlanOptions& options);

/// MemAvailable of /proc/meminfo in bytes, or -1 where unknown; $LORASHEAR_AVAILABLE_MEMORY_BYTES
/// (a number of bytes) replaces it. Throws UsageError when that variable is not a number.
int64_t available_memory_bytes();

/// Whether a run checkpoints activations: `mode` "on", "off" or "auto". Auto turns it on when the
/// run planned without it (`options`, whose checkpoint_activations is ignored) needs more than
/// the memory available — measured, checkpointing costs about one more forward pass per step
/// (bench_memory_plan) and saves the activations' share, which only matters when memory runs
/// out. On CUDA (`cuda`) free device memory is not queried by this LibTorch: auto means off there.
/// `why` (optional) gets one line for logs and reports. Throws UsageError for another mode.
bool decide_activation_checkpointing(const std::string& mode, const ModelConfig& config,
                                     MemoryPlanOptions options, bool cuda,
                                     std::string* why = nullptr);

}  // namespace lorashear
