#include "lorashear/model/llama.h"

#include <cmath>

#include "lorashear/errors.h"

namespace lorashear {

namespace {

torch::TensorOptions tensor_options(const ModelOptions& o) {
  return torch::TensorOptions().dtype(o.dtype).device(o.device);
}

// Queries are processed in blocks of this many positions: with a causal mask, block b only needs
// keys up to its last position, which skips almost half of the score matrix for long windows and
// keeps each block's scores small enough to stay in cache.
constexpr int64_t kQueryBlock = 128;

// x [B, H, T, D] → x*cos + swap_halves(x)*sin_signed, i.e. rotate-half RoPE in three kernels.
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos,
                         const torch::Tensor& sin_signed) {
  const int64_t half = x.size(-1) / 2;
  auto swapped = torch::cat({x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return torch::addcmul(x * cos, swapped, sin_signed);
}

}  // namespace

torch::Device parse_device(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  if (name.rfind("cuda", 0) == 0) {
    if (!torch::cuda::is_available())
      throw UsageError("device '" + name + "': this build of LibTorch has no usable CUDA device");
    try {
      return torch::Device(name);
    } catch (const c10::Error&) {
      throw UsageError("device '" + name + "': expected cuda or cuda:N");
    }
  }
  throw UsageError("device '" + name + "': expected cpu, cuda or cuda:N");
}

torch::Dtype parse_dtype(const std::string& name) {
  if (name == "fp32" || name == "float32" || name == "f32") return torch::kFloat32;
  if (name == "fp16" || name == "float16" || name == "f16") return torch::kFloat16;
  if (name == "bf16" || name == "bfloat16") return torch::kBFloat16;
  throw UsageError("dtype '" + name + "': expected fp32, fp16 or bf16");
}

std::string dtype_name(torch::Dtype dtype) {
  switch (dtype) {
    case torch::kFloat32: return "float32";
    case torch::kFloat16: return "float16";
    case torch::kBFloat16: return "bfloat16";
    default: return std::string(c10::toString(dtype));
  }
}

// ---- Building blocks --------------------------------------------------------------------------------

LinearImpl::LinearImpl(int64_t in, int64_t out, bool with_bias, const ModelOptions& opts) {
  weight = register_parameter("weight", torch::empty({out, in}, tensor_options(opts)));
  if (with_bias) bias = register_parameter("bias", torch::empty({out}, tensor_options(opts)));
}

torch::Tensor LinearImpl::forward(const torch::Tensor& x) { return torch::linear(x, weight, bias); }

RMSNormImpl::RMSNormImpl(int64_t dim, double eps_, const ModelOptions& opts) : eps(eps_) {
  weight = register_parameter("weight", torch::empty({dim}, tensor_options(opts)));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  auto xf = x.to(torch::kFloat32);
  auto inv = torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true).add_(eps));
  return (xf * inv).to(x.scalar_type()) * weight;
}

EmbeddingImpl::EmbeddingImpl(int64_t vocab, int64_t dim, const ModelOptions& opts) {
  weight = register_parameter("weight", torch::empty({vocab, dim}, tensor_options(opts)));
}

torch::Tensor EmbeddingImpl::forward(const torch::Tensor& ids) {
  return torch::embedding(weight, ids);
}

std::pair<torch::Tensor, torch::Tensor> Rotary::get(int64_t start, int64_t len,
                                                    torch::Device device, torch::Dtype dtype) {
  const int64_t need = start + len;
  if (!cos_.defined() || cos_.size(0) < need || cos_.device() != device ||
      cos_.scalar_type() != dtype) {
    int64_t cap = 256;
    while (cap < need) cap *= 2;
    // Angles in float64 so long contexts keep precision; the tables are then stored in `dtype`.
    auto opts64 = torch::TensorOptions().dtype(torch::kFloat64);
    auto inv_freq =
        torch::pow(theta_, -torch::arange(0, head_dim_, 2, opts64) / static_cast<double>(head_dim_));
    auto angles = torch::outer(torch::arange(cap, opts64), inv_freq);  // [cap, hd/2]
    auto c = torch::cos(angles), s = torch::sin(angles);
    cos_ = torch::cat({c, c}, -1).to(device, dtype);
    sin_ = torch::cat({-s, s}, -1).to(device, dtype);
  }
  return {cos_.narrow(0, start, len), sin_.narrow(0, start, len)};
}

// ---- Attention ----------------------------------------------------------------------------------------

