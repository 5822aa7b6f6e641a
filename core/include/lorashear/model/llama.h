#pragma once
// LLaMA-family decoder in LibTorch: token embedding, RMSNorm, rotary embeddings (rotate-half
// layout, as in Hugging Face checkpoints), grouped-query attention, SwiGLU MLP, tied or untied
// head, optional q/k/v biases. Parameter names follow Hugging Face
// (`model.layers.3.self_attn.q_proj.weight`), so the state dict is the safetensors layout.

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "lorashear/model/config.h"
#include "lorashear/model/lora.h"

namespace lorashear {

/// Where the weights live and in which dtype they are stored. Computation happens in the storage
/// dtype except RMSNorm statistics and softmax, which use float32.
struct ModelOptions {
  torch::Device device = torch::kCPU;
  torch::Dtype dtype = torch::kFloat32;
};

/// Parses "cpu", "cuda", "cuda:1"; throws UsageError for unknown or unavailable devices.
torch::Device parse_device(const std::string& name);
/// Parses "fp32"/"float32", "fp16"/"float16", "bf16"/"bfloat16"; throws UsageError otherwise.
torch::Dtype parse_dtype(const std::string& name);
std::string dtype_name(torch::Dtype dtype);  ///< "float32", "float16", "bfloat16"

/// Per-layer key/value cache for incremental decoding. Preallocated to `capacity` positions.
struct KVCache {
  std::vector<torch::Tensor> k;  ///< per layer [B, n_kv_heads, capacity, head_dim]
  std::vector<torch::Tensor> v;
  int64_t length = 0;    ///< positions already filled
  int64_t capacity = 0;  ///< maximum positions
};

/// A module that knows its path in the model (`model.layers.3.self_attn.q_proj`), which the
/// tracer records. The model sets it after construction.
class TracedModule : public torch::nn::Module {
 public:
  std::string path;
};

/// y = x W^T + b. Weight [out, in], optional bias [out]. With a LoRA adapter attached:
/// y = x W^T + b + lora_scaling · (x A^T) B^T, A = lora_A->weight [r, in], B = lora_B->weight
/// [out, r].
class LinearImpl : public TracedModule {
 public:
  LinearImpl(int64_t in, int64_t out, bool bias, const ModelOptions& opts);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
  torch::Tensor bias;  ///< undefined when the layer has none

  /// Operator kind in a trace: "linear", or "lora_A" / "lora_B" for adapter factors.
  std::string kind = "linear";
  std::shared_ptr<LinearImpl> lora_A, lora_B;  ///< null without an adapter
  double lora_scaling = 0.0;
  double lora_dropout = 0.0;  ///< on the adapter's input, in training mode only
  bool lora_merged = false;   ///< s·B·A is folded into `weight`: the adapter path is skipped
};
TORCH_MODULE(Linear);

class RMSNormImpl : public TracedModule {
 public:
  RMSNormImpl(int64_t dim, double eps, const ModelOptions& opts);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
  double eps;
};
TORCH_MODULE(RMSNorm);

class EmbeddingImpl : public TracedModule {
 public:
  EmbeddingImpl(int64_t vocab, int64_t dim, const ModelOptions& opts);
  torch::Tensor forward(const torch::Tensor& ids);
  torch::Tensor weight;  ///< [vocab, dim]
};
TORCH_MODULE(Embedding);

/// Rotary tables (rotate-half layout, `rope_scaling` applied), grown on demand. Not part of the
/// state dict.
class Rotary {
 public:
  explicit Rotary(const ModelConfig& cfg)
      : head_dim_(cfg.head_dim),
        theta_(cfg.rope_theta),
        scaling_(cfg.rope_scaling),
        max_positions_(cfg.max_position_embeddings) {}
  /// Returns cos and signed sin ([-sin, sin] halves) of shape [T, head_dim] for positions
  /// [start, start+T), in `dtype` on `device`. With "dynamic" scaling, a pass that reaches
  /// beyond max_position_embeddings uses the frequencies of its own length (start + T), as
  /// transformers does for a forward over those positions.
  std::pair<torch::Tensor, torch::Tensor> get(int64_t start, int64_t len, torch::Device device,
                                              torch::Dtype dtype);

 private:
  std::pair<torch::Tensor, torch::Tensor> build(int64_t positions, int64_t seq_len) const;
  int64_t head_dim_;
  double theta_;
  RopeScaling scaling_;
  int64_t max_positions_;
  torch::Tensor cos_, sin_;  // [capacity, head_dim] in the last dtype/device used
};

class AttentionImpl : public TracedModule {
 public:
  AttentionImpl(const ModelConfig& cfg, int64_t layer, const ModelOptions& opts);
  /// x [B, T, hidden]; positions start at `start`. With a cache, keys/values are appended to it.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        int64_t start, torch::Tensor* cache_k, torch::Tensor* cache_v);
  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  /// Qwen3: RMSNorm over head_dim of every query / key head before RoPE; null otherwise.
  RMSNorm q_norm{nullptr}, k_norm{nullptr};
  int64_t n_heads, n_kv_heads, head_dim;
  int64_t sliding_window = 0;  ///< Mistral: each position sees this many keys at most (0 = all)

