// GGUF v2/v3 (llama.cpp): header, metadata key/values, tensor infos, aligned data section.
// Supported tensor types: F32, F16, BF16 and Q8_0 (dequantised on load).

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "io/gguf_types.h"
#include "io/io_internal.h"
#include "lorashear/errors.h"
#include "lorashear/io/gguf.h"

namespace lorashear::io {

namespace {

using namespace gguf;

const char* value_type_name(uint32_t t) {
  static const char* names[] = {"uint8",  "int8",    "uint16", "int16",  "uint32",
                                "int32",  "float32", "bool",   "string", "array",
                                "uint64", "int64",   "float64"};
  return t < 13 ? names[t] : "unknown";
}

// ggml tensor type ids (ggml.h), for messages.
std::string tensor_type_name(uint32_t t) {
  static const std::map<uint32_t, const char*> names = {
      {0, "F32"},     {1, "F16"},      {2, "Q4_0"},   {3, "Q4_1"},    {6, "Q5_0"},
      {7, "Q5_1"},    {8, "Q8_0"},     {9, "Q8_1"},   {10, "Q2_K"},   {11, "Q3_K"},
      {12, "Q4_K"},   {13, "Q5_K"},    {14, "Q6_K"},  {15, "Q8_K"},   {16, "IQ2_XXS"},
      {17, "IQ2_XS"}, {18, "IQ3_XXS"}, {19, "IQ1_S"}, {20, "IQ4_NL"}, {21, "IQ3_S"},
      {22, "IQ2_S"},  {23, "IQ4_XS"},  {24, "I8"},    {25, "I16"},    {26, "I32"},
      {27, "I64"},    {28, "F64"},     {29, "IQ1_M"}, {30, "BF16"},   {34, "TQ1_0"},
      {35, "TQ2_0"}};
  const auto it = names.find(t);
  return it == names.end() ? "type " + std::to_string(t) : std::string(it->second);
}

std::optional<SourceType> supported_type(uint32_t t) {
  switch (t) {
    case 0:
      return SourceType::F32;
    case 1:
      return SourceType::F16;
    case 8:
      return SourceType::Q8_0;
    case 30:
      return SourceType::BF16;
    default:
      return std::nullopt;
  }
}

struct Value {
  uint32_t type = kU8;
  int64_t i = 0;   // signed integers and bool
  uint64_t u = 0;  // unsigned integers
  double f = 0.0;
  std::string s;
  uint32_t elem_type = kU8;  // arrays
  std::vector<Value> items;

