#include "lorashear/model/llama.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>

#include <cmath>

#include "graph/recorder.h"
#include "lorashear/errors.h"
#include "lorashear/model/interrupt.h"
#include "model/attention_kernel.h"

namespace lorashear {

namespace {

using detail::TraceRecorder;

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
    case torch::kFloat32:
      return "float32";
    case torch::kFloat16:
      return "float16";
    case torch::kBFloat16:
      return "bfloat16";
    default:
      return std::string(c10::toString(dtype));
  }
}

// ---- Building blocks
// --------------------------------------------------------------------------------

LinearImpl::LinearImpl(int64_t in, int64_t out, bool with_bias, const ModelOptions& opts) {
  weight = register_parameter("weight", torch::empty({out, in}, tensor_options(opts)));
  if (with_bias) bias = register_parameter("bias", torch::empty({out}, tensor_options(opts)));
}

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  auto* rec = TraceRecorder::active();
  auto y = torch::linear(x, weight, bias);
  if (rec) rec->op(kind, path, {x}, {y}, {{path + ".weight", weight}, {path + ".bias", bias}});
  if (!lora_A || lora_merged) return y;
  // No dropout while tracing: the recorded graph is the inference graph.
  const auto xin =
      lora_dropout > 0 && is_training() && !rec ? torch::dropout(x, lora_dropout, true) : x;
  if (xin.scalar_type() != lora_A->weight.scalar_type()) {
    // bf16 / fp16 base weights with fp32 factors: computed in the activations' dtype with the
    // factors cast (autograd carries the gradient back to the fp32 masters), as mixed-precision
    // training does; no fp32 copy of the activations is kept.
    const auto dt = xin.scalar_type();
    auto update = torch::linear(torch::linear(xin, lora_A->weight.to(dt)), lora_B->weight.to(dt));
    return y.add_(update, lora_scaling);
  }
  auto update = lora_B->forward(lora_A->forward(xin));
  if (!rec) return y.add_(update, lora_scaling);
  auto scaled = update * lora_scaling;
  rec->op("scale", path, {update}, {scaled}, {}, "lora");
  auto out = y + scaled;
  rec->op("add", path, {y, scaled}, {out}, {}, "lora");
  return out;
}

RMSNormImpl::RMSNormImpl(int64_t dim, double eps_, const ModelOptions& opts) : eps(eps_) {
  weight = register_parameter("weight", torch::empty({dim}, tensor_options(opts)));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  auto xf = x.to(torch::kFloat32);
  auto inv = torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true).add_(eps));
  auto y = (xf * inv).to(x.scalar_type()) * weight;
  if (auto* rec = TraceRecorder::active())
    rec->op("rms_norm", path, {x}, {y}, {{path + ".weight", weight}});
  return y;
}

EmbeddingImpl::EmbeddingImpl(int64_t vocab, int64_t dim, const ModelOptions& opts) {
  weight = register_parameter("weight", torch::empty({vocab, dim}, tensor_options(opts)));
}

torch::Tensor EmbeddingImpl::forward(const torch::Tensor& ids) {
  torch::Tensor y;
  if (weight.is_meta()) {
    // The meta device has no embedding kernel; the shape rule is ids.shape + [dim].
    auto shape = ids.sizes().vec();
    shape.push_back(weight.size(1));
    y = torch::empty(shape, weight.options());
  } else {
    y = torch::embedding(weight, ids);
  }
  if (auto* rec = TraceRecorder::active())
    rec->op("embedding", path, {ids}, {y}, {{path + ".weight", weight}});
  return y;
}

std::pair<torch::Tensor, torch::Tensor> Rotary::build(int64_t positions, int64_t seq_len) const {
  // Tables built under InferenceMode (an evaluation) would be inference tensors, which a later
  // training forward cannot save for backward; build them as normal tensors.
  c10::InferenceMode normal_tensors(false);
  const auto f = rope_frequencies(head_dim_, theta_, scaling_, max_positions_, seq_len);
  // Angles in float64 so long contexts keep precision; the caller converts to its dtype.
  auto opts64 = torch::TensorOptions().dtype(torch::kFloat64);
  auto inv_freq = torch::tensor(f.inv_freq, opts64);
  auto angles = torch::outer(torch::arange(positions, opts64), inv_freq);  // [P, hd/2]
  auto c = torch::cos(angles) * f.attention_factor, s = torch::sin(angles) * f.attention_factor;
  return {torch::cat({c, c}, -1), torch::cat({-s, s}, -1)};
}

