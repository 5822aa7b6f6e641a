// GGUF v3 export for llama.cpp: header, metadata, tensor infos, then the aligned data written
// tensor by tensor in row chunks, so a converted (or quantised, or LoRA-merged) copy of a whole
// large tensor never exists in memory.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>

#include "io/gguf_types.h"
#include "io/io_internal.h"
#include "lorashear/errors.h"
#include "lorashear/io/gguf.h"
#include "lorashear/model/llama.h"
#include "lorashear/tokenizer/tokenizer.h"

namespace lorashear {

using namespace io::gguf;

GgufDtype parse_gguf_dtype(const std::string& name) {
  if (name == "f32" || name == "fp32" || name == "float32") return GgufDtype::F32;
  if (name == "f16" || name == "fp16" || name == "float16") return GgufDtype::F16;
  if (name == "bf16" || name == "bfloat16") return GgufDtype::BF16;
  if (name == "q8_0" || name == "q8") return GgufDtype::Q8_0;
  throw UsageError("unknown GGUF dtype '" + name + "' (expected f32, f16, bf16 or q8_0)");
}

std::string gguf_dtype_name(GgufDtype dtype) {
  switch (dtype) {
    case GgufDtype::F32:
      return "f32";
    case GgufDtype::F16:
      return "f16";
    case GgufDtype::BF16:
      return "bf16";
    case GgufDtype::Q8_0:
      return "q8_0";
  }
  return "?";
}

namespace {

// llama.cpp drops a layer's attention output when its feed-forward width is 0, so a removed MLP is
// written with width 1: zero gate/up rows and a zero down column add exactly nothing.
int64_t written_ffn(int64_t width) {
  return std::max<int64_t>(width, 1);
}

}  // namespace

std::string gguf_architecture(const ModelConfig& cfg) {
  // llama.cpp's qwen2 / qwen3 take one size for every layer (see gguf_unsupported_reason).
  if (cfg.model_type == "qwen2" || cfg.model_type == "qwen3") return cfg.model_type;
  for (const auto& d : cfg.layers) {
    const auto& f = cfg.layers.front();
    if (d.n_heads != f.n_heads || d.n_kv_heads != f.n_kv_heads ||
        written_ffn(d.intermediate_size) != written_ffn(f.intermediate_size))
      return "deci";
  }
  return "llama";
}

std::string gguf_unsupported_reason(const ModelConfig& cfg) {
  if (cfg.layers.empty()) return "the model has no layers";
  if (cfg.layers.front().n_heads == 0)
    return "layer 0 has no attention heads left, and llama.cpp aborts on such a file (a later "
           "layer without attention is fine): keep at least one kv group in layer 0";
  const bool qwen = cfg.model_type == "qwen2" || cfg.model_type == "qwen3";
  if (qwen && !cfg.uniform_layers())
    return "llama.cpp's " + cfg.model_type +
           " architecture has one size for every layer, and deci (its LLaMA with per-layer "
           "sizes) has no " +
           (cfg.model_type == "qwen2" ? std::string("q/k/v biases") : "q/k norms") +
           ": prune with the same size in every layer (--uniform) to run it in llama.cpp; this "
           "shape is for this project only";
  if (cfg.model_type == "qwen3" && cfg.attention_bias)
    return "llama.cpp's qwen3 has no attention biases";
  if (!qwen && cfg.attention_bias)
    return "attention biases on a LLaMA model are not written to GGUF: llama.cpp's llama and "
           "deci architectures size the query bias from the hidden size";
  if (cfg.mlp_bias) return "MLP biases (mlp_bias) are not written to GGUF";
  if (cfg.rope_scaling.type == "dynamic") return "llama.cpp has no dynamic (NTK) RoPE scaling";
  if (cfg.rope_scaling.type == "yarn") return "YaRN RoPE scaling is not written to GGUF yet";
  for (size_t i = 0; i < cfg.layers.size(); ++i) {
    const auto& d = cfg.layers[i];
    if (d.n_kv_heads > 0 && d.n_heads % d.n_kv_heads != 0)
      return "layer " + std::to_string(i) + ": query heads are not a multiple of kv heads";
  }
  return {};
}

std::string LoadTarget::text() const {
  if (ok) return tool + " \u2713" + (detail.empty() ? "" : " (" + detail + ")");
  return tool + ": " + detail;
}

std::vector<LoadTarget> load_targets(const ModelConfig& cfg) {
  std::vector<LoadTarget> out;
  const auto why = gguf_unsupported_reason(cfg);
  if (why.empty())
    out.push_back({"llama.cpp", true, gguf_architecture(cfg)});
  else
    out.push_back({"llama.cpp", false, why});
  if (cfg.uniform_layers())
    out.push_back({"transformers / vLLM", true, ""});
  else
    out.push_back({"transformers / vLLM", false, "needs the same size in every layer"});
  return out;
}

namespace {

// The metadata section, built in memory (it is small next to the tensors).
class Meta {
 public:
  void str(const std::string& key, const std::string& v) {
    begin(key, kString);
    put_str(v);
  }
  void u32(const std::string& key, int64_t v) {
    begin(key, kU32);
    put(checked<uint32_t>(key, v));
  }
  void f32(const std::string& key, double v) {
    begin(key, kF32);
    put(static_cast<float>(v));
  }
  void boolean(const std::string& key, bool v) {
    begin(key, kBool);
    put(static_cast<uint8_t>(v ? 1 : 0));
  }
  void i32_array(const std::string& key, const std::vector<int64_t>& v) {
    array(key, kI32, v.size());
    for (const auto x : v)
      put(checked<int32_t>(key, x));
  }
  void f32_array(const std::string& key, const std::vector<float>& v) {
    array(key, kF32, v.size());
    for (const auto x : v)
      put(x);
  }
  void str_array(const std::string& key, const std::vector<std::string>& v) {
    array(key, kString, v.size());
    for (const auto& x : v)
      put_str(x);
  }
  const std::string& bytes() const { return buf_; }
  uint64_t count() const { return n_; }

