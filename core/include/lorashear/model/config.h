#pragma once
// Architecture description of a LLaMA-family model. Torch-free so UI code can include it.
// Per-layer dimensions from day one: pruned models have different head counts and MLP widths per
// layer; head_dim is the same everywhere (RoPE).

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace lorashear {

/// Dimensions of one decoder layer.
struct LayerDims {
  LayerDims() = default;
  LayerDims(int64_t heads, int64_t kv_heads, int64_t intermediate)
      : n_heads(heads), n_kv_heads(kv_heads), intermediate_size(intermediate) {}

  int64_t n_heads = 0;            ///< query heads
  int64_t n_kv_heads = 0;         ///< key/value heads; n_heads % n_kv_heads == 0
  int64_t intermediate_size = 0;  ///< SwiGLU hidden width
  /// After pruning: the original index of each remaining kv head and MLP channel, so variable
  /// group ids (`L3.mlp.c117`) survive pruning. Empty means 0, 1, 2, … (never pruned).
  std::vector<int64_t> kv_origin, channel_origin;

  bool operator==(const LayerDims& o) const {
    return n_heads == o.n_heads && n_kv_heads == o.n_kv_heads &&
           intermediate_size == o.intermediate_size;
  }
};

/// RoPE frequency scaling as transformers defines it (`rope_scaling` in config.json).
struct RopeScaling {
  /// "" (none), "linear", "dynamic" (NTK-aware, from the sequence length), "llama3" (Llama 3.1+
  /// per-frequency smoothing) or "yarn".
  std::string type;
  double factor = 1.0;
  double low_freq_factor = 1.0;   ///< llama3
  double high_freq_factor = 4.0;  ///< llama3
  /// llama3 and yarn: the context the model was pre-trained with (0 = max_position_embeddings).
  int64_t original_max_position_embeddings = 0;
  double beta_fast = 32.0, beta_slow = 1.0;   ///< yarn
  double mscale = 0.0, mscale_all_dim = 0.0;  ///< yarn (0 = absent)
  double attention_factor = 0.0;              ///< yarn: scale of cos/sin (0 = derived)
  bool truncate = true;                       ///< yarn: round the correction range

  bool enabled() const { return !type.empty(); }
  bool operator==(const RopeScaling& o) const;
};

/// "none", "llama3 ×8, low/high freq factor 1/4, pre-trained context 8192", "linear ×2", …
std::string describe_rope_scaling(const RopeScaling& scaling);

/// Reads config.json's `rope_scaling` object ("rope_type" or "type"; "default" → none). Throws
/// InputError naming `source` and the field for unknown types and missing parameters.
RopeScaling parse_rope_scaling(const nlohmann::json& rope_scaling, const std::string& source);

/// Inverse RoPE frequencies (head_dim / 2 values) and the factor cos/sin are multiplied by, for a
/// forward pass covering positions [0, seq_len). Only "dynamic" depends on seq_len.
struct RopeFrequencies {
  std::vector<double> inv_freq;
  double attention_factor = 1.0;
};
RopeFrequencies rope_frequencies(int64_t head_dim, double theta, const RopeScaling& scaling,
                                 int64_t max_position_embeddings, int64_t seq_len);

struct ModelConfig {
  /// "llama", "mistral", "qwen2" or "qwen3" (as in config.json). Architectures differ only in the
  /// flags below: qwen2 has q/k/v biases, qwen3 per-head q/k RMSNorm.
  std::string model_type = "llama";
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t head_dim = 0;
  std::vector<LayerDims> layers;
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  int64_t max_position_embeddings = 2048;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  ///< q/k/v biases (Qwen2 style); o_proj never has one
  bool mlp_bias = false;        ///< gate/up/down biases (`mlp_bias`)
  /// Qwen3: RMSNorm over head_dim on every query and key head before RoPE (`q_norm`, `k_norm`
  /// weights of head_dim values shared by all heads of the layer).
  bool qk_norm = false;
  RopeScaling rope_scaling;
  /// Mistral `sliding_window`: each position sees at most this many keys, itself included
  /// (0 = unlimited), as transformers masks them. The KV cache still keeps every position.
  int64_t sliding_window = 0;
  int64_t bos_token_id = 1;
  int64_t eos_token_id = 2;
  std::vector<int64_t> eos_token_ids;  ///< every id that ends generation (first = eos_token_id)
  std::string stored_dtype;  ///< `torch_dtype` as in config.json ("bfloat16", …); informational

  int64_t n_layers() const { return static_cast<int64_t>(layers.size()); }
  /// transformers gives o_proj a bias with `attention_bias` except in Qwen2 (q/k/v only).
  bool o_proj_bias() const { return attention_bias && model_type != "qwen2"; }
  bool uniform_layers() const;

  /// Uniform layers helper: n_layers copies of the same dims.
  static ModelConfig uniform(int64_t vocab, int64_t hidden, int64_t n_layers, int64_t n_heads,
                             int64_t n_kv_heads, int64_t intermediate, int64_t head_dim = 0);

  /// Throws InputError naming `source` and the offending field when the config is inconsistent.
  void validate(const std::string& source = "config") const;

  /// Parameter count (tied embeddings counted once).
  int64_t num_parameters() const;
  /// Parameters of layer i: attention (q/k norms included) / mlp. Norms: 2 · hidden_size.
  int64_t layer_attention_parameters(int64_t i) const;
  int64_t layer_mlp_parameters(int64_t i) const;

  /// Hugging Face config.json. Non-uniform layers add `num_attention_heads_per_layer`,
  /// `num_key_value_heads_per_layer` and `intermediate_size_per_layer` lists (scalars keep the
  /// max). Pruned layers add `lorashear_original_indices`: per layer {"kv_heads": "0,2-3",
  /// "mlp_channels": "0-116,118-171"} (ranges of original indices kept).
  nlohmann::json to_hf_json(const std::string& torch_dtype = "float32") const;
  /// Throws InputError naming `source` and the field on missing/invalid values.
  static ModelConfig from_hf_json(const nlohmann::json& j, const std::string& source);
  /// Reads a config.json file; throws InputError naming the file when it cannot be read or parsed.
  static ModelConfig from_file(const std::string& path);
  /// Attention features beyond plain LLaMA, comma-separated ("q/k/v biases, per-head q/k RMSNorm,
  /// sliding window 4096"); empty when none.
  std::string attention_features() const;
  /// Architectures from_hf_json accepts, for messages: "llama, mistral, qwen2, qwen3".
  static const char* supported_model_types();
};

/// Ascending indices as ranges: {0,1,2,3,7} → "0-3,7".
std::string format_index_ranges(const std::vector<int64_t>& indices);
/// The inverse of format_index_ranges ("" → none). Throws InputError naming `source` and `field`
/// for anything but ascending ranges.
std::vector<int64_t> parse_index_ranges(const std::string& text, const std::string& source,
                                        const std::string& field);

}  // namespace lorashear