std::pair<torch::Tensor, torch::Tensor> Rotary::get(int64_t start, int64_t len,
                                                    torch::Device device, torch::Dtype dtype) {
  const int64_t need = start + len;
  if (scaling_.type == "dynamic" && need > max_positions_) {
    // The frequencies depend on this pass's length: never cached.
    auto [c, s] = build(need, need);
    return {c.narrow(0, start, len).to(device, dtype), s.narrow(0, start, len).to(device, dtype)};
  }
  if (!cos_.defined() || cos_.size(0) < need || cos_.device() != device ||
      cos_.scalar_type() != dtype || (cos_.is_inference() && !c10::InferenceMode::is_enabled())) {
    int64_t cap = 256;
    while (cap < need)
      cap *= 2;
    auto [c, s] = build(cap, 0);
    cos_ = c.to(device, dtype);
    sin_ = s.to(device, dtype);
  }
  return {cos_.narrow(0, start, len), sin_.narrow(0, start, len)};
}

// ---- Attention
// ----------------------------------------------------------------------------------------

AttentionImpl::AttentionImpl(const ModelConfig& cfg, int64_t layer, const ModelOptions& opts) {
  const auto& d = cfg.layers.at(static_cast<size_t>(layer));
  n_heads = d.n_heads;
  n_kv_heads = d.n_kv_heads;
  head_dim = cfg.head_dim;
  sliding_window = cfg.sliding_window;
  const int64_t h = cfg.hidden_size;
  q_proj = register_module("q_proj", Linear(h, n_heads * head_dim, cfg.attention_bias, opts));
  k_proj = register_module("k_proj", Linear(h, n_kv_heads * head_dim, cfg.attention_bias, opts));
  v_proj = register_module("v_proj", Linear(h, n_kv_heads * head_dim, cfg.attention_bias, opts));
  o_proj = register_module("o_proj", Linear(n_heads * head_dim, h, cfg.o_proj_bias(), opts));
  if (cfg.qk_norm) {
    q_norm = register_module("q_norm", RMSNorm(head_dim, cfg.rms_norm_eps, opts));
    k_norm = register_module("k_norm", RMSNorm(head_dim, cfg.rms_norm_eps, opts));
  }
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& cos,
                                     const torch::Tensor& sin, int64_t start,
                                     torch::Tensor* cache_k, torch::Tensor* cache_v) {
  const int64_t B = x.size(0), T = x.size(1);
  auto* rec = TraceRecorder::active();
  if (n_heads == 0) {
    // A fully pruned attention block contributes nothing to the residual stream but o_proj's
    // bias, when it has one.
    auto zeros = torch::zeros_like(x);
    if (o_proj->bias.defined()) zeros = zeros + o_proj->bias;
    if (rec) rec->op("zeros", path, {x}, {zeros});
    return zeros;
  }
  // Token-major layout [B, T, heads, D] throughout: the projections produce it, RoPE keeps it
  // (tables broadcast as [T, 1, D]) and o_proj consumes it, so no transposes are materialised.
  auto cos_t = cos.unsqueeze(1), sin_t = sin.unsqueeze(1);
  auto heads = [&](Linear& proj, int64_t n, const char* tag) {
    auto flat = proj(x);
    auto out = flat.view({B, T, n, head_dim});
    if (rec) rec->op("reshape_heads", path, {flat}, {out}, {}, tag);
    return out;
  };
  auto rope = [&](const torch::Tensor& h, const char* tag) {
    auto out = apply_rope(h, cos_t, sin_t);
    if (rec) rec->op("rope", path, {h, cos, sin}, {out}, {}, tag);
    return out;
  };
  auto q = heads(q_proj, n_heads, "q");
  auto k = heads(k_proj, n_kv_heads, "k");
  if (q_norm) {
    q = q_norm(q);
    k = k_norm(k);
  }
  q = rope(q, "q");
  k = rope(k, "k");
  auto v = heads(v_proj, n_kv_heads, "v");
  if (cache_k != nullptr) {
    // Cache layout [B, kv, capacity, D]; viewed back as [B, S, kv, D].
    cache_k->narrow(2, start, T).copy_(k.transpose(1, 2));
    cache_v->narrow(2, start, T).copy_(v.transpose(1, 2));
    k = cache_k->narrow(2, 0, start + T).transpose(1, 2);
    v = cache_v->narrow(2, 0, start + T).transpose(1, 2);
  }
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  const bool needs_grad = torch::GradMode::is_enabled() &&
                          (q.requires_grad() || k.requires_grad() || v.requires_grad());
  torch::Tensor out;
  if (q.device().is_cpu() && q.scalar_type() == torch::kFloat32 && !needs_grad) {
    out = fused_attention(q, k, v, start, scale);
  } else {
    out = blocked_attention(q, k, v, start, scale);
  }
  if (rec) {
    // The kernels share each kv head among its query heads without copying; the trace shows the
    // equivalent repeat so the coupling of a kv head with its query heads is explicit.
    const int64_t S = k.size(1), g = n_heads / n_kv_heads;
    auto repeat = [&](const torch::Tensor& t, const char* tag) {
      if (g == 1) return t;
      auto r =
          t.unsqueeze(3).expand({B, S, n_kv_heads, g, head_dim}).reshape({B, S, n_heads, head_dim});
      rec->op("repeat_kv", path, {t}, {r}, {}, tag);
      return r;
    };
    auto k_rep = repeat(k, "k");
    auto v_rep = repeat(v, "v");
    rec->op("attention", path, {q, k_rep, v_rep}, {out});
  }
  auto merged = out.reshape({B, T, n_heads * head_dim});
  if (rec) rec->op("merge_heads", path, {out}, {merged});
  return o_proj(merged);
}