AttentionImpl::AttentionImpl(const ModelConfig& cfg, int64_t layer, const ModelOptions& opts) {
  const auto& d = cfg.layers.at(static_cast<size_t>(layer));
  n_heads = d.n_heads;
  n_kv_heads = d.n_kv_heads;
  head_dim = cfg.head_dim;
  const int64_t h = cfg.hidden_size;
  q_proj = register_module("q_proj", Linear(h, n_heads * head_dim, cfg.attention_bias, opts));
  k_proj = register_module("k_proj", Linear(h, n_kv_heads * head_dim, cfg.attention_bias, opts));
  v_proj = register_module("v_proj", Linear(h, n_kv_heads * head_dim, cfg.attention_bias, opts));
  o_proj = register_module("o_proj", Linear(n_heads * head_dim, h, false, opts));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& cos,
                                     const torch::Tensor& sin, int64_t start,
                                     torch::Tensor* cache_k, torch::Tensor* cache_v) {
  const int64_t B = x.size(0), T = x.size(1);
  if (n_heads == 0) {
    // A fully pruned attention block contributes nothing to the residual stream.
    return torch::zeros_like(x);
  }
  const int64_t g = n_heads / n_kv_heads;
  auto q = apply_rope(q_proj(x).view({B, T, n_heads, head_dim}).transpose(1, 2), cos, sin);
  auto k = apply_rope(k_proj(x).view({B, T, n_kv_heads, head_dim}).transpose(1, 2), cos, sin);
  auto v = v_proj(x).view({B, T, n_kv_heads, head_dim}).transpose(1, 2);
  if (cache_k != nullptr) {
    cache_k->narrow(2, start, T).copy_(k);
    cache_v->narrow(2, start, T).copy_(v);
    k = cache_k->narrow(2, 0, start + T);
    v = cache_v->narrow(2, 0, start + T);
  }
  // Query heads that share a kv head are stacked along the row axis, so one bmm per kv head serves
  // the whole group without repeating keys/values: q [B*kv, g, T, D], k/v [B*kv, S, D].
  const int64_t S = start + T;
  auto qg = q.reshape({B * n_kv_heads, g, T, head_dim});
  auto kb = k.reshape({B * n_kv_heads, S, head_dim});
  auto vb = v.reshape({B * n_kv_heads, S, head_dim});
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  const bool low_precision = x.scalar_type() != torch::kFloat32;

  auto out = torch::empty({B * n_kv_heads, g, T, head_dim}, q.options());
  for (int64_t t0 = 0; t0 < T; t0 += kQueryBlock) {
    const int64_t tb = std::min(kQueryBlock, T - t0);
    const int64_t keys = start + t0 + tb;  // causal: later keys are never visible to this block
    auto qb = qg.narrow(2, t0, tb).reshape({B * n_kv_heads, g * tb, head_dim});
    auto kt = kb.narrow(1, 0, keys).transpose(1, 2);
    torch::Tensor scores;
    if (tb > 1) {
      // Row (j, i) is query position start+t0+i; key s is hidden when s > start+t0+i.
      auto mask = torch::full({tb, keys}, -std::numeric_limits<float>::infinity(), q.options())
                      .triu(start + t0 + 1)
                      .repeat({g, 1});
      scores = torch::baddbmm(mask, qb, kt, /*beta=*/1.0, /*alpha=*/scale);
    } else {
      scores = torch::bmm(qb, kt).mul_(scale);
    }
    auto probs = low_precision ? torch::softmax(scores.to(torch::kFloat32), -1).to(q.scalar_type())
                               : torch::softmax(scores, -1);
    auto ob = torch::bmm(probs, vb.narrow(1, 0, keys));  // [B*kv, g*tb, D]
    if (tb == T) {
      out = ob.view({B * n_kv_heads, g, T, head_dim});
    } else {
      out.narrow(2, t0, tb).copy_(ob.view({B * n_kv_heads, g, tb, head_dim}));
    }
  }
  // [B*kv, g, T, D] → [B, heads, T, D] → [B, T, heads*D]
  auto merged = out.view({B, n_heads, T, head_dim}).transpose(1, 2).reshape({B, T, n_heads * head_dim});
  return o_proj(merged);
}

// ---- MLP and decoder layer ----------------------------------------------------------------------------

MlpImpl::MlpImpl(int64_t hidden, int64_t intermediate, const ModelOptions& opts) {
  gate_proj = register_module("gate_proj", Linear(hidden, intermediate, false, opts));
  up_proj = register_module("up_proj", Linear(hidden, intermediate, false, opts));
  down_proj = register_module("down_proj", Linear(intermediate, hidden, false, opts));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  if (gate_proj->weight.size(0) == 0) return torch::zeros_like(x);
  return down_proj(torch::silu(gate_proj(x)).mul_(up_proj(x)));
}

DecoderLayerImpl::DecoderLayerImpl(const ModelConfig& cfg, int64_t layer,
                                   const ModelOptions& opts) {
  self_attn = register_module("self_attn", Attention(cfg, layer, opts));
  mlp = register_module(
      "mlp", Mlp(cfg.hidden_size, cfg.layers.at(static_cast<size_t>(layer)).intermediate_size, opts));
  input_layernorm =
      register_module("input_layernorm", RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, opts));
  post_attention_layernorm =
      register_module("post_attention_layernorm", RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, opts));
}

