// llama2.c legacy (v0) checkpoints: 7 int32 header fields, then float32 arrays (see
// shared/README.md).

#include <cstring>
#include <filesystem>
#include <functional>

#include "io/io_internal.h"
#include "lorashear/errors.h"

namespace fs = std::filesystem;

namespace lorashear::io {

namespace {

struct Header {
  int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
};

std::string describe(const Header& h) {
  return "dim " + std::to_string(h.dim) + ", hidden_dim " + std::to_string(h.hidden_dim) +
         ", n_layers " + std::to_string(h.n_layers) + ", n_heads " + std::to_string(h.n_heads) +
         ", n_kv_heads " + std::to_string(h.n_kv_heads) + ", vocab_size " +
         std::to_string(h.vocab_size) + ", seq_len " + std::to_string(h.seq_len);
}

std::shared_ptr<Tokenizer> find_tokenizer(const std::string& path, int64_t vocab) {
  const fs::path dir = fs::path(path).parent_path();
  const std::string v = std::to_string(vocab);
  for (const auto& name : {std::string("tokenizer.model"), "tok" + v + ".model"}) {
    const auto p = dir / name;
    if (fs::is_regular_file(p)) return Tokenizer::from_sentencepiece_file(p.string());
  }
  for (const auto& name : {std::string("tokenizer.bin"), "tok" + v + ".bin"}) {
    const auto p = dir / name;
    if (fs::is_regular_file(p)) return Tokenizer::from_llama2c_file(p.string(), vocab);
  }
  return nullptr;
}

}  // namespace

LoadedModel load_llama2c(const std::string& path, const LoadOptions& opts, const TaskContext* ctx) {
  auto file = std::make_shared<MappedFile>(path);
  if (file->size() < sizeof(Header))
    throw InputError(path + ": " + std::to_string(file->size()) +
                     " bytes, shorter than the 28-byte llama2.c header");
  Header h{};
  std::memcpy(&h, file->data(), sizeof(Header));
  auto field = [&](const char* name, int64_t value, bool ok, const char* why) {
    if (!ok)
      throw InputError(path + ": header field " + name + " = " + std::to_string(value) + " " + why +
                       " (" + describe(h) + ")");
  };
  field("dim", h.dim, h.dim > 0, "must be positive");
  field("hidden_dim", h.hidden_dim, h.hidden_dim > 0, "must be positive");
  field("n_layers", h.n_layers, h.n_layers > 0, "must be positive");
  field("n_heads", h.n_heads, h.n_heads > 0, "must be positive");
  field("n_heads", h.n_heads, h.dim % h.n_heads == 0, "does not divide dim");
  field("n_heads", h.n_heads, (h.dim / h.n_heads) % 2 == 0, "gives an odd head size");
  field("n_kv_heads", h.n_kv_heads, h.n_kv_heads > 0 && h.n_heads % h.n_kv_heads == 0,
        "must be positive and divide n_heads");
  field("vocab_size", h.vocab_size, h.vocab_size != 0 && h.vocab_size != INT32_MIN, "is invalid");
  field("seq_len", h.seq_len, h.seq_len > 0, "must be positive");
  const int64_t head_size = h.dim / h.n_heads;

  const int64_t dim = h.dim, hidden = h.hidden_dim, L = h.n_layers;
  const int64_t vocab = h.vocab_size > 0 ? h.vocab_size : -int64_t(h.vocab_size);
  const int64_t kv_dim = head_size * h.n_kv_heads;
  // Int32 fields: the products below stay far inside int64 (< 2^31 * 2^31 * 2^31 only in theory).
  const __int128 weights = __int128(vocab) * dim + __int128(L) * dim + __int128(L) * dim * dim * 2 +
                           __int128(L) * kv_dim * dim * 2 + __int128(L) * dim +
                           __int128(L) * hidden * dim * 3 + dim;
  const __int128 freq = __int128(h.seq_len) * head_size;  // freq_cis_real + imag, seq_len*hs/2 each
  const __int128 cls = h.vocab_size < 0 ? __int128(vocab) * dim : 0;
  const __int128 with_freq = 28 + 4 * (weights + freq + cls);
  const __int128 without_freq = 28 + 4 * (weights + cls);
  const bool has_freq = __int128(file->size()) == with_freq;
  if (!has_freq && __int128(file->size()) != without_freq) {
    auto s = [](__int128 v) { return std::to_string(static_cast<long long>(v)); };
    throw InputError(path + ": file size " + std::to_string(file->size()) +
                     " bytes does not match its header (" + describe(h) + "): expected " +
                     s(with_freq) + " bytes, or " + s(without_freq) + " without freq_cis");
  }

  ModelConfig cfg = ModelConfig::uniform(vocab, dim, L, h.n_heads, h.n_kv_heads, hidden, head_size);
  cfg.model_type = "llama";
  cfg.rope_theta = 10000.0;
  cfg.rms_norm_eps = 1e-5;
  cfg.tie_word_embeddings = h.vocab_size > 0;
  cfg.max_position_embeddings = h.seq_len;
  cfg.bos_token_id = 1;
  cfg.eos_token_id = 2;
  cfg.validate(path);

  LoadedModel out;
  out.tokenizer = !opts.tokenizer_path.empty() ? load_tokenizer_file(opts.tokenizer_path, vocab)
                                               : find_tokenizer(path, vocab);
  if (!out.tokenizer && opts.require_tokenizer)
    throw InputError(path + ": no tokenizer found beside it (tokenizer.model, tok" +
                     std::to_string(vocab) + ".model, tokenizer.bin or tok" +
                     std::to_string(vocab) + ".bin)");
  if (out.tokenizer) check_tokenizer_fits(*out.tokenizer, cfg, path);

  LlamaModel model(cfg, model_options_for(opts, {"F32"}));
  std::vector<TensorSource> sources;
  uint64_t offset = 28;
  // Arrays are stacked over layers: array `what` holds L (or 1) tensors of `shape`.
  auto add = [&](const std::string& what, const std::vector<int64_t>& shape, int64_t count,
                 const std::function<std::string(int64_t)>& param, int64_t rope_head_dim) {
    int64_t numel = 1;
    for (auto d : shape)
      numel *= d;
    for (int64_t l = 0; l < count; ++l) {
      TensorSource s;
      s.param = param(l);
      s.origin = count > 1 ? what + "[" + std::to_string(l) + "]" : what;
      s.file = file.get();
      s.owner = file;
      s.offset = offset;
      s.nbytes = static_cast<uint64_t>(numel) * 4;
      s.type = SourceType::F32;
      s.shape = shape;
      s.rope_head_dim = rope_head_dim;
      offset += s.nbytes;
      sources.push_back(std::move(s));
    }
  };
  auto layer = [](const char* suffix) {
    return [suffix](int64_t l) { return "model.layers." + std::to_string(l) + "." + suffix; };
  };
  auto fixed = [](const char* name) { return [name](int64_t) { return std::string(name); }; };
  add("token_embedding_table", {vocab, dim}, 1, fixed("model.embed_tokens.weight"), 0);
  add("rms_att_weight", {dim}, L, layer("input_layernorm.weight"), 0);
  add("wq", {dim, dim}, L, layer("self_attn.q_proj.weight"), head_size);
  add("wk", {kv_dim, dim}, L, layer("self_attn.k_proj.weight"), head_size);
  add("wv", {kv_dim, dim}, L, layer("self_attn.v_proj.weight"), 0);
  add("wo", {dim, dim}, L, layer("self_attn.o_proj.weight"), 0);
  add("rms_ffn_weight", {dim}, L, layer("post_attention_layernorm.weight"), 0);
  add("w1", {hidden, dim}, L, layer("mlp.gate_proj.weight"), 0);
  add("w2", {dim, hidden}, L, layer("mlp.down_proj.weight"), 0);
  add("w3", {hidden, dim}, L, layer("mlp.up_proj.weight"), 0);
  add("rms_final_weight", {dim}, 1, fixed("model.norm.weight"), 0);
  if (has_freq) offset += static_cast<uint64_t>(freq) * 4;
  if (h.vocab_size < 0) add("wcls", {vocab, dim}, 1, fixed("lm_head.weight"), 0);

  copy_sources(*model, sources, opts, ctx);
  out.model = model;
  out.source_dtype = "F32";
  return out;
}

}  // namespace lorashear::io