torch::Tensor AttentionImpl::fused_attention(const torch::Tensor& q, const torch::Tensor& k,
                                             const torch::Tensor& v, int64_t start, double scale) {
  const int64_t B = q.size(0), T = q.size(1);
  auto qc = q.contiguous();
  auto out = torch::empty({B, T, n_heads, head_dim}, q.options());
  detail::AttentionArgs a{qc.data_ptr<float>(),
                          qc.stride(0),
                          qc.stride(1),
                          qc.stride(2),
                          k.data_ptr<float>(),
                          k.stride(0),
                          k.stride(1),
                          k.stride(2),
                          v.data_ptr<float>(),
                          v.stride(0),
                          v.stride(1),
                          v.stride(2),
                          out.data_ptr<float>(),
                          out.stride(0),
                          out.stride(1),
                          out.stride(2),
                          n_heads,
                          n_kv_heads,
                          head_dim,
                          start,
                          static_cast<float>(scale),
                          sliding_window};
  TORCH_CHECK(k.stride(3) == 1 && v.stride(3) == 1, "attention: head_dim must be contiguous");
  // Work units: (batch, kv head, chunk of query rows); later chunks see more keys, so chunks are
  // small enough for the threads to balance.
  const int64_t chunk = T > 1 ? 32 : 1;
  const int64_t chunks = (T + chunk - 1) / chunk;
  const int64_t units = B * n_kv_heads * chunks;
  at::parallel_for(0, units, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scratch(
        static_cast<size_t>(detail::attention_scratch_floats(start + T, head_dim)));
    for (int64_t u = begin; u < end; ++u) {
      const int64_t c = u % chunks, bh = u / chunks;
      const int64_t t0 = c * chunk, t1 = std::min(T, t0 + chunk);
      detail::attention_rows(a, bh / n_kv_heads, bh % n_kv_heads, t0, t1, scratch.data());
    }
  });
  return out;
}

