#pragma once
// Minimal writers of GGUF v3 and llama2.c checkpoints for the I/O tests (independent of the readers
// in core, so the tests check the readers against the formats, not against themselves).

#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "lorashear/model/llama.h"

namespace lorashear::test {

/// A random model whose norm gains are perturbed too (init_random sets them to one), so a mix-up
/// between norms would change the logits. Deterministic in `seed`.
inline LlamaModel random_model(const ModelConfig& cfg, uint64_t seed) {
  LlamaModel m(cfg);
  m->init_random(seed);
  torch::NoGradGuard ng;
  // Its own generator: the same seed gives the same model whatever ran before.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed * 7919 + 1);
  for (auto& [name, t] : m->state_dict())
    if (name.find("norm") != std::string::npos)
      t.add_(torch::randn(t.sizes(), gen, t.options()) * 0.1);
  return m;
}

/// Largest |logit difference| of two models on a fixed random batch (2 × 13 tokens).
inline double max_logit_diff(LlamaModelImpl& a, LlamaModelImpl& b) {
  torch::NoGradGuard ng;
  torch::manual_seed(9);
  const auto tokens = torch::randint(a.config().vocab_size, {2, 13}, torch::kInt64);
  return (a.forward(tokens) - b.forward(tokens)).abs().max().item<double>();
}

/// Hugging Face rotate-half rows → the interleaved-pair layout llama2.c and GGUF store
/// (interleaved row 2i = HF row i, row 2i+1 = HF row hd/2 + i, per head).
inline torch::Tensor to_interleaved(const torch::Tensor& w, int64_t head_dim) {
  const int64_t rows = w.size(0);
  auto v = w.dim() == 1 ? w.view({rows, 1}) : w;
  const int64_t cols = v.size(1);
  auto out = v.view({rows / head_dim, 2, head_dim / 2, cols}).transpose(1, 2).reshape({rows, cols});
  return w.dim() == 1 ? out.view({rows}) : out;
}

class GgufWriter {
 public:
  enum TensorType : uint32_t { F32 = 0, F16 = 1, Q8_0 = 8, Q4_K = 12, BF16 = 30 };

  void add_u32(const std::string& key, uint32_t v) { kv(key, 4, &v, 4); }
  void add_i32(const std::string& key, int32_t v) { kv(key, 5, &v, 4); }
  void add_f32(const std::string& key, float v) { kv(key, 6, &v, 4); }
  void add_bool(const std::string& key, bool v) {
    const uint8_t b = v;
    kv(key, 7, &b, 1);
  }
  void add_string(const std::string& key, const std::string& v) {
    key_header(key, 8);
    str(v);
  }
  void add_string_array(const std::string& key, const std::vector<std::string>& v) {
    key_header(key, 9);
    pod(uint32_t(8));
    pod(uint64_t(v.size()));
    for (const auto& s : v)
      str(s);
  }
  void add_f32_array(const std::string& key, const std::vector<float>& v) {
    key_header(key, 9);
    pod(uint32_t(6));
    pod(uint64_t(v.size()));
    for (float f : v)
      pod(f);
  }
  void add_i32_array(const std::string& key, const std::vector<int32_t>& v) {
    key_header(key, 9);
    pod(uint32_t(5));
    pod(uint64_t(v.size()));
    for (int32_t x : v)
      pod(x);
  }

  /// `ne` fastest-first (a [out, in] matrix has ne = {in, out}); `data` the encoded bytes.
  void add_tensor_bytes(const std::string& name, std::vector<uint64_t> ne, uint32_t type,
                        std::string data) {
    tensors_.push_back({name, std::move(ne), type, std::move(data)});
  }
  /// A torch [.., in] tensor encoded as `type` (F32, F16, BF16 or Q8_0).
  void add_tensor(const std::string& name, const torch::Tensor& t, uint32_t type) {
    std::vector<uint64_t> ne(t.sizes().rbegin(), t.sizes().rend());
    add_tensor_bytes(name, ne, type, encode(t, type));
  }