  bool is_int() const {
    return type == kU8 || type == kI8 || type == kU16 || type == kI16 || type == kU32 ||
           type == kI32 || type == kU64 || type == kI64;
  }
  bool is_unsigned() const { return type == kU8 || type == kU16 || type == kU32 || type == kU64; }
};

struct TensorInfo {
  std::string name;
  std::vector<uint64_t> ne;  // fastest-varying first
  uint32_t type = 0;
  uint64_t offset = 0;  // absolute in the file once the data section is known
  uint64_t nbytes = 0;
};

class Reader {
 public:
  explicit Reader(const MappedFile& f) : f_(f) {}
  uint64_t pos() const { return pos_; }
  void need(uint64_t n, const std::string& what) const {
    if (n > f_.size() - pos_)
      throw InputError(f_.path() + ": truncated GGUF header while reading " + what);
  }
  template <typename T>
  T get(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, f_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string str(const std::string& what) {
    const auto n = get<uint64_t>(what);
    need(n, what);
    std::string s(reinterpret_cast<const char*>(f_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  Value value(uint32_t type, const std::string& what, int depth = 0) {
    Value v;
    v.type = type;
    switch (type) {
      case kU8:
        v.u = get<uint8_t>(what);
        break;
      case kI8:
        v.i = get<int8_t>(what);
        break;
      case kU16:
        v.u = get<uint16_t>(what);
        break;
      case kI16:
        v.i = get<int16_t>(what);
        break;
      case kU32:
        v.u = get<uint32_t>(what);
        break;
      case kI32:
        v.i = get<int32_t>(what);
        break;
      case kU64:
        v.u = get<uint64_t>(what);
        break;
      case kI64:
        v.i = get<int64_t>(what);
        break;
      case kF32:
        v.f = get<float>(what);
        break;
      case kF64:
        v.f = get<double>(what);
        break;
      case kBool: {
        const auto b = get<uint8_t>(what);
        if (b > 1)
          throw InputError(f_.path() + ": " + what + ": invalid bool " + std::to_string(b));
        v.i = b;
        break;
      }
      case kString:
        v.s = str(what);
        break;
      case kArray: {
        if (depth > 8) throw InputError(f_.path() + ": " + what + ": arrays nested too deeply");
        v.elem_type = get<uint32_t>(what);
        const auto n = get<uint64_t>(what);
        // Each element takes at least min_size bytes of the file: a count the rest of the file
        // cannot hold is garbage, refused before reserving (a Value is ~100 bytes, so a count
        // checked against single bytes would let a small file reserve 100x its size).
        const uint64_t min_size = encoded_min_size(v.elem_type);
        if (n > (f_.size() - pos_) / min_size)
          throw InputError(f_.path() + ": " + what + ": array of " + std::to_string(n) +
                           " elements does not fit in the " + std::to_string(f_.size() - pos_) +
                           " bytes left in the file");
        v.items.reserve(n);
        for (uint64_t k = 0; k < n; ++k)
          v.items.push_back(value(v.elem_type, what, depth + 1));
        break;
      }
      default:
        throw InputError(f_.path() + ": " + what + ": unknown metadata value type " +
                         std::to_string(type));
    }
    return v;
  }

 private:
  // The fewest bytes one value of `type` takes in the file (an unknown type fails when read).
  static uint64_t encoded_min_size(uint32_t type) {
    switch (type) {
      case kU16:
      case kI16:
        return 2;
      case kU32:
      case kI32:
      case kF32:
        return 4;
      case kU64:
      case kI64:
      case kF64:
      case kString:  // its length
        return 8;
      case kArray:  // element type and count
        return 12;
      default:
        return 1;
    }
  }

  const MappedFile& f_;
  uint64_t pos_ = 0;
};

class GgufFile {
 public:
  explicit GgufFile(const std::string& path) : file_(std::make_shared<MappedFile>(path)) {
    const std::string& p = file_->path();
    if (file_->size() < 4 || std::memcmp(file_->data(), "GGUF", 4) != 0)
      throw InputError(p + ": not a GGUF file (missing 'GGUF' magic)");
    Reader r(*file_);
    r.get<uint32_t>("magic");
    version_ = r.get<uint32_t>("version");
    if (version_ != 2 && version_ != 3)
      throw InputError(p + ": GGUF version " + std::to_string(version_) +
                       " is not supported (expected 2 or 3)");
    const auto n_tensors = r.get<uint64_t>("tensor count");
    const auto n_kv = r.get<uint64_t>("metadata count");
    // Each entry needs well over 8 bytes; larger counts mean a corrupt header.
    if (n_tensors > file_->size() / 8 || n_kv > file_->size() / 8)
      throw InputError(p + ": implausible GGUF counts (" + std::to_string(n_tensors) +
                       " tensors, " + std::to_string(n_kv) + " metadata entries)");
    for (uint64_t k = 0; k < n_kv; ++k) {
      const std::string what = "metadata entry " + std::to_string(k);
      std::string key = r.str(what);
      const auto type = r.get<uint32_t>("metadata '" + key + "'");
      Value v = r.value(type, "metadata '" + key + "'");
      if (!kv_.emplace(key, std::move(v)).second)
        throw InputError(p + ": metadata '" + key + "' appears twice");
      keys_.push_back(key);
    }
    for (uint64_t k = 0; k < n_tensors; ++k) {
      TensorInfo t;
      t.name = r.str("tensor info " + std::to_string(k));
      const std::string what = "tensor '" + t.name + "'";
      const auto n_dims = r.get<uint32_t>(what);
      if (n_dims == 0 || n_dims > 4)
        throw InputError(p + ": " + what + ": " + std::to_string(n_dims) +
                         " dimensions (expected 1 to 4)");
      for (uint32_t d = 0; d < n_dims; ++d)
        t.ne.push_back(r.get<uint64_t>(what));
      t.type = r.get<uint32_t>(what);
      t.offset = r.get<uint64_t>(what);
      if (!supported_type(t.type))
        throw InputError(p + ": " + what + ": unsupported tensor type " + tensor_type_name(t.type) +
                         " (" + std::to_string(t.type) + "); supported: F32, F16, BF16, Q8_0");
      tensors_.push_back(std::move(t));
    }

    uint64_t alignment = 32;
    if (const Value* a = find("general.alignment")) {
      if (!a->is_int() || a->u == 0 || (a->u & (a->u - 1)) != 0)
        throw InputError(p + ": metadata 'general.alignment' must be a power of two");
      alignment = a->u;
    }
    const uint64_t data_start = (r.pos() + alignment - 1) / alignment * alignment;
    if (data_start > file_->size())
      throw InputError(p + ": truncated GGUF file: data section starts beyond the end");
    const uint64_t data_size = file_->size() - data_start;

    std::map<std::string, size_t> seen;
    for (size_t k = 0; k < tensors_.size(); ++k) {
      auto& t = tensors_[k];
      const std::string where = p + ": tensor '" + t.name + "': ";
      if (!seen.emplace(t.name, k).second) throw InputError(where + "appears twice");
      uint64_t numel = 1;
      for (const auto d : t.ne)
        if (d > uint64_t(INT64_MAX) || __builtin_mul_overflow(numel, d, &numel))
          throw InputError(where + "dimensions are too large");
      const auto type = *supported_type(t.type);
      if (type == SourceType::Q8_0 && t.ne[0] % 32 != 0)
        throw InputError(where + "Q8_0 rows of " + std::to_string(t.ne[0]) +
                         " values are not whole blocks of 32");
      if (numel > (UINT64_MAX / 4)) throw InputError(where + "dimensions are too large");
      t.nbytes = source_bytes(type, static_cast<int64_t>(numel));
      if (t.offset % alignment != 0)
        throw InputError(where + "data offset " + std::to_string(t.offset) +
                         " is not a multiple of the alignment " + std::to_string(alignment));
      if (t.offset > data_size || t.nbytes > data_size - t.offset)
        throw InputError(where + "data [" + std::to_string(t.offset) + ", " +
                         std::to_string(t.offset + t.nbytes) + ") is beyond the data section of " +
                         std::to_string(data_size) + " bytes (truncated file?)");
      t.offset += data_start;
    }
    std::vector<const TensorInfo*> order;
    for (const auto& t : tensors_)
      order.push_back(&t);
    std::sort(order.begin(), order.end(),
              [](const auto* a, const auto* b) { return a->offset < b->offset; });
    const TensorInfo* furthest = nullptr;
    for (const auto* t : order) {
      if (furthest != nullptr && t->nbytes > 0 && t->offset < furthest->offset + furthest->nbytes)
        throw InputError(p + ": tensors '" + furthest->name + "' and '" + t->name + "' overlap");
      if (furthest == nullptr || t->offset + t->nbytes > furthest->offset + furthest->nbytes)
        furthest = t;
    }
    for (size_t k = 0; k < tensors_.size(); ++k)
      index_[tensors_[k].name] = k;
  }

  const std::string& path() const { return file_->path(); }
  const std::shared_ptr<MappedFile>& file() const { return file_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* tensor(const std::string& name) const {
    const auto it = index_.find(name);
    return it == index_.end() ? nullptr : &tensors_[it->second];
  }
  /// Metadata keys in file order.
  const std::vector<std::string>& keys() const { return keys_; }
  const Value* find(const std::string& key) const {
    const auto it = kv_.find(key);
    return it == kv_.end() ? nullptr : &it->second;
  }

  int64_t as_int(const Value& v, const std::string& key) const {
    if (!v.is_int())
      throw InputError(path() + ": metadata '" + key + "' must be an integer, found " +
                       value_type_name(v.type));
    if (v.is_unsigned()) {
      if (v.u > uint64_t(INT64_MAX))
        throw InputError(path() + ": metadata '" + key + "' is out of range");
      return static_cast<int64_t>(v.u);
    }
    return v.i;
  }
  std::optional<int64_t> get_int(const std::string& key) const {
    const Value* v = find(key);
    return v ? std::optional<int64_t>(as_int(*v, key)) : std::nullopt;
  }
  int64_t require_int(const std::string& key) const {
    const auto v = get_int(key);
    if (!v) throw InputError(path() + ": missing metadata '" + key + "'");
    return *v;
  }
  /// An integer or a per-layer array of integers (llama.cpp allows both for head counts/FFN).
  std::vector<int64_t> per_layer(const std::string& key, int64_t n_layers,
                                 std::optional<std::vector<int64_t>> fallback) const {
    const Value* v = find(key);
    if (v == nullptr) {
      if (fallback) return *fallback;
      throw InputError(path() + ": missing metadata '" + key + "'");
    }
    if (v->type != kArray) return std::vector<int64_t>(n_layers, as_int(*v, key));
    if (static_cast<int64_t>(v->items.size()) != n_layers)
      throw InputError(path() + ": metadata '" + key + "' has " + std::to_string(v->items.size()) +
                       " entries, expected " + std::to_string(n_layers) + " (one per layer)");
    std::vector<int64_t> out;
    for (const auto& it : v->items)
      out.push_back(as_int(it, key));
    return out;
  }
  std::optional<double> get_float(const std::string& key) const {
    const Value* v = find(key);
    if (v == nullptr) return std::nullopt;
    if (v->type == kF32 || v->type == kF64) return v->f;
    return static_cast<double>(as_int(*v, key));
  }
  std::optional<std::string> get_string(const std::string& key) const {
    const Value* v = find(key);
    if (v == nullptr) return std::nullopt;
    if (v->type != kString)
      throw InputError(path() + ": metadata '" + key + "' must be a string, found " +
                       value_type_name(v->type));
    return v->s;
  }
  std::optional<bool> get_bool(const std::string& key) const {
    const Value* v = find(key);
    if (v == nullptr) return std::nullopt;
    if (v->type != kBool)
      throw InputError(path() + ": metadata '" + key + "' must be a bool, found " +
                       value_type_name(v->type));
    return v->i != 0;
  }
  const Value* get_array(const std::string& key, uint32_t elem_type) const {
    const Value* v = find(key);
    if (v == nullptr) return nullptr;
    if (v->type != kArray || v->elem_type != elem_type)
      throw InputError(path() + ": metadata '" + key + "' must be an array of " +
                       value_type_name(elem_type));
    return v;
  }

 private:
  std::shared_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  std::map<std::string, Value> kv_;
  std::vector<std::string> keys_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
};

std::shared_ptr<Tokenizer> tokenizer_from_metadata(const GgufFile& g) {
  const Value* tokens = g.get_array("tokenizer.ggml.tokens", kString);
  if (tokens == nullptr) return nullptr;
  const auto model = g.get_string("tokenizer.ggml.model");
  if (model && *model == "gpt2") {
    // Byte-level BPE: exactly through the tokenizer.json GGUF may carry for it (our exports do),
    // else from the tokens, types, merges and pre-tokenizer name, as llama.cpp reads them.
    if (const auto json = g.get_string("tokenizer.huggingface.json"))
      return Tokenizer::from_hf_json(*json, g.path() + " (tokenizer.huggingface.json)");
    const Value* merges = g.get_array("tokenizer.ggml.merges", kString);
    if (merges == nullptr)
      throw InputError(g.path() +
                       ": metadata 'tokenizer.ggml.model' is 'gpt2' but 'tokenizer.ggml.merges' "
                       "is missing");
    const Value* types = g.find("tokenizer.ggml.token_type");
    const size_t n = tokens->items.size();
    if (types != nullptr && (types->type != kArray || types->items.size() != n))
      throw InputError(g.path() + ": metadata 'tokenizer.ggml.token_type' must be an array of " +
                       std::to_string(n) + " integers");
    std::vector<std::string> pieces, merge_list;
    std::vector<int64_t> type_list;
    for (size_t k = 0; k < n; ++k) {
      pieces.push_back(tokens->items[k].s);
      type_list.push_back(types ? g.as_int(types->items[k], "tokenizer.ggml.token_type") : 1);
    }
    for (const auto& m : merges->items)
      merge_list.push_back(m.s);
    auto id_of = [&](const char* key) -> int64_t {
      const auto id = g.get_int(key);
      return id && *id >= 0 && *id < static_cast<int64_t>(n) ? *id : -1;
    };
    return Tokenizer::from_gguf_bpe(
        pieces, type_list, merge_list, g.get_string("tokenizer.ggml.pre").value_or("default"),
        id_of("tokenizer.ggml.bos_token_id"), id_of("tokenizer.ggml.eos_token_id"),
        g.get_bool("tokenizer.ggml.add_bos_token").value_or(false), g.path());
  }
  if (model && *model != "llama")
    throw InputError(g.path() + ": metadata 'tokenizer.ggml.model' is '" + *model +
                     "'; only SentencePiece ('llama') and byte-level BPE ('gpt2') vocabularies "
                     "are supported");
  const Value* scores = g.find("tokenizer.ggml.scores");
  const Value* types = g.find("tokenizer.ggml.token_type");
  const size_t n = tokens->items.size();
  if (scores != nullptr && (scores->type != kArray || scores->items.size() != n))
    throw InputError(g.path() + ": metadata 'tokenizer.ggml.scores' must be an array of " +
                     std::to_string(n) + " numbers");
  if (types != nullptr && (types->type != kArray || types->items.size() != n))
    throw InputError(g.path() + ": metadata 'tokenizer.ggml.token_type' must be an array of " +
                     std::to_string(n) + " integers");
  std::vector<VocabEntry> vocab(n);
  for (size_t k = 0; k < n; ++k) {
    vocab[k].piece = tokens->items[k].s;
    if (scores != nullptr) {
      const auto& s = scores->items[k];
      if (s.type != kF32 && s.type != kF64)
        throw InputError(g.path() + ": metadata 'tokenizer.ggml.scores' must hold floats");
      vocab[k].score = static_cast<float>(s.f);
    }
    if (types != nullptr) {
      const int64_t t = g.as_int(types->items[k], "tokenizer.ggml.token_type");
      if (t < 1 || t > 6)
        throw InputError(g.path() + ": metadata 'tokenizer.ggml.token_type': token " +
                         std::to_string(k) + " has unknown type " + std::to_string(t));
      vocab[k].type = static_cast<VocabEntry::Type>(t);
    }
  }
  // llama.cpp's defaults for SentencePiece vocabularies.
  const bool add_prefix = g.get_bool("tokenizer.ggml.add_space_prefix").value_or(true);
  const bool collapse = g.get_bool("tokenizer.ggml.remove_extra_whitespaces").value_or(false);
  auto special = [&](const char* key) -> int64_t {
    const auto id = g.get_int(key);
    if (!id) return -1;
    if (*id < 0 || *id >= static_cast<int64_t>(n))
      throw InputError(g.path() + ": metadata '" + key + "' = " + std::to_string(*id) +
                       " is outside the vocabulary of " + std::to_string(n));
    return *id;
  };
  const int64_t bos = special("tokenizer.ggml.bos_token_id");
  const int64_t eos = special("tokenizer.ggml.eos_token_id");
  // SentencePiece wants BOS/EOS to be control pieces; ids naming other pieces are left to the
  // model configuration (as before).
  auto control = [&](int64_t id) {
    return id >= 0 && vocab[static_cast<size_t>(id)].type == VocabEntry::Type::Control ? id : -1;
  };
  return Tokenizer::from_vocab(vocab, add_prefix, g.path(), collapse, control(bos), control(eos));
}

}  // namespace

LoadedModel load_gguf(const std::string& path, const LoadOptions& opts, const TaskContext* ctx) {
  GgufFile g(path);
  const std::string arch = g.get_string("general.architecture").value_or("");
  // "deci" is llama.cpp's LLaMA with per-layer head counts and widths (what save_gguf writes for
  // non-uniformly pruned models, and NVIDIA's Nemotron derivatives).
  if (arch != "llama" && arch != "deci" && arch != "qwen2" && arch != "qwen3")
    throw InputError(path + ": metadata 'general.architecture' is '" + arch +
                     "'; supported: llama, deci (LLaMA with per-layer sizes), qwen2, qwen3");
  const std::string k = arch + ".";
  // qwen2/qwen3 rotate halves as Hugging Face does: their Q/K rows are stored unpermuted.
  const bool neox = arch == "qwen2" || arch == "qwen3";

  ModelConfig cfg;
  cfg.model_type = neox ? arch : "llama";
  cfg.qk_norm = arch == "qwen3";
  if (const auto ours = g.get_string("lorashear.rope_scaling")) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(*ours);
    } catch (const nlohmann::json::exception& e) {
      throw InputError(path + ": metadata 'lorashear.rope_scaling': " + e.what());
    }
    cfg.rope_scaling = parse_rope_scaling(j, path + " (lorashear.rope_scaling)");
  } else if (const auto scaling = g.get_string(k + "rope.scaling.type");
             scaling && *scaling != "none") {
    if (*scaling != "linear")
      throw InputError(path + ": metadata '" + k + "rope.scaling.type' is '" + *scaling +
                       "'; only linear RoPE scaling is read from GGUF");
    cfg.rope_scaling.type = "linear";
    cfg.rope_scaling.factor = g.get_float(k + "rope.scaling.factor").value_or(1.0);
  } else if (g.tensor("rope_freqs.weight") != nullptr) {
    throw InputError(path +
                     ": tensor 'rope_freqs.weight' (per-frequency RoPE factors, as Llama 3.1 "
                     "files carry) is not supported; open the Hugging Face model instead");
  }
  cfg.hidden_size = g.require_int(k + "embedding_length");
  const int64_t n_layers = g.require_int(k + "block_count");
  if (n_layers <= 0 || n_layers > 100000)
    throw InputError(path + ": metadata '" + k + "block_count' = " + std::to_string(n_layers) +
                     " is invalid");
  // Every layer has tensors of its own (at least its MLP's): a small file declaring tens of
  // thousands of layers is refused here, before the per-layer tables are built (fuzzing: an
  // 800-byte file took 7 s).
  if (n_layers > static_cast<int64_t>(g.tensors().size()))
    throw InputError(path + ": metadata '" + k + "block_count' = " + std::to_string(n_layers) +
                     " but the file holds only " + std::to_string(g.tensors().size()) + " tensors");
  const auto heads = g.per_layer(k + "attention.head_count", n_layers, std::nullopt);
  const auto kv_heads = g.per_layer(k + "attention.head_count_kv", n_layers, heads);
  const auto ffn = g.per_layer(k + "feed_forward_length", n_layers, std::nullopt);
  for (int64_t l = 0; l < n_layers; ++l) {
    if (heads[l] > 0 && kv_heads[l] == 0)
      throw InputError(path + ": metadata '" + k + "attention.head_count_kv': layer " +
                       std::to_string(l) +
                       " has query heads but no kv heads (a linear layer in place of attention, "
                       "as in Nemotron), which is not supported");
    cfg.layers.push_back({heads[l], kv_heads[l], ffn[l]});
  }
  // Which original kv heads / MLP channels each layer kept (written by save_gguf for pruned
  // models), so variable group ids survive the round trip.
  for (const auto& [key, kv] : {std::pair{"lorashear.original_indices.kv_heads", true},
                                std::pair{"lorashear.original_indices.mlp_channels", false}}) {
    const Value* v = g.get_array(key, kString);
    if (v == nullptr) continue;
    if (static_cast<int64_t>(v->items.size()) != n_layers)
      throw InputError(path + ": metadata '" + key + "' has " + std::to_string(v->items.size()) +
                       " entries, expected " + std::to_string(n_layers) + " (one per layer)");
    for (int64_t l = 0; l < n_layers; ++l) {
      auto& d = cfg.layers[static_cast<size_t>(l)];
      (kv ? d.kv_origin : d.channel_origin) =
          parse_index_ranges(v->items[static_cast<size_t>(l)].s, path,
                             std::string(key) + "[" + std::to_string(l) + "]");
    }
  }
  if (const auto kl = g.get_int(k + "attention.key_length")) {
    cfg.head_dim = *kl;
  } else if (const auto rd = g.get_int(k + "rope.dimension_count")) {
    cfg.head_dim = *rd;
  } else {
    const int64_t h0 = heads.front();
    if (h0 <= 0) throw InputError(path + ": metadata '" + k + "attention.head_count' is zero");
    cfg.head_dim = cfg.hidden_size / h0;
  }
  cfg.rms_norm_eps = g.get_float(k + "attention.layer_norm_rms_epsilon").value_or(1e-5);
  cfg.rope_theta = g.get_float(k + "rope.freq_base").value_or(10000.0);
  cfg.max_position_embeddings = g.get_int(k + "context_length").value_or(2048);
  cfg.bos_token_id = g.get_int("tokenizer.ggml.bos_token_id").value_or(1);
  cfg.eos_token_id = g.get_int("tokenizer.ggml.eos_token_id").value_or(2);

  const TensorInfo* embd = g.tensor("token_embd.weight");
  if (embd == nullptr) throw InputError(path + ": missing tensor 'token_embd.weight'");
  if (const auto v = g.get_int(k + "vocab_size")) {
    cfg.vocab_size = *v;
  } else if (const Value* toks = g.find("tokenizer.ggml.tokens"); toks && toks->type == kArray) {
    cfg.vocab_size = static_cast<int64_t>(toks->items.size());
  } else {
    cfg.vocab_size = embd->ne.size() == 2 ? static_cast<int64_t>(embd->ne[1]) : 0;
  }
  // Converters often write the tied head out as its own tensor; identical bytes mean tied.
  const TensorInfo* output = g.tensor("output.weight");
  cfg.tie_word_embeddings =
      output == nullptr ||
      (output->type == embd->type && output->ne == embd->ne && output->nbytes == embd->nbytes &&
       std::memcmp(g.file()->data() + output->offset, g.file()->data() + embd->offset,
                   output->nbytes) == 0);
  if (output != nullptr && cfg.tie_word_embeddings)
    g.file()->release(output->offset, output->nbytes);  // read once by the comparison, never again
  cfg.attention_bias = g.tensor("blk.0.attn_q.bias") != nullptr;
  if (arch == "qwen2" && !cfg.attention_bias)
    throw InputError(path + ": missing tensor 'blk.0.attn_q.bias' (qwen2 has q/k/v biases)");
  cfg.validate(path);

  LoadedModel out;
  if (!opts.tokenizer_path.empty())
    out.tokenizer = load_tokenizer_file(opts.tokenizer_path, cfg.vocab_size);
  else
    out.tokenizer = tokenizer_from_metadata(g);
  if (!out.tokenizer && opts.require_tokenizer)
    throw InputError(path + ": no tokenizer in its metadata (tokenizer.ggml.tokens)");
  if (out.tokenizer) check_tokenizer_fits(*out.tokenizer, cfg, path);

  // GGUF name → (HF name, RoPE head size to un-interleave, 0 for none).
  std::map<std::string, std::pair<std::string, int64_t>> names = {
      {"token_embd.weight", {"model.embed_tokens.weight", 0}},
      {"output_norm.weight", {"model.norm.weight", 0}},
  };
  if (!cfg.tie_word_embeddings) names["output.weight"] = {"lm_head.weight", 0};
  std::set<std::string> prefilled;  // parameters without a tensor in the file
  for (int64_t l = 0; l < n_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    const std::string m = "model.layers." + std::to_string(l) + ".";
    names[b + "ffn_norm.weight"] = {m + "post_attention_layernorm.weight", 0};
    names[b + "ffn_gate.weight"] = {m + "mlp.gate_proj.weight", 0};
    names[b + "ffn_up.weight"] = {m + "mlp.up_proj.weight", 0};
    names[b + "ffn_down.weight"] = {m + "mlp.down_proj.weight", 0};
    if (heads[l] == 0) {
      // A layer without attention has no attention tensors in the file (llama.cpp's deci layout);
      // its projections are empty and its unused norm is left at one.
      for (const char* p :
           {"input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
            "self_attn.v_proj.weight", "self_attn.o_proj.weight"})
        prefilled.insert(m + p);
      continue;
    }
    names[b + "attn_norm.weight"] = {m + "input_layernorm.weight", 0};
    const int64_t rope = neox ? 0 : cfg.head_dim;
    names[b + "attn_q.weight"] = {m + "self_attn.q_proj.weight", rope};
    names[b + "attn_k.weight"] = {m + "self_attn.k_proj.weight", rope};
    if (cfg.qk_norm) {
      names[b + "attn_q_norm.weight"] = {m + "self_attn.q_norm.weight", 0};
      names[b + "attn_k_norm.weight"] = {m + "self_attn.k_norm.weight", 0};
    }
    names[b + "attn_v.weight"] = {m + "self_attn.v_proj.weight", 0};
    names[b + "attn_output.weight"] = {m + "self_attn.o_proj.weight", 0};
    if (cfg.attention_bias) {
      names[b + "attn_q.bias"] = {m + "self_attn.q_proj.bias", rope};
      names[b + "attn_k.bias"] = {m + "self_attn.k_proj.bias", rope};
      names[b + "attn_v.bias"] = {m + "self_attn.v_proj.bias", 0};
      if (cfg.o_proj_bias()) names[b + "attn_output.bias"] = {m + "self_attn.o_proj.bias", 0};
    }
  }
  for (const auto& [gguf_name, target] : names)
    if (g.tensor(gguf_name) == nullptr)
      throw InputError(path + ": missing tensor '" + gguf_name + "'");

  std::vector<std::string> matrix_dtypes;
  for (const auto& t : g.tensors())
    if (names.count(t.name) && t.ne.size() == 2)
      if (const auto type = supported_type(t.type))
        matrix_dtypes.push_back(source_type_name(*type));
  uint64_t stored_bytes = 0;
  for (const auto& t : g.tensors())
    stored_bytes += t.nbytes;
  check_model_fits_weights(cfg, stored_bytes, path);
  LlamaModel model(cfg, model_options_for(opts, matrix_dtypes));
  std::vector<TensorSource> sources;
  std::string source_dtype;
  for (const auto& t : g.tensors()) {  // file order: the mapping is read front to back
    const auto it = names.find(t.name);
    if (it == names.end()) {
      if (t.name == "output.weight") continue;  // identical copy of token_embd (tied)
      // Llama 3.1 frequency factors: lorashear.rope_scaling already gave the exact parameters.
      if (t.name == "rope_freqs.weight" && cfg.rope_scaling.enabled()) continue;
      throw InputError(path + ": unexpected tensor '" + t.name + "'");
    }
    TensorSource s;
    s.param = it->second.first;
    s.origin = t.name;
    s.file = g.file().get();
    s.owner = g.file();
    s.offset = t.offset;
    s.nbytes = t.nbytes;
    s.type = *supported_type(t.type);
    s.shape.assign(t.ne.rbegin(), t.ne.rend());  // torch order: slowest first
    s.rope_head_dim = it->second.second;
    check_source(*model, s);
    // Quantised files keep norms in F32; the attention matrices say how the model is stored.
    if (t.name == "blk.0.attn_q.weight") source_dtype = source_type_name(s.type);
    sources.push_back(std::move(s));
  }
  std::stable_sort(sources.begin(), sources.end(),
                   [](const auto& a, const auto& b) { return a.offset < b.offset; });

  {
    torch::NoGradGuard no_grad;
    for (const auto& name : prefilled)
      if (name.find("layernorm") != std::string::npos) model->parameter(name).fill_(1.0);
  }
  copy_sources(*model, sources, opts, ctx, prefilled);
  out.model = model;
  out.source_dtype = source_dtype;
  return out;
}

}  // namespace lorashear::io

namespace lorashear {

namespace {

std::string value_text(const io::Value& v, int depth = 0) {
  using namespace io::gguf;
  switch (v.type) {
    case kString:
      return v.s.size() > 120 ? "\"" + v.s.substr(0, 117) + "…\"" : "\"" + v.s + "\"";
    case kF32:
    case kF64: {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.9g", v.f);
      return buf;
    }
    case kBool:
      return v.i ? "true" : "false";
    case kArray: {
      const size_t n = v.items.size();
      const size_t shown = std::min<size_t>(n, n > 16 ? 4 : 16);
      std::string out = "[";
      if (n > 16) out += std::to_string(n) + " " + io::value_type_name(v.elem_type) + " values: ";
      for (size_t i = 0; i < shown; ++i)
        out += (i ? ", " : "") + (depth < 2 ? value_text(v.items[i], depth + 1) : "…");
      if (shown < n) out += ", …";
      return out + "]";
    }
    default:
      return v.is_unsigned() ? std::to_string(v.u) : std::to_string(v.i);
  }
}

}  // namespace

std::vector<std::pair<std::string, std::string>> gguf_metadata(const std::string& path) {
  const io::GgufFile g(path);
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& key : g.keys())
    out.emplace_back(key, value_text(*g.find(key)));
  return out;
}

}  // namespace lorashear