torch::Tensor AttentionImpl::blocked_attention(const torch::Tensor& q, const torch::Tensor& k,
                                               const torch::Tensor& v, int64_t start,
                                               double scale) {
  // Differentiable path (training, CUDA, half precision). Query heads that share a kv head are
  // stacked along the row axis, so one bmm per kv head serves the whole group without repeating
  // keys/values: q [B*kv, g, T, D], k/v [B*kv, S, D].
  const int64_t B = q.size(0), T = q.size(1), S = k.size(1);
  const int64_t g = n_heads / n_kv_heads;
  auto qg = (q * scale)
                .view({B, T, n_kv_heads, g, head_dim})
                .permute({0, 2, 3, 1, 4})
                .reshape({B * n_kv_heads, g, T, head_dim});
  auto kb = k.permute({0, 2, 1, 3}).reshape({B * n_kv_heads, S, head_dim});
  auto vb = v.permute({0, 2, 1, 3}).reshape({B * n_kv_heads, S, head_dim});
  const bool low_precision = q.scalar_type() != torch::kFloat32;
  // mask[i, s] hides key s from query start+i: later keys, and with a sliding window W the keys
  // s <= start + i - W.
  const float inf = std::numeric_limits<float>::infinity();
  auto mask = torch::full({T, S}, -inf, q.options()).triu(start + 1);
  if (sliding_window > 0)
    mask = mask + torch::full({T, S}, -inf, q.options()).tril(start - sliding_window);
  std::vector<torch::Tensor> blocks;
  for (int64_t t0 = 0; t0 < T; t0 += kQueryBlock) {
    const int64_t tb = std::min(kQueryBlock, T - t0);
    const int64_t keys = start + t0 + tb;  // causal: later keys are never visible to this block
    auto qb = qg.narrow(2, t0, tb).reshape({B * n_kv_heads, g * tb, head_dim});
    auto scores = torch::bmm(qb, kb.narrow(1, 0, keys).transpose(1, 2));
    if (tb > 1 || sliding_window > 0) {
      scores =
          scores.view({B * n_kv_heads, g, tb, keys}) + mask.narrow(0, t0, tb).narrow(1, 0, keys);
      scores = scores.view({B * n_kv_heads, g * tb, keys});
    }
    auto probs = low_precision ? torch::softmax(scores.to(torch::kFloat32), -1).to(q.scalar_type())
                               : torch::softmax(scores, -1);
    blocks.push_back(
        torch::bmm(probs, vb.narrow(1, 0, keys)).view({B * n_kv_heads, g, tb, head_dim}));
  }
  auto out = blocks.size() == 1 ? blocks.front() : torch::cat(blocks, 2);
  // [B*kv, g, T, D] → [B, T, kv*g, D]
  return out.view({B, n_kv_heads, g, T, head_dim})
      .permute({0, 3, 1, 2, 4})
      .reshape({B, T, n_heads, head_dim});
}

// ---- MLP and decoder layer
// ----------------------------------------------------------------------------

MlpImpl::MlpImpl(int64_t hidden, int64_t intermediate, bool bias, const ModelOptions& opts) {
  gate_proj = register_module("gate_proj", Linear(hidden, intermediate, bias, opts));
  up_proj = register_module("up_proj", Linear(hidden, intermediate, bias, opts));
  down_proj = register_module("down_proj", Linear(intermediate, hidden, bias, opts));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  auto* rec = TraceRecorder::active();
  if (gate_proj->weight.size(0) == 0) {
    auto zeros = torch::zeros_like(x);
    if (down_proj->bias.defined()) zeros = zeros + down_proj->bias;
    if (rec) rec->op("zeros", path, {x}, {zeros});
    return zeros;
  }
  if (!rec) return down_proj(torch::silu(gate_proj(x)).mul_(up_proj(x)));
  auto gate = gate_proj(x);
  auto act = torch::silu(gate);
  rec->op("silu", path, {gate}, {act});
  auto up = up_proj(x);
  auto prod = act * up;
  rec->op("mul", path, {act, up}, {prod});
  return down_proj(prod);
}