 private:
  // q [B, T, H, D], k/v [B, S, KV, D] (any strides, unit stride on D) → [B, T, H, D].
  torch::Tensor fused_attention(const torch::Tensor& q, const torch::Tensor& k,
                                const torch::Tensor& v, int64_t start, double scale);
  torch::Tensor blocked_attention(const torch::Tensor& q, const torch::Tensor& k,
                                  const torch::Tensor& v, int64_t start, double scale);
};
TORCH_MODULE(Attention);

class MlpImpl : public TracedModule {
 public:
  MlpImpl(int64_t hidden, int64_t intermediate, bool bias, const ModelOptions& opts);
  torch::Tensor forward(const torch::Tensor& x);
  Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(Mlp);

class DecoderLayerImpl : public TracedModule {
 public:
  DecoderLayerImpl(const ModelConfig& cfg, int64_t layer, const ModelOptions& opts);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        int64_t start, torch::Tensor* cache_k, torch::Tensor* cache_v);
  Attention self_attn{nullptr};
  Mlp mlp{nullptr};
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(DecoderLayer);

/// The `model.` prefix of Hugging Face names.
class LlamaBodyImpl : public torch::nn::Module {
 public:
  LlamaBodyImpl(const ModelConfig& cfg, const ModelOptions& opts);
  Embedding embed_tokens{nullptr};
  std::vector<DecoderLayer> layers;
  RMSNorm norm{nullptr};
};
TORCH_MODULE(LlamaBody);

/// The causal language model. Parameters are created uninitialised (loaders fill them); call
/// `init_random` for a fresh model. Not thread-safe: one forward at a time.
class LlamaModelImpl : public torch::nn::Module {
 public:
  LlamaModelImpl(const ModelConfig& cfg, const ModelOptions& opts = {});

  /// tokens [B, T] int64 → logits [B, T, vocab] (float32 unless `keep_dtype`).
  /// With a cache, positions continue at cache->length and the cache grows by T.
  torch::Tensor forward(const torch::Tensor& tokens, KVCache* cache = nullptr);
  /// Final hidden states [B, T, hidden] (before lm_head).
  torch::Tensor hidden_states(const torch::Tensor& tokens, KVCache* cache = nullptr);
  /// hidden [.., hidden] → logits [.., vocab] in float32.
  torch::Tensor logits(const torch::Tensor& hidden);

  /// Makes the rotary tables cover `positions` positions now, so that forwards within them only
  /// read shared state: concurrent forwards from several threads (each in InferenceMode) are
  /// then safe. Call in InferenceMode.
  void reserve_positions(int64_t positions);

  /// Fresh cache for `batch` sequences of at most `capacity` positions.
  KVCache make_cache(int64_t batch, int64_t capacity) const;

  /// Deterministic random initialisation (normal(0, std) for matrices, ones for norms).
  void init_random(uint64_t seed, double std = 0.02);

  /// Hugging Face named base tensors (tied head and LoRA adapters omitted). Tensors share storage
  /// with the model.
  std::map<std::string, torch::Tensor> state_dict() const;
  /// Every parameter, LoRA factors included (`…q_proj.lora_A.weight`).
  std::map<std::string, torch::Tensor> all_parameters() const;
  /// The attached adapters' configuration, or null.
  const LoraConfig* lora() const { return lora_.empty() ? nullptr : &lora_.front(); }
  /// The parameter called `name` (Hugging Face naming); throws InputError when unknown.
  torch::Tensor parameter(const std::string& name) const;

  /// Activation checkpointing: training forwards (grad mode on, no KV cache) keep only each decoder
  /// layer's input and run the layer again during the backward pass — hidden_size values per token
  /// and layer instead of the layer's intermediates, for about one more forward of compute.
  /// Gradients reach the parameters' .grad (Tensor::backward; not torch::autograd::grad).
  void set_activation_checkpointing(bool on) { checkpoint_activations_ = on; }
  bool activation_checkpointing() const { return checkpoint_activations_; }

  const ModelConfig& config() const { return cfg_; }
  const ModelOptions& options() const { return opts_; }
  /// Parameter count including LoRA factors (tied embeddings counted once).
  int64_t num_parameters() const;
  int64_t weight_bytes() const;

  LlamaBody model{nullptr};
  Linear lm_head{nullptr};  ///< null when tied to model->embed_tokens

 private:
  friend void attach_lora(LlamaModelImpl&, const LoraConfig&);
  friend void detach_lora(LlamaModelImpl&);
  /// Sets every TracedModule's `path` from the module tree.
  void assign_paths();

  ModelConfig cfg_;
  ModelOptions opts_;
  Rotary rotary_;
  std::vector<LoraConfig> lora_;  ///< zero or one entry
  bool checkpoint_activations_ = false;
};
TORCH_MODULE(LlamaModel);

}  // namespace lorashear