  template <typename T>
  void put(T v) {
    buf_.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  void put_str(const std::string& s) {
    put(static_cast<uint64_t>(s.size()));
    buf_ += s;
  }

 private:
  template <typename T>
  static T checked(const std::string& key, int64_t v) {
    if (v < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
        v > static_cast<int64_t>(std::numeric_limits<T>::max()))
      throw UsageError("GGUF metadata '" + key + "': " + std::to_string(v) + " is out of range");
    return static_cast<T>(v);
  }
  void begin(const std::string& key, uint32_t type) {
    put_str(key);
    put(type);
    ++n_;
  }
  void array(const std::string& key, uint32_t elem, size_t n) {
    begin(key, kArray);
    put(elem);
    put(static_cast<uint64_t>(n));
  }
  std::string buf_;
  uint64_t n_ = 0;
};

// Rows [r0, r0 + n) of a tensor as float32 on the CPU, [n, cols], already in GGUF row order.
using RowReader = std::function<torch::Tensor(int64_t r0, int64_t n)>;

struct Planned {
  std::string name;
  int64_t rows = 0, cols = 0;  // torch order; a 1-D tensor is rows = 1, cols = n
  bool matrix = false;
  uint32_t type = kTypeF32;
  int64_t row_unit = 1;  // chunks hold whole RoPE heads
  RowReader read;
  uint64_t offset = 0, nbytes = 0;
};

uint64_t encoded_bytes(uint32_t type, int64_t numel) {
  const auto n = static_cast<uint64_t>(numel);
  switch (type) {
    case kTypeF16:
    case kTypeBF16:
      return 2 * n;
    case kTypeQ8_0:
      return n / kQ8Block * (2 + kQ8Block);
    default:
      return 4 * n;
  }
}

// llama.cpp's quantize_row_q8_0_ref: per block d = max|x| / 127 (stored as f16), q = round(x / d)
// with rounding half away from zero (roundf), quantised with the f32 scale.
torch::Tensor quantize_q8_0(const torch::Tensor& rows) {
  auto x = rows.reshape({-1, kQ8Block});
  auto d = x.abs().amax(1, true) / 127.0f;
  auto inv = torch::where(d > 0, d.reciprocal(), torch::zeros_like(d));
  auto v = x * inv;
  auto q = (v.sign() * (v.abs() + 0.5f).floor()).clamp(-127, 127).to(torch::kInt8);
  auto scale = d.to(torch::kFloat16).contiguous().view(torch::kUInt8);  // [blocks, 2]
  return torch::cat({scale, q.contiguous().view(torch::kUInt8)}, 1).contiguous();
}

torch::Tensor encode(const torch::Tensor& rows, uint32_t type) {
  switch (type) {
    case kTypeF16:
      return rows.to(torch::kFloat16).contiguous();
    case kTypeBF16:
      return rows.to(torch::kBFloat16).contiguous();
    case kTypeQ8_0:
      return quantize_q8_0(rows);
    default:
      return rows.contiguous();
  }
}

// Interleaved-pair RoPE order (llama.cpp) from rotate-half (Hugging Face), within each head:
// GGUF row 2i + j of a head = HF row j * hd/2 + i. The inverse of the loaders' permutation.
torch::Tensor to_rope_pairs(const torch::Tensor& rows, int64_t head_dim) {
  const int64_t n = rows.size(0), cols = rows.size(1);
  return rows.view({n / head_dim, 2, head_dim / 2, cols}).transpose(1, 2).reshape({n, cols});
}

RowReader plain_rows(torch::Tensor t) {
  return [t](int64_t r0, int64_t n) {
    auto m = t.dim() == 1 ? t.view({1, t.size(0)}) : t;
    return m.narrow(0, r0, n).to(torch::kCPU, torch::kFloat32);
  };
}

// The weight a linear layer computes with: an attached, unmerged adapter is merged on the fly.
RowReader linear_rows(const LinearImpl& lin, int64_t rope_head_dim) {
  torch::Tensor w = lin.weight, a, b;
  double s = 0;
  if (lin.lora_A && lin.lora_B && !lin.lora_merged) {
    a = lin.lora_A->weight;
    b = lin.lora_B->weight;
    s = lin.lora_scaling;
  }
  return [w, a, b, s, rope_head_dim](int64_t r0, int64_t n) {
    torch::NoGradGuard no_grad;
    auto rows = w.narrow(0, r0, n).to(torch::kCPU, torch::kFloat32);
    if (a.defined()) {
      auto delta = torch::matmul(b.narrow(0, r0, n).to(torch::kCPU, torch::kFloat32),
                                 a.to(torch::kCPU, torch::kFloat32));
      rows = rows + delta * s;
    }
    return rope_head_dim > 0 ? to_rope_pairs(rows, rope_head_dim) : rows;
  };
}

RowReader zero_rows(int64_t cols) {
  return [cols](int64_t, int64_t n) { return torch::zeros({n, cols}); };
}

}  // namespace

GgufSaveReport save_gguf(const LlamaModelImpl& model, const Tokenizer* tokenizer,
                         const std::string& path, const GgufSaveOptions& opts,
                         const TaskContext* ctx) {
  const ModelConfig& cfg = model.config();
  if (tokenizer == nullptr)
    throw UsageError(path +
                     ": the model has no tokenizer, and llama.cpp needs one in the GGUF file "
                     "(pass --tokenizer FILE)");
  if (const auto why = gguf_unsupported_reason(cfg); !why.empty())
    throw UsageError(path + ": cannot write GGUF for llama.cpp: " + why);
  const int64_t n_layers = cfg.n_layers();
  const std::string arch = gguf_architecture(cfg);
  const bool deci = arch == "deci";
  // llama.cpp's qwen2/qwen3 rotate halves as Hugging Face does; its llama/deci rotate pairs.
  const bool neox = arch == "qwen2" || arch == "qwen3";

  GgufSaveReport report;
  report.architecture = arch;
  report.dtype = opts.dtype;
  const uint32_t matrix_type = opts.dtype == GgufDtype::F16    ? kTypeF16
                               : opts.dtype == GgufDtype::BF16 ? kTypeBF16
                               : opts.dtype == GgufDtype::Q8_0 ? kTypeQ8_0
                                                               : kTypeF32;

  // --- metadata
  Meta meta;
  const std::string a = arch + ".";
  meta.str("general.architecture", arch);
  meta.str("general.name", opts.name.empty() ? "lorashear" : opts.name);
  meta.u32("general.file_type", opts.dtype == GgufDtype::F16    ? kFileMostlyF16
                                : opts.dtype == GgufDtype::BF16 ? kFileMostlyBF16
                                : opts.dtype == GgufDtype::Q8_0 ? kFileMostlyQ8_0
                                                                : kFileAllF32);
  if (opts.dtype == GgufDtype::Q8_0) meta.u32("general.quantization_version", 2);
  meta.u32(a + "context_length", cfg.max_position_embeddings);
  meta.u32(a + "embedding_length", cfg.hidden_size);
  meta.u32(a + "block_count", n_layers);
  std::vector<int64_t> heads, kv_heads, ffn;
  for (int64_t l = 0; l < n_layers; ++l) {
    const auto& d = cfg.layers[static_cast<size_t>(l)];
    heads.push_back(d.n_heads);
    kv_heads.push_back(d.n_kv_heads);
    ffn.push_back(written_ffn(d.intermediate_size));
    if (d.intermediate_size == 0)
      report.notes.push_back("layer " + std::to_string(l) +
                             ": MLP removed; written with width 1 and a zero ffn_down column "
                             "(exact), since llama.cpp drops the attention output of a layer "
                             "with width 0");
  }
  if (deci) {
    meta.i32_array(a + "attention.head_count", heads);
    meta.i32_array(a + "attention.head_count_kv", kv_heads);
    meta.i32_array(a + "feed_forward_length", ffn);
  } else {
    meta.u32(a + "attention.head_count", heads.front());
    meta.u32(a + "attention.head_count_kv", kv_heads.front());
    meta.u32(a + "feed_forward_length", ffn.front());
  }
  // Without these llama.cpp takes the head size as embedding_length / head_count[0], wrong once
  // layer 0 lost heads.
  meta.u32(a + "attention.key_length", cfg.head_dim);
  meta.u32(a + "attention.value_length", cfg.head_dim);
  meta.u32(a + "rope.dimension_count", cfg.head_dim);
  meta.f32(a + "rope.freq_base", cfg.rope_theta);
  meta.f32(a + "attention.layer_norm_rms_epsilon", cfg.rms_norm_eps);
  meta.u32(a + "vocab_size", cfg.vocab_size);
  const auto& rs = cfg.rope_scaling;
  if (rs.type == "linear") {
    meta.str(a + "rope.scaling.type", "linear");
    meta.f32(a + "rope.scaling.factor", rs.factor);
  }
  if (rs.enabled()) {
    // Our exact parameters, for reading the file back (llama.cpp ignores the key).
    meta.str("lorashear.rope_scaling", cfg.to_hf_json()["rope_scaling"].dump());
  }
  if (cfg.sliding_window > 0)
    report.notes.push_back("sliding window of " + std::to_string(cfg.sliding_window) +
                           " positions: llama.cpp's " + arch +
                           " attends to the whole context, the same up to the window");

  // Tokenizer. Byte-level BPE (tokenizer.json of Llama 3, Qwen, SmolLM) → llama.cpp's "gpt2" model
  // with its merges, the pre-tokenizer named as llama.cpp names it, and the whole tokenizer.json
  // (GGUF's tokenizer.huggingface.json) for an exact reading back. Anything else → SentencePiece's
  // vocabulary as the "llama" model. Embedding rows beyond the vocabulary (padding) get unused
  // placeholder pieces, as llama.cpp's converter writes.
  const bool gpt2 = tokenizer->backend() == Tokenizer::Backend::HfBpe &&
                    tokenizer->kind().find("byte-level") != std::string::npos;
  auto vocab = tokenizer->vocab();
  std::vector<std::string> pieces;
  std::vector<float> scores;
  std::vector<int64_t> types;
  for (const auto& e : vocab) {
    pieces.push_back(e.piece);
    scores.push_back(e.score);
    types.push_back(static_cast<int64_t>(e.type));
  }
  for (int64_t i = static_cast<int64_t>(vocab.size()); i < cfg.vocab_size; ++i) {
    pieces.push_back("[PAD" + std::to_string(i) + "]");
    scores.push_back(0.0f);
    types.push_back(static_cast<int64_t>(VocabEntry::Type::Unused));
  }
  if (gpt2) {
    const std::string pre = tokenizer->pre_tokenizer_name();
    if (pre.empty())
      throw UsageError(path +
                       ": the tokenizer's pre-tokenizer regex is not one llama.cpp knows by name "
                       "(tokenizer.ggml.pre), so llama.cpp would split text differently");
    meta.str("tokenizer.ggml.model", "gpt2");
    meta.str("tokenizer.ggml.pre", pre);
    meta.str_array("tokenizer.ggml.tokens", pieces);
    meta.i32_array("tokenizer.ggml.token_type", types);
    std::vector<std::string> merges;
    for (const auto& [l, r] : tokenizer->merges())
      merges.push_back(l + " " + r);
    meta.str_array("tokenizer.ggml.merges", merges);
    if (opts.embed_tokenizer_json)
      for (const auto& [name, text] : tokenizer->hf_files())
        if (name == "tokenizer.json") meta.str("tokenizer.huggingface.json", text);
  } else {
    meta.str("tokenizer.ggml.model", "llama");
    meta.str("tokenizer.ggml.pre", "default");
    meta.str_array("tokenizer.ggml.tokens", pieces);
    meta.f32_array("tokenizer.ggml.scores", scores);
    meta.i32_array("tokenizer.ggml.token_type", types);
  }
  const int64_t n_vocab = cfg.vocab_size;
  auto special = [&](const char* key, int64_t id, int64_t fallback) {
    const int64_t v = id >= 0 && id < n_vocab ? id : fallback;
    if (v >= 0 && v < n_vocab) meta.u32(key, v);
  };
  special("tokenizer.ggml.bos_token_id", cfg.bos_token_id, tokenizer->bos_id());
  special("tokenizer.ggml.eos_token_id", cfg.eos_token_id, tokenizer->eos_id());
  special("tokenizer.ggml.unknown_token_id", tokenizer->unk_id(), -1);
  meta.boolean("tokenizer.ggml.add_bos_token", tokenizer->add_bos());
  meta.boolean("tokenizer.ggml.add_eos_token", tokenizer->add_eos());
  if (!gpt2) {
    meta.boolean("tokenizer.ggml.add_space_prefix", tokenizer->add_dummy_prefix());
    meta.boolean("tokenizer.ggml.remove_extra_whitespaces", tokenizer->remove_extra_whitespaces());
  }

  // The original index of every kept kv head and MLP channel, so group ids survive the round trip
  // (other tools ignore these keys).
  bool pruned = false;
  for (const auto& d : cfg.layers)
    pruned = pruned || !d.kv_origin.empty() || !d.channel_origin.empty();
  if (pruned) {
    std::vector<std::string> kv, ch;
    for (const auto& d : cfg.layers) {
      kv.push_back(format_index_ranges(d.kv_origin));
      ch.push_back(format_index_ranges(d.channel_origin));
    }
    meta.str_array("lorashear.original_indices.kv_heads", kv);
    meta.str_array("lorashear.original_indices.mlp_channels", ch);
  }

  // --- tensors, in llama.cpp's converter order
  std::vector<Planned> plan;
  auto add = [&](const std::string& name, const torch::Tensor& shape_of, RowReader read,
                 int64_t row_unit = 1) {
    Planned p;
    p.name = name;
    p.matrix = shape_of.dim() == 2;
    p.rows = p.matrix ? shape_of.size(0) : 1;
    p.cols = p.matrix ? shape_of.size(1) : shape_of.size(0);
    p.row_unit = row_unit;
    p.read = std::move(read);
    if (!p.matrix) {
      p.type = kTypeF32;
    } else if (matrix_type == kTypeQ8_0 && p.cols % kQ8Block != 0) {
      p.type = kTypeF16;
      report.as_f16.push_back(name);
    } else {
      p.type = matrix_type;
    }
    plan.push_back(std::move(p));
  };
  const auto& body = *model.model;
  add("token_embd.weight", body.embed_tokens->weight, plain_rows(body.embed_tokens->weight));
  add("output_norm.weight", body.norm->weight, plain_rows(body.norm->weight));
  if (!cfg.tie_word_embeddings)
    add("output.weight", model.lm_head->weight, linear_rows(*model.lm_head, 0));
  const int64_t hd = cfg.head_dim;
  if (rs.type == "llama3") {
    // Llama 3.1's smoothed frequencies as llama.cpp reads them: one divisor per frequency.
    const auto plain = rope_frequencies(hd, cfg.rope_theta, RopeScaling{}, 0, 0).inv_freq;
    const auto scaled =
        rope_frequencies(hd, cfg.rope_theta, rs, cfg.max_position_embeddings, 0).inv_freq;
    std::vector<float> factors;
    for (size_t i = 0; i < plain.size(); ++i)
      factors.push_back(static_cast<float>(plain[i] / scaled[i]));
    auto t = torch::tensor(factors);
    add("rope_freqs.weight", t, plain_rows(t));
  }
  const int64_t rope_rows = neox ? 0 : hd;  // Q/K rows reordered for llama.cpp's RoPE
  const int64_t rope_unit = neox ? 1 : hd;
  for (int64_t l = 0; l < n_layers; ++l) {
    const auto& layer = *body.layers[static_cast<size_t>(l)];
    const auto& att = *layer.self_attn;
    const auto& mlp = *layer.mlp;
    const std::string b = "blk." + std::to_string(l) + ".";
    if (att.n_heads > 0) {
      add(b + "attn_norm.weight", layer.input_layernorm->weight,
          plain_rows(layer.input_layernorm->weight));
      add(b + "attn_q.weight", att.q_proj->weight, linear_rows(*att.q_proj, rope_rows), rope_unit);
      add(b + "attn_k.weight", att.k_proj->weight, linear_rows(*att.k_proj, rope_rows), rope_unit);
      add(b + "attn_v.weight", att.v_proj->weight, linear_rows(*att.v_proj, 0));
      add(b + "attn_output.weight", att.o_proj->weight, linear_rows(*att.o_proj, 0));
      if (att.q_proj->bias.defined()) {  // Qwen2 (neox: no reordering)
        add(b + "attn_q.bias", att.q_proj->bias, plain_rows(att.q_proj->bias));
        add(b + "attn_k.bias", att.k_proj->bias, plain_rows(att.k_proj->bias));
        add(b + "attn_v.bias", att.v_proj->bias, plain_rows(att.v_proj->bias));
      }
      if (att.q_norm) {  // Qwen3
        add(b + "attn_q_norm.weight", att.q_norm->weight, plain_rows(att.q_norm->weight));
        add(b + "attn_k_norm.weight", att.k_norm->weight, plain_rows(att.k_norm->weight));
      }
    }
    add(b + "ffn_norm.weight", layer.post_attention_layernorm->weight,
        plain_rows(layer.post_attention_layernorm->weight));
    if (mlp.gate_proj->weight.size(0) > 0) {
      add(b + "ffn_gate.weight", mlp.gate_proj->weight, linear_rows(*mlp.gate_proj, 0));
      add(b + "ffn_up.weight", mlp.up_proj->weight, linear_rows(*mlp.up_proj, 0));
      add(b + "ffn_down.weight", mlp.down_proj->weight, linear_rows(*mlp.down_proj, 0));
    } else {
      const auto h = cfg.hidden_size;
      const auto one_row = torch::empty({1, h}, torch::kMeta);
      add(b + "ffn_gate.weight", one_row, zero_rows(h));
      add(b + "ffn_up.weight", one_row, zero_rows(h));
      add(b + "ffn_down.weight", torch::empty({h, 1}, torch::kMeta), zero_rows(1));
    }
  }

  // --- header and tensor infos
  uint64_t offset = 0;
  for (auto& p : plan) {
    p.offset = offset;
    p.nbytes = encoded_bytes(p.type, p.rows * p.cols);
    offset += (p.nbytes + kAlignment - 1) / kAlignment * kAlignment;
  }
  Meta head;                       // header + metadata + tensor infos
  head.put(uint32_t{0x46554747});  // "GGUF" little-endian
  head.put(kVersion);
  head.put(static_cast<uint64_t>(plan.size()));
  head.put(meta.count());
  std::string header = head.bytes() + meta.bytes();
  Meta infos;
  for (const auto& p : plan) {
    infos.put_str(p.name);
    infos.put(static_cast<uint32_t>(p.matrix ? 2 : 1));
    infos.put(static_cast<uint64_t>(p.cols));  // ne[0]: the fastest-varying dimension
    if (p.matrix) infos.put(static_cast<uint64_t>(p.rows));
    infos.put(p.type);
    infos.put(p.offset);
  }
  header += infos.bytes();
  header.append((kAlignment - header.size() % kAlignment) % kAlignment, '\0');

  // --- data, chunk by chunk (≤ ~16 MiB of float32 rows at a time)
  constexpr int64_t kChunkFloats = 4 << 20;
  io::AtomicFile out(path);
  out.write(header.data(), header.size());
  const uint64_t data_start = header.size();
  const std::string zeros(kAlignment, '\0');
  for (size_t i = 0; i < plan.size(); ++i) {
    const auto& p = plan[i];
    task_report(ctx, "save", static_cast<int64_t>(i), static_cast<int64_t>(plan.size()), p.name);
    const int64_t fit = std::max<int64_t>(1, kChunkFloats / std::max<int64_t>(p.cols, 1));
    const int64_t step = std::max(p.row_unit, fit / p.row_unit * p.row_unit);
    for (int64_t r = 0; r < p.rows; r += step) {
      task_check(ctx);
      const auto chunk = encode(p.read(r, std::min(step, p.rows - r)), p.type);
      out.write(chunk.data_ptr(), chunk.nbytes());
    }
    const uint64_t end = out.written() - data_start;
    if (end != p.offset + p.nbytes)
      throw Error(path + ": internal error: tensor '" + p.name + "' ends at " +
                  std::to_string(end) + ", expected " + std::to_string(p.offset + p.nbytes));
    out.write(zeros.data(), (kAlignment - p.nbytes % kAlignment) % kAlignment);
  }
  task_check(ctx);
  out.commit();
  task_report(ctx, "save", static_cast<int64_t>(plan.size()), static_cast<int64_t>(plan.size()));
  report.bytes = out.written();
  report.tensors = static_cast<int64_t>(plan.size());
  return report;
}

}  // namespace lorashear