torch::Tensor DecoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& cos,
                                        const torch::Tensor& sin, int64_t start,
                                        torch::Tensor* cache_k, torch::Tensor* cache_v) {
  auto h = x + self_attn(input_layernorm(x), cos, sin, start, cache_k, cache_v);
  return h + mlp(post_attention_layernorm(h));
}

// ---- The model ------------------------------------------------------------------------------------------

LlamaBodyImpl::LlamaBodyImpl(const ModelConfig& cfg, const ModelOptions& opts) {
  embed_tokens = register_module("embed_tokens", Embedding(cfg.vocab_size, cfg.hidden_size, opts));
  auto list = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < cfg.n_layers(); ++i) {
    layers.push_back(DecoderLayer(cfg, i, opts));
    list->push_back(layers.back());
  }
  norm = register_module("norm", RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, opts));
}

LlamaModelImpl::LlamaModelImpl(const ModelConfig& cfg, const ModelOptions& opts)
    : cfg_(cfg), opts_(opts), rotary_(cfg.head_dim, cfg.rope_theta) {
  cfg_.validate("model configuration");
  model = register_module("model", LlamaBody(cfg_, opts_));
  if (!cfg_.tie_word_embeddings)
    lm_head = register_module("lm_head", Linear(cfg_.hidden_size, cfg_.vocab_size, false, opts_));
}

torch::Tensor LlamaModelImpl::hidden_states(const torch::Tensor& tokens, KVCache* cache) {
  if (tokens.dim() != 2) throw UsageError("tokens must have shape [batch, time]");
  const int64_t T = tokens.size(1);
  const int64_t start = cache ? cache->length : 0;
  if (cache && start + T > cache->capacity)
    throw UsageError("KV cache full: " + std::to_string(start + T) + " positions needed, capacity " +
                     std::to_string(cache->capacity));
  auto [cos, sin] = rotary_.get(start, T, opts_.device, opts_.dtype);
  auto h = model->embed_tokens(tokens.to(opts_.device));
  for (size_t i = 0; i < model->layers.size(); ++i) {
    h = model->layers[i](h, cos, sin, start, cache ? &cache->k[i] : nullptr,
                         cache ? &cache->v[i] : nullptr);
  }
  if (cache) cache->length += T;
  return model->norm(h);
}

torch::Tensor LlamaModelImpl::logits(const torch::Tensor& hidden) {
  const auto& w = lm_head ? lm_head->weight : model->embed_tokens->weight;
  return torch::linear(hidden, w).to(torch::kFloat32);
}

torch::Tensor LlamaModelImpl::forward(const torch::Tensor& tokens, KVCache* cache) {
  return logits(hidden_states(tokens, cache));
}

KVCache LlamaModelImpl::make_cache(int64_t batch, int64_t capacity) const {
  KVCache c;
  c.capacity = capacity;
  auto o = tensor_options(opts_);
  for (const auto& d : cfg_.layers) {
    c.k.push_back(torch::zeros({batch, d.n_kv_heads, capacity, cfg_.head_dim}, o));
    c.v.push_back(torch::zeros({batch, d.n_kv_heads, capacity, cfg_.head_dim}, o));
  }
  return c;
}

void LlamaModelImpl::init_random(uint64_t seed, double std) {
  torch::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (auto& p : named_parameters(true)) {
    const auto& name = p.key();
    auto& t = p.value();
    auto cpu = torch::empty(t.sizes(), torch::TensorOptions().dtype(torch::kFloat32));
    // Norm gains start at one; everything else, biases included (so a lost bias is noticed), is
    // drawn from N(0, std).
    if (name.find("norm") != std::string::npos) {
      cpu.fill_(1.0);
    } else {
      cpu.normal_(0.0, std, gen);
    }
    t.copy_(cpu);
  }
}

std::map<std::string, torch::Tensor> LlamaModelImpl::state_dict() const {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : named_parameters(true)) out.emplace(p.key(), p.value());
  return out;
}

torch::Tensor LlamaModelImpl::parameter(const std::string& name) const {
  const auto* t = named_parameters(true).find(name);
  if (t == nullptr) throw InputError("model has no parameter named '" + name + "'");
  return *t;
}

int64_t LlamaModelImpl::num_parameters() const {
  int64_t n = 0;
  for (const auto& p : parameters(true)) n += p.numel();
  return n;
}

int64_t LlamaModelImpl::weight_bytes() const {
  int64_t n = 0;
  for (const auto& p : parameters(true)) n += p.numel() * static_cast<int64_t>(p.element_size());
  return n;
}

}  // namespace lorashear