  static std::string encode(const torch::Tensor& t, uint32_t type) {
    auto f = t.to(torch::kFloat32).contiguous();
    if (type == F32 || type == F16 || type == BF16) {
      auto c = f.to(type == F32   ? torch::kFloat32
                    : type == F16 ? torch::kFloat16
                                  : torch::kBFloat16)
                   .contiguous();
      return std::string(static_cast<const char*>(c.data_ptr()), c.nbytes());
    }
    // Q8_0: per 32 values, f16 scale d = max|x| / 127 and int8 q = round(x / d).
    std::string out;
    const float* x = f.data_ptr<float>();
    for (int64_t b = 0; b < f.numel() / 32; ++b) {
      float amax = 0;
      for (int k = 0; k < 32; ++k)
        amax = std::max(amax, std::fabs(x[b * 32 + k]));
      const float d = amax / 127.0f;
      const c10::Half h(d);
      out.append(reinterpret_cast<const char*>(&h), 2);
      const float id = d != 0 ? 1.0f / d : 0.0f;
      for (int k = 0; k < 32; ++k) {
        const auto q = static_cast<int8_t>(std::lround(x[b * 32 + k] * id));
        out.push_back(static_cast<char>(q));
      }
    }
    return out;
  }

  std::string bytes(uint32_t alignment = 32) const {
    std::string out = "GGUF";
    auto put = [&](const auto& v) { out.append(reinterpret_cast<const char*>(&v), sizeof(v)); };
    put(uint32_t(3));
    put(uint64_t(tensors_.size()));
    put(uint64_t(n_kv_));
    out += kv_;
    uint64_t offset = 0;
    for (const auto& t : tensors_) {
      put(uint64_t(t.name.size()));
      out += t.name;
      put(uint32_t(t.ne.size()));
      for (auto d : t.ne)
        put(d);
      put(t.type);
      put(offset);
      offset += (t.data.size() + alignment - 1) / alignment * alignment;
    }
    out.append((alignment - out.size() % alignment) % alignment, '\0');
    for (const auto& t : tensors_) {
      out += t.data;
      out.append((alignment - t.data.size() % alignment) % alignment, '\0');
    }
    return out;
  }

  void write(const std::string& path) const {
    std::ofstream f(path, std::ios::binary);
    const auto b = bytes();
    f.write(b.data(), static_cast<std::streamsize>(b.size()));
  }

  /// llama.* metadata describing `cfg` (uniform layers).
  void add_llama_config(const ModelConfig& cfg) {
    add_string("general.architecture", "llama");
    add_u32("llama.embedding_length", uint32_t(cfg.hidden_size));
    add_u32("llama.block_count", uint32_t(cfg.n_layers()));
    add_u32("llama.feed_forward_length", uint32_t(cfg.layers[0].intermediate_size));
    add_u32("llama.attention.head_count", uint32_t(cfg.layers[0].n_heads));
    add_u32("llama.attention.head_count_kv", uint32_t(cfg.layers[0].n_kv_heads));
    add_u32("llama.rope.dimension_count", uint32_t(cfg.head_dim));
    add_u32("llama.context_length", uint32_t(cfg.max_position_embeddings));
    add_f32("llama.attention.layer_norm_rms_epsilon", float(cfg.rms_norm_eps));
    add_f32("llama.rope.freq_base", float(cfg.rope_theta));
    add_u32("llama.vocab_size", uint32_t(cfg.vocab_size));
  }