DecoderLayerImpl::DecoderLayerImpl(const ModelConfig& cfg, int64_t layer,
                                   const ModelOptions& opts) {
  self_attn = register_module("self_attn", Attention(cfg, layer, opts));
  mlp = register_module(
      "mlp", Mlp(cfg.hidden_size, cfg.layers.at(static_cast<size_t>(layer)).intermediate_size,
                 cfg.mlp_bias, opts));
  input_layernorm =
      register_module("input_layernorm", RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, opts));
  post_attention_layernorm =
      register_module("post_attention_layernorm", RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, opts));
}

torch::Tensor DecoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& cos,
                                        const torch::Tensor& sin, int64_t start,
                                        torch::Tensor* cache_k, torch::Tensor* cache_v) {
  auto* rec = TraceRecorder::active();
  auto attn = self_attn(input_layernorm(x), cos, sin, start, cache_k, cache_v);
  auto h = x + attn;
  if (rec) rec->op("add", path, {x, attn}, {h}, {}, "attn");
  auto mlp_out = mlp(post_attention_layernorm(h));
  auto out = h + mlp_out;
  if (rec) rec->op("add", path, {h, mlp_out}, {out}, {}, "mlp");
  return out;
}

// ---- The model
// ------------------------------------------------------------------------------------------

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
    : cfg_(cfg), opts_(opts), rotary_(cfg) {
  cfg_.validate("model configuration");
  model = register_module("model", LlamaBody(cfg_, opts_));
  if (!cfg_.tie_word_embeddings)
    lm_head = register_module("lm_head", Linear(cfg_.hidden_size, cfg_.vocab_size, false, opts_));
  assign_paths();
}

void LlamaModelImpl::assign_paths() {
  for (const auto& item : named_modules("", /*include_self=*/false))
    if (auto* m = dynamic_cast<TracedModule*>(item.value().get())) m->path = item.key();
}

namespace {
thread_local const TaskContext* current_interrupt = nullptr;
}

ForwardInterrupt::ForwardInterrupt(const TaskContext* ctx) : previous_(current_interrupt) {
  current_interrupt = ctx;
}

ForwardInterrupt::~ForwardInterrupt() {
  current_interrupt = previous_;
}

const TaskContext* ForwardInterrupt::current() {
  return current_interrupt;
}