  /// Every tensor of `m` under its GGUF name, q/k rows interleaved. `matrix_type` for 2-D weights.
  void add_llama_tensors(const LlamaModelImpl& m, uint32_t matrix_type, bool write_tied_output) {
    const auto& cfg = m.config();
    auto enc = [&](const std::string& name, const torch::Tensor& t) {
      add_tensor(name, t, t.dim() == 2 ? matrix_type : F32);
    };
    enc("token_embd.weight", m.model->embed_tokens->weight);
    if (m.lm_head)
      enc("output.weight", m.lm_head->weight);
    else if (write_tied_output)
      enc("output.weight", m.model->embed_tokens->weight);
    enc("output_norm.weight", m.model->norm->weight);
    for (int64_t l = 0; l < cfg.n_layers(); ++l) {
      const std::string b = "blk." + std::to_string(l) + ".";
      const auto& L = m.model->layers[l];
      enc(b + "attn_norm.weight", L->input_layernorm->weight);
      enc(b + "attn_q.weight", to_interleaved(L->self_attn->q_proj->weight, cfg.head_dim));
      enc(b + "attn_k.weight", to_interleaved(L->self_attn->k_proj->weight, cfg.head_dim));
      enc(b + "attn_v.weight", L->self_attn->v_proj->weight);
      enc(b + "attn_output.weight", L->self_attn->o_proj->weight);
      enc(b + "ffn_norm.weight", L->post_attention_layernorm->weight);
      enc(b + "ffn_gate.weight", L->mlp->gate_proj->weight);
      enc(b + "ffn_up.weight", L->mlp->up_proj->weight);
      enc(b + "ffn_down.weight", L->mlp->down_proj->weight);
    }
  }

 private:
  struct Tensor {
    std::string name;
    std::vector<uint64_t> ne;
    uint32_t type;
    std::string data;
  };
  template <typename T>
  void pod(const T& v) {
    kv_.append(reinterpret_cast<const char*>(&v), sizeof(T));
  }
  void str(const std::string& s) {
    pod(uint64_t(s.size()));
    kv_ += s;
  }
  void key_header(const std::string& key, uint32_t type) {
    str(key);
    pod(type);
    ++n_kv_;
  }
  void kv(const std::string& key, uint32_t type, const void* v, size_t n) {
    key_header(key, type);
    kv_.append(static_cast<const char*>(v), n);
  }
  std::string kv_;
  uint64_t n_kv_ = 0;
  std::vector<Tensor> tensors_;
};

/// Writes `m` (uniform layers, no biases) as a llama2.c legacy checkpoint. An untied head is
/// written with a negative vocab_size and a trailing wcls array.
inline void write_llama2c(const std::string& path, const LlamaModelImpl& m, int64_t seq_len,
                          bool with_freq_cis) {
  const auto& cfg = m.config();
  std::ofstream f(path, std::ios::binary);
  const int32_t header[7] = {int32_t(cfg.hidden_size),
                             int32_t(cfg.layers[0].intermediate_size),
                             int32_t(cfg.n_layers()),
                             int32_t(cfg.layers[0].n_heads),
                             int32_t(cfg.layers[0].n_kv_heads),
                             int32_t(m.lm_head ? -cfg.vocab_size : cfg.vocab_size),
                             int32_t(seq_len)};
  f.write(reinterpret_cast<const char*>(header), sizeof(header));
  auto put = [&](const torch::Tensor& t) {
    auto c = t.to(torch::kFloat32).contiguous();
    f.write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.nbytes()));
  };
  const auto& layers = m.model->layers;
  const int64_t hd = cfg.head_dim;
  put(m.model->embed_tokens->weight);
  for (const auto& L : layers)
    put(L->input_layernorm->weight);
  for (const auto& L : layers)
    put(to_interleaved(L->self_attn->q_proj->weight, hd));
  for (const auto& L : layers)
    put(to_interleaved(L->self_attn->k_proj->weight, hd));
  for (const auto& L : layers)
    put(L->self_attn->v_proj->weight);
  for (const auto& L : layers)
    put(L->self_attn->o_proj->weight);
  for (const auto& L : layers)
    put(L->post_attention_layernorm->weight);
  for (const auto& L : layers)
    put(L->mlp->gate_proj->weight);
  for (const auto& L : layers)
    put(L->mlp->down_proj->weight);
  for (const auto& L : layers)
    put(L->mlp->up_proj->weight);
  put(m.model->norm->weight);
  if (with_freq_cis) put(torch::full({seq_len * hd}, 0.5f));  // real + imag, never read
  if (m.lm_head) put(m.lm_head->weight);
}

}  // namespace lorashear::test