namespace {

// A decoder layer whose backward runs its forward again (activation checkpointing): forward keeps
// only the input; backward recomputes the layer with gradients on, under the autocast state and
// the random-number state of the first pass (LoRA dropout draws the same mask), and back-propagates
// through it — reentrant, as torch.utils.checkpoint's reentrant variant: the layer's parameters
// get their gradients in .grad.
class CheckpointedLayer : public torch::autograd::Function<CheckpointedLayer> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x,
                               DecoderLayerImpl* layer, torch::Tensor cos, torch::Tensor sin) {
    ctx->save_for_backward({x});
    ctx->saved_data["cos"] = cos;
    ctx->saved_data["sin"] = sin;
    ctx->saved_data["layer"] = reinterpret_cast<int64_t>(layer);
    ctx->saved_data["autocast"] = at::autocast::is_enabled();
    ctx->saved_data["rng"] = at::detail::getDefaultCPUGenerator().get_state();
    torch::NoGradGuard no_grad;
    return layer->forward(x, cos, sin, 0, nullptr, nullptr);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    auto* layer = reinterpret_cast<DecoderLayerImpl*>(ctx->saved_data["layer"].toInt());
    auto x = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    const auto cos = ctx->saved_data["cos"].toTensor(), sin = ctx->saved_data["sin"].toTensor();
    auto generator = at::detail::getDefaultCPUGenerator();
    const auto rng_now = generator.get_state();
    generator.set_state(ctx->saved_data["rng"].toTensor());
    torch::Tensor y;
    {
      torch::AutoGradMode grad_on(true);
      const bool autocast_before = at::autocast::is_enabled();
      at::autocast::set_enabled(ctx->saved_data["autocast"].toBool());
      y = layer->forward(x, cos, sin, 0, nullptr, nullptr);
      at::autocast::set_enabled(autocast_before);
    }
    generator.set_state(rng_now);
    torch::autograd::backward({y}, {grad[0]});
    return {x.grad(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor LlamaModelImpl::hidden_states(const torch::Tensor& tokens, KVCache* cache) {
  if (tokens.dim() != 2) throw UsageError("tokens must have shape [batch, time]");
  const int64_t T = tokens.size(1);
  const int64_t start = cache ? cache->length : 0;
  if (cache && start + T > cache->capacity)
    throw UsageError("KV cache full: " + std::to_string(start + T) +
                     " positions needed, capacity " + std::to_string(cache->capacity));
  auto [cos, sin] = rotary_.get(start, T, opts_.device, opts_.dtype);
  if (auto* rec = TraceRecorder::active()) rec->op("rotary", "model.rotary_emb", {}, {cos, sin});
  auto h = model->embed_tokens(tokens.to(opts_.device).contiguous());
  const TaskContext* interrupt = ForwardInterrupt::current();
  for (size_t i = 0; i < model->layers.size(); ++i) {
    if (interrupt != nullptr) interrupt->check();
    if (checkpoint_activations_ && cache == nullptr && torch::GradMode::is_enabled() &&
        TraceRecorder::active() == nullptr) {
      // The layer's adapters need a gradient even where its input needs none (layer 0, after the
      // frozen embeddings): autograd only calls backward when an input requires grad.
      if (!h.requires_grad()) h = h.detach().requires_grad_(true);
      h = CheckpointedLayer::apply(h, model->layers[i].get(), cos, sin);
    } else {
      h = model->layers[i](h, cos, sin, start, cache ? &cache->k[i] : nullptr,
                           cache ? &cache->v[i] : nullptr);
    }
  }
  if (cache) cache->length += T;
  return model->norm(h);
}

torch::Tensor LlamaModelImpl::logits(const torch::Tensor& hidden) {
  const auto& w = lm_head ? lm_head->weight : model->embed_tokens->weight;
  auto out = torch::linear(hidden, w).to(torch::kFloat32);
  if (auto* rec = TraceRecorder::active())
    rec->op("linear", "lm_head", {hidden}, {out},
            {{lm_head ? "lm_head.weight" : "model.embed_tokens.weight", w}});
  return out;
}

torch::Tensor LlamaModelImpl::forward(const torch::Tensor& tokens, KVCache* cache) {
  return logits(hidden_states(tokens, cache));
}

void LlamaModelImpl::reserve_positions(int64_t positions) {
  // Dynamic scaling computes passes beyond max_position_embeddings afresh each time; only the
  // tables up to there are cached (and could otherwise grow under a concurrent forward).
  if (cfg_.rope_scaling.type == "dynamic")
    positions = std::min(positions, cfg_.max_position_embeddings);
  if (positions > 0) rotary_.get(0, positions, opts_.device, opts_.dtype);
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

namespace {
bool is_lora_name(const std::string& name) {
  return name.find(".lora_A.") != std::string::npos || name.find(".lora_B.") != std::string::npos;
}
}  // namespace

std::map<std::string, torch::Tensor> LlamaModelImpl::state_dict() const {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : named_parameters(true))
    if (!is_lora_name(p.key())) out.emplace(p.key(), p.value());
  return out;
}

std::map<std::string, torch::Tensor> LlamaModelImpl::all_parameters() const {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : named_parameters(true))
    out.emplace(p.key(), p.value());
  return out;
}

torch::Tensor LlamaModelImpl::parameter(const std::string& name) const {
  const auto params = named_parameters(true);  // the dict owns the entries `find` points into
  const auto* t = params.find(name);
  if (t == nullptr) throw InputError("model has no parameter named '" + name + "'");
  return *t;
}

int64_t LlamaModelImpl::num_parameters() const {
  int64_t n = 0;
  for (const auto& p : parameters(true))
    n += p.numel();
  return n;
}

int64_t LlamaModelImpl::weight_bytes() const {
  int64_t n = 0;
  for (const auto& p : parameters(true))
    n += p.numel() * static_cast<int64_t>(p.element_size());
  return n;
}

}  // namespace lorashear
