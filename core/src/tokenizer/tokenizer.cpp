#include "lorashear/tokenizer/tokenizer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>

#include "lorashear/errors.h"
#include "tokenizer/hf_backend.h"
#include "tokenizer/spm_backend.h"

namespace lorashear {
namespace {

// SentencePiece's meta symbol for a space (U+2581, "▁").
constexpr const char* kSpaceSymbol = "\xe2\x96\x81";

// libsentencepiece-dev ships no generated protobuf headers, so vocabularies from other formats are
// turned into a ModelProto by writing the wire format directly. Field numbers are those of
// sentencepiece_model.proto; the values mirror what SentencePiece's own trainer writes for a BPE
// model with byte fallback (checked against tok512.model).
class ProtoWriter {
 public:
  void varint(int field, uint64_t v) {
    key(field, 0);
    raw_varint(v);
  }
  // int32 fields are sign-extended to 64 bits on the wire, so -1 takes ten bytes.
  void int32(int field, int32_t v) {
    varint(field, static_cast<uint64_t>(static_cast<int64_t>(v)));
  }
  void boolean(int field, bool v) { varint(field, v ? 1 : 0); }
  void fixed32(int field, float v) {
    key(field, 5);
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    for (int i = 0; i < 4; ++i)
      out_.push_back(static_cast<char>((bits >> (8 * i)) & 0xff));
  }
  void bytes(int field, const std::string& s) {
    key(field, 2);
    raw_varint(s.size());
    out_ += s;
  }
  const std::string& str() const { return out_; }

 private:
  void key(int field, int wire) { raw_varint((static_cast<uint64_t>(field) << 3) | wire); }
  void raw_varint(uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out_.push_back(static_cast<char>(v));
  }
  std::string out_;
};

// Reads the fields of one message; enough to recover piece types, which the processor's API
// does not fully expose (there is no IsUserDefined in SentencePiece 0.1.x).
class ProtoReader {
 public:
  explicit ProtoReader(const std::string& s) : p_(s.data()), end_(s.data() + s.size()) {}
  bool next(int* field, int* wire) {
    if (p_ >= end_) return false;
    uint64_t k = raw_varint();
    *field = static_cast<int>(k >> 3);
    *wire = static_cast<int>(k & 7);
    return true;
  }
  uint64_t varint() { return raw_varint(); }
  std::string bytes() {
    uint64_t n = raw_varint();
    if (n > static_cast<uint64_t>(end_ - p_)) throw Error("truncated protobuf message");
    std::string s(p_, n);
    p_ += n;
    return s;
  }
  void skip(int wire) {
    switch (wire) {
      case 0:
        raw_varint();
        break;
      case 1:
        advance(8);
        break;
      case 2:
        bytes();
        break;
      case 5:
        advance(4);
        break;
      default:
        throw Error("unsupported protobuf wire type");
    }
  }

 private:
  void advance(size_t n) {
    if (n > static_cast<size_t>(end_ - p_)) throw Error("truncated protobuf message");
    p_ += n;
  }
  uint64_t raw_varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ >= end_) throw Error("truncated protobuf varint");
      auto c = static_cast<uint8_t>(*p_++);
      v |= static_cast<uint64_t>(c & 0x7f) << shift;
      if (!(c & 0x80)) return v;
    }
    throw Error("malformed protobuf varint");
  }
  const char* p_;
  const char* end_;
};

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
  return s;
}

bool is_byte_piece(const std::string& s) {
  if (s.size() != 6 || s.compare(0, 3, "<0x") != 0 || s[5] != '>') return false;
  for (int i = 3; i < 5; ++i) {
    char c = s[i];
    if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'))) return false;
  }
  return true;
}

std::string trim_newlines(const std::string& s) {
  size_t b = s.find_first_not_of("\n");
  if (b == std::string::npos) return {};
  size_t e = s.find_last_not_of("\n");
  return s.substr(b, e - b + 1);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open tokenizer file");
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

struct Tokenizer::Impl {
  std::unique_ptr<detail::SpmProcessor> sp;
  std::string proto;  // serialized ModelProto the processor was loaded from

  // tokenizer.json backend (sp is null then).
  std::unique_ptr<detail::HfTokenizer> hf;
  std::vector<std::pair<std::string, std::string>> hf_files;
  int64_t bos = -1, eos = -1;
  bool add_bos = true, add_eos = false;
  std::vector<int64_t> eos_ids;

  void check_id(int64_t id, int64_t n) const {
    if (id < 0 || id >= n)
      throw UsageError("tokenizer: id " + std::to_string(id) + " is outside the vocabulary of " +
                       std::to_string(n));
  }
};

Tokenizer::Tokenizer() : impl_(std::make_unique<Impl>()) {}
Tokenizer::~Tokenizer() = default;

std::shared_ptr<Tokenizer> Tokenizer::from_sentencepiece_file(const std::string& path) {
  return from_serialized_proto(read_file(path), path);
}

std::shared_ptr<Tokenizer> Tokenizer::from_serialized_proto(const std::string& bytes,
                                                            const std::string& source) {
  if (bytes.empty()) throw InputError(source + ": empty SentencePiece model");
  std::shared_ptr<Tokenizer> tok(new Tokenizer());
  std::string error;
  tok->impl_->sp = detail::SpmProcessor::load(bytes, &error);
  if (!tok->impl_->sp)
    throw InputError(source + ": not a valid SentencePiece model (" + error + ")");
  if (tok->impl_->sp->piece_size() <= 0)
    throw InputError(source + ": SentencePiece model has no pieces");
  tok->impl_->proto = bytes;
  return tok;
}

std::shared_ptr<Tokenizer> Tokenizer::from_llama2c_file(const std::string& path, int64_t vocab_size,
                                                        bool remove_extra_whitespaces) {
  const std::string data = read_file(path);
  if (vocab_size < 0) throw UsageError(path + ": negative vocab_size");
  size_t pos = 0;
  auto read_i32 = [&](const char* what, size_t index) {
    if (data.size() - pos < 4)
      throw InputError(path + ": truncated tokenizer.bin: " + what + " of token " +
                       std::to_string(index) + " is missing (file has " +
                       std::to_string(data.size()) + " bytes)");
    int32_t v;
    std::memcpy(&v, data.data() + pos, 4);
    pos += 4;
    return v;
  };
  if (data.size() < 4) throw InputError(path + ": not a llama2.c tokenizer.bin (too short)");
  const int32_t max_token_length = read_i32("header", 0);
  // Real files store the longest piece in bytes; anything else means this is not a tokenizer.bin.
  if (max_token_length <= 0 || max_token_length > 4096)
    throw InputError(path + ": not a llama2.c tokenizer.bin (max_token_length " +
                     std::to_string(max_token_length) + ", expected 1..4096)");

  std::vector<VocabEntry> vocab;
  while (vocab_size > 0 ? static_cast<int64_t>(vocab.size()) < vocab_size : pos < data.size()) {
    const size_t index = vocab.size();
    float score;
    int32_t bits = read_i32("score", index);
    std::memcpy(&score, &bits, 4);
    const int32_t len = read_i32("length", index);
    if (len <= 0 || len > max_token_length)
      throw InputError(path + ": token " + std::to_string(index) + " has length " +
                       std::to_string(len) + ", expected 1.." + std::to_string(max_token_length));
    if (data.size() - pos < static_cast<size_t>(len))
      throw InputError(path + ": truncated tokenizer.bin: token " + std::to_string(index) +
                       " needs " + std::to_string(len) + " bytes, " +
                       std::to_string(data.size() - pos) + " left");
    std::string text = data.substr(pos, len);
    pos += len;

    VocabEntry e;
    e.score = score;
    // llama2.c's exporter writes BOS/EOS as "\n<s>\n" / "\n</s>\n" and replaces U+2581 by spaces.
    const std::string trimmed = trim_newlines(text);
    if (index == 0 && text == "<unk>") {
      e.type = VocabEntry::Type::Unknown;
      e.piece = text;
    } else if (trimmed == "<s>" || trimmed == "</s>") {
      e.type = VocabEntry::Type::Control;
      e.piece = trimmed;
    } else if (is_byte_piece(text)) {
      e.type = VocabEntry::Type::Byte;
      e.piece = text;
    } else {
      e.piece = replace_all(text, " ", kSpaceSymbol);
    }
    vocab.push_back(std::move(e));
  }
  if (vocab.empty()) throw InputError(path + ": tokenizer.bin holds no tokens");
  return from_vocab(vocab, /*add_dummy_prefix=*/true, path, remove_extra_whitespaces);
}

std::shared_ptr<Tokenizer> Tokenizer::from_vocab(const std::vector<VocabEntry>& vocab,
                                                 bool add_dummy_prefix, const std::string& source,
                                                 bool remove_extra_whitespaces, int64_t bos_id,
                                                 int64_t eos_id) {
  const int64_t n = static_cast<int64_t>(vocab.size());
  if (n == 0) throw InputError(source + ": empty vocabulary");
  if (n > std::numeric_limits<int32_t>::max())
    throw InputError(source + ": vocabulary too large (" + std::to_string(n) + " entries)");
  for (int64_t id : {bos_id, eos_id})
    if (id >= n)
      throw InputError(source + ": special token id " + std::to_string(id) +
                       " is outside the vocabulary of " + std::to_string(n));

  int64_t unk_id = -1;
  bool has_bytes = false;
  for (int64_t i = 0; i < n; ++i) {
    const auto& e = vocab[i];
    if (e.piece.empty()) throw InputError(source + ": token " + std::to_string(i) + " is empty");
    if (e.type == VocabEntry::Type::Unknown && unk_id < 0) unk_id = i;
    if (e.type == VocabEntry::Type::Byte) has_bytes = true;
    if (bos_id < 0 && e.piece == "<s>" && e.type == VocabEntry::Type::Control) bos_id = i;
    if (eos_id < 0 && e.piece == "</s>" && e.type == VocabEntry::Type::Control) eos_id = i;
  }
  if (unk_id < 0)
    throw InputError(source +
                     ": vocabulary has no unknown token (type 2), SentencePiece needs one");

  ProtoWriter model;
  for (const auto& e : vocab) {
    ProtoWriter p;
    p.bytes(1, e.piece);
    p.fixed32(2, e.score);
    if (e.type != VocabEntry::Type::Normal) p.varint(3, static_cast<uint64_t>(e.type));
    model.bytes(1, p.str());
  }

  ProtoWriter trainer;
  trainer.varint(3, 2);  // model_type = BPE
  trainer.int32(4, static_cast<int32_t>(n));
  trainer.boolean(26, true);  // allow_whitespace_only_pieces, as llama2.c's vocabularies use
  trainer.boolean(35, has_bytes);
  trainer.int32(40, static_cast<int32_t>(unk_id));
  trainer.int32(41, static_cast<int32_t>(bos_id));
  trainer.int32(42, static_cast<int32_t>(eos_id));
  trainer.int32(43, -1);
  // The processor finds BOS/EOS/UNK by piece text, so name the actual pieces.
  trainer.bytes(45, vocab[unk_id].piece);
  if (bos_id >= 0) trainer.bytes(46, vocab[bos_id].piece);
  if (eos_id >= 0) trainer.bytes(47, vocab[eos_id].piece);
  model.bytes(2, trainer.str());

  ProtoWriter normalizer;
  normalizer.bytes(1, "identity");
  normalizer.bytes(2, "");
  normalizer.boolean(3, add_dummy_prefix);
  normalizer.boolean(4, remove_extra_whitespaces);
  normalizer.boolean(5, true);
  model.bytes(3, normalizer.str());

  return from_serialized_proto(model.str(), source);
}

std::vector<int64_t> Tokenizer::encode(const std::string& text, bool add_bos, bool add_eos) const {
  if (impl_->hf) {
    const std::vector<int32_t> ids = impl_->hf->encode(text);
    std::vector<int64_t> out;
    out.reserve(ids.size() + 2);
    if (add_bos && impl_->bos >= 0) out.push_back(impl_->bos);
    out.insert(out.end(), ids.begin(), ids.end());
    if (add_eos && impl_->eos >= 0) out.push_back(impl_->eos);
    return out;
  }
  const std::vector<int> ids = impl_->sp->encode(text);
  std::vector<int64_t> out;
  out.reserve(ids.size() + 2);
  if (add_bos && bos_id() >= 0) out.push_back(bos_id());
  out.insert(out.end(), ids.begin(), ids.end());
  if (add_eos && eos_id() >= 0) out.push_back(eos_id());
  return out;
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids) const {
  const int64_t n = vocab_size();
  if (impl_->hf) {
    std::vector<int32_t> narrow;
    narrow.reserve(ids.size());
    for (int64_t id : ids) {
      impl_->check_id(id, n);
      narrow.push_back(static_cast<int32_t>(id));
    }
    return impl_->hf->decode(narrow, /*skip_special=*/true);
  }
  std::vector<int> narrow;
  narrow.reserve(ids.size());
  for (int64_t id : ids) {
    if (id < 0 || id >= n)
      throw UsageError("tokenizer: id " + std::to_string(id) + " is outside the vocabulary of " +
                       std::to_string(n));
    narrow.push_back(static_cast<int>(id));
  }
  return impl_->sp->decode(narrow);
}

std::string Tokenizer::piece(int64_t id) const {
  if (id < 0 || id >= vocab_size())
    throw UsageError("tokenizer: id " + std::to_string(id) + " is outside the vocabulary of " +
                     std::to_string(vocab_size()));
  if (impl_->hf) return impl_->hf->piece(id);
  return impl_->sp->id_to_piece(static_cast<int>(id));
}

int64_t Tokenizer::vocab_size() const {
  return impl_->hf ? impl_->hf->vocab_size() : impl_->sp->piece_size();
}
int64_t Tokenizer::bos_id() const {
  return impl_->hf ? impl_->bos : impl_->sp->bos_id();
}
int64_t Tokenizer::eos_id() const {
  return impl_->hf ? impl_->eos : impl_->sp->eos_id();
}
int64_t Tokenizer::unk_id() const {
  return impl_->hf ? impl_->hf->unk_id() : impl_->sp->unk_id();
}

std::string Tokenizer::serialized_model_proto() const {
  if (impl_->hf)
    throw UsageError(
        "tokenizer: a tokenizer.json tokenizer has no SentencePiece model (tokenizer.model); "
        "write its tokenizer.json instead");
  return impl_->proto;
}

namespace {

// A boolean of the ModelProto's normalizer_spec (field 3); `fallback` when absent (proto2 default).
bool normalizer_flag(const std::string& proto, int flag, bool fallback) {
  bool value = fallback;
  ProtoReader model(proto);
  int field, wire;
  while (model.next(&field, &wire)) {
    if (field != 3 || wire != 2) {
      model.skip(wire);
      continue;
    }
    const std::string body = model.bytes();
    ProtoReader spec(body);
    while (spec.next(&field, &wire)) {
      if (field == flag && wire == 0)
        value = spec.varint() != 0;
      else
        spec.skip(wire);
    }
  }
  return value;
}

}  // namespace

bool Tokenizer::add_dummy_prefix() const {
  if (impl_->hf) return impl_->hf->adds_space_prefix();
  return normalizer_flag(impl_->proto, 3, true);
}

bool Tokenizer::remove_extra_whitespaces() const {
  if (impl_->hf) return false;
  return normalizer_flag(impl_->proto, 4, true);
}

std::vector<VocabEntry> Tokenizer::vocab() const {
  std::vector<VocabEntry> out;
  if (impl_->hf) {
    const auto& hf = *impl_->hf;
    const int64_t n = hf.vocab_size();
    out.resize(static_cast<size_t>(n));
    std::vector<int8_t> added(static_cast<size_t>(n), 0);  // 1 normal added, 2 special
    for (const auto& a : hf.added_tokens())
      added[a.id] = a.special ? 2 : 1;
    for (int64_t id = 0; id < n; ++id) {
      VocabEntry& e = out[id];
      e.piece = hf.piece(id);
      const int64_t rank = hf.merge_rank_of(id);
      e.score = rank >= 0 ? -static_cast<float>(rank) : 0.0f;
      if (added[id] == 2)
        e.type = VocabEntry::Type::Control;
      else if (added[id] == 1)
        e.type = VocabEntry::Type::UserDefined;
      else if (id == hf.unk_id())
        e.type = VocabEntry::Type::Unknown;
      else if (e.piece.empty())
        e.type = VocabEntry::Type::Unused;
      else if (hf.byte_fallback() && is_byte_piece(e.piece))
        e.type = VocabEntry::Type::Byte;
      if (e.piece.empty()) e.piece = "[PAD" + std::to_string(id) + "]";
    }
    return out;
  }
  out.reserve(static_cast<size_t>(vocab_size()));
  ProtoReader model(impl_->proto);
  int field, wire;
  while (model.next(&field, &wire)) {
    if (field != 1 || wire != 2) {
      model.skip(wire);
      continue;
    }
    const std::string body = model.bytes();
    ProtoReader p(body);
    VocabEntry e;
    while (p.next(&field, &wire)) {
      if (field == 1 && wire == 2) {
        e.piece = p.bytes();
      } else if (field == 3 && wire == 0) {
        e.type = static_cast<VocabEntry::Type>(p.varint());
      } else {
        p.skip(wire);
      }
    }
    e.score = impl_->sp->score(static_cast<int>(out.size()));
    out.push_back(std::move(e));
  }
  return out;
}

// ---- tokenizer.json
// -------------------------------------------------------------------------------

namespace {

// A side file's JSON, or null when the text is empty. Errors name the file.
nlohmann::json parse_side(const std::string& text, const std::string& name) {
  if (text.empty()) return nullptr;
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(name + ": not valid JSON: " + e.what());
  }
}

// bos_token / eos_token: a string, or an AddedToken object {"content": ...}.
std::string token_text(const nlohmann::json& config, const char* key) {
  if (!config.is_object()) return {};
  auto it = config.find(key);
  if (it == config.end()) return {};
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && it->at("content").is_string())
    return it->at("content").get<std::string>();
  return {};
}

std::string read_optional(const std::filesystem::path& p) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(p, ec)) return {};
  return read_file(p.string());
}

}  // namespace

std::shared_ptr<Tokenizer> Tokenizer::from_file(const std::string& path, int64_t vocab_size) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path p(path);
  if (fs::is_directory(p, ec)) {
    if (fs::is_regular_file(p / "tokenizer.json", ec))
      return from_hf_json_file((p / "tokenizer.json").string());
    if (fs::is_regular_file(p / "tokenizer.model", ec))
      return from_sentencepiece_file((p / "tokenizer.model").string());
    throw InputError(path + ": directory has no tokenizer.json or tokenizer.model");
  }
  if (!fs::is_regular_file(p, ec)) throw InputError(path + ": tokenizer file not found");
  if (p.extension() == ".json") return from_hf_json_file(path);
  if (p.extension() == ".bin") return from_llama2c_file(path, vocab_size);
  return from_sentencepiece_file(path);
}

std::shared_ptr<Tokenizer> Tokenizer::from_hf_json_file(const std::string& path) {
  const std::string text = read_file(path);
  const auto dir = std::filesystem::path(path).parent_path();
  return from_hf_json(text, path, read_optional(dir / "tokenizer_config.json"),
                      read_optional(dir / "special_tokens_map.json"),
                      read_optional(dir / "generation_config.json"));
}

std::shared_ptr<Tokenizer> Tokenizer::from_gguf_bpe(const std::vector<std::string>& tokens,
                                                    const std::vector<int64_t>& types,
                                                    const std::vector<std::string>& merges,
                                                    const std::string& pre, int64_t bos_id,
                                                    int64_t eos_id, bool add_bos,
                                                    const std::string& source) {
  auto pre_tokenizer = detail::pre_tokenizer_for_llama_cpp(pre);
  if (pre_tokenizer.is_null())
    throw InputError(source + ": pre-tokenizer '" + pre +
                     "' (tokenizer.ggml.pre) is not supported (supported: llama-bpe, qwen2, "
                     "gpt-2, smollm); pass the model's tokenizer.json with --tokenizer");
  nlohmann::json vocab = nlohmann::json::object(), added = nlohmann::json::array();
  for (size_t id = 0; id < tokens.size(); ++id) {
    const int64_t type = id < types.size() ? types[id] : 1;
    const bool control = type == static_cast<int64_t>(VocabEntry::Type::Control);
    const bool user = type == static_cast<int64_t>(VocabEntry::Type::UserDefined);
    if (control || user) {
      added.push_back({{"id", id},
                       {"content", tokens[id]},
                       {"single_word", false},
                       {"lstrip", false},
                       {"rstrip", false},
                       {"normalized", !control},
                       {"special", control}});
    } else if (type != static_cast<int64_t>(VocabEntry::Type::Unused)) {
      vocab[tokens[id]] = id;
    }
  }
  nlohmann::json j = {{"version", "1.0"},
                      {"added_tokens", added},
                      {"normalizer", nullptr},
                      {"pre_tokenizer", pre_tokenizer},
                      {"post_processor", nullptr},
                      {"decoder",
                       {{"type", "ByteLevel"},
                        {"add_prefix_space", false},
                        {"trim_offsets", false},
                        {"use_regex", false}}},
                      {"model",
                       {{"type", "BPE"},
                        {"dropout", nullptr},
                        {"unk_token", nullptr},
                        {"continuing_subword_prefix", ""},
                        {"end_of_word_suffix", ""},
                        {"fuse_unk", false},
                        {"byte_fallback", false},
                        {"ignore_merges", false},
                        {"vocab", vocab},
                        {"merges", merges}}}};
  auto token = [&](int64_t id) {
    return id >= 0 && id < static_cast<int64_t>(tokens.size()) ? nlohmann::json(tokens[id])
                                                               : nlohmann::json();
  };
  const nlohmann::json config = {{"add_bos_token", add_bos && bos_id >= 0},
                                 {"add_eos_token", false},
                                 {"bos_token", token(bos_id)},
                                 {"eos_token", token(eos_id)}};
  return from_hf_json(j.dump(), source, config.dump());
}

std::shared_ptr<Tokenizer> Tokenizer::from_hf_json(const std::string& tokenizer_json,
                                                   const std::string& source,
                                                   const std::string& tokenizer_config,
                                                   const std::string& special_tokens_map,
                                                   const std::string& generation_config) {
  std::shared_ptr<Tokenizer> tok(new Tokenizer());
  Impl& im = *tok->impl_;
  im.hf = detail::HfTokenizer::from_json(tokenizer_json, source);
  const auto& hf = *im.hf;
  const auto dir = std::filesystem::path(source).parent_path();
  const auto side = [&](const char* name) { return (dir / name).string(); };
  const nlohmann::json config = parse_side(tokenizer_config, side("tokenizer_config.json"));
  const nlohmann::json special_map =
      parse_side(special_tokens_map, side("special_tokens_map.json"));
  const nlohmann::json gen = parse_side(generation_config, side("generation_config.json"));
  const int64_t n = hf.vocab_size();

  // A token named in the side files: its id, or -1 when no piece has that text.
  auto named = [&](const char* key) -> int64_t {
    std::string t = token_text(config, key);
    if (t.empty()) t = token_text(special_map, key);
    return t.empty() ? -1 : hf.token_to_id(t);
  };
  // generation_config.json ids: an int or a list of ints; out-of-range ids are refused.
  auto gen_ids = [&](const char* key) {
    std::vector<int64_t> ids;
    if (!gen.is_object() || !gen.contains(key)) return ids;
    const nlohmann::json& v = gen.at(key);
    auto take = [&](const nlohmann::json& x) {
      if (!x.is_number_integer()) return;
      const int64_t id = x.get<int64_t>();
      if (id < 0 || id >= n)
        throw InputError(side("generation_config.json") + ": " + key + " " + std::to_string(id) +
                         " is outside the vocabulary of " + std::to_string(n));
      ids.push_back(id);
    };
    if (v.is_array())
      for (const auto& x : v)
        take(x);
    else
      take(v);
    return ids;
  };

  const auto& prefix = hf.template_prefix();
  const auto& suffix = hf.template_suffix();
  const auto gen_bos = gen_ids("bos_token_id");
  const auto gen_eos = gen_ids("eos_token_id");
  im.bos = named("bos_token");
  if (im.bos < 0 && !prefix.empty()) im.bos = prefix.front();
  if (im.bos < 0 && !gen_bos.empty()) im.bos = gen_bos.front();
  im.eos = named("eos_token");
  if (im.eos < 0 && !suffix.empty()) im.eos = suffix.back();
  if (im.eos < 0 && !gen_eos.empty()) im.eos = gen_eos.front();
  im.add_bos = config.is_object() && config.contains("add_bos_token") &&
                       config.at("add_bos_token").is_boolean()
                   ? config.at("add_bos_token").get<bool>()
                   : !prefix.empty();
  im.add_eos = config.is_object() && config.contains("add_eos_token") &&
                       config.at("add_eos_token").is_boolean()
                   ? config.at("add_eos_token").get<bool>()
                   : !suffix.empty();
  if (im.eos >= 0) im.eos_ids.push_back(im.eos);
  for (int64_t id : gen_eos)
    if (std::find(im.eos_ids.begin(), im.eos_ids.end(), id) == im.eos_ids.end())
      im.eos_ids.push_back(id);

  im.hf_files.emplace_back("tokenizer.json", tokenizer_json);
  if (!tokenizer_config.empty()) {
    im.hf_files.emplace_back("tokenizer_config.json", tokenizer_config);
  } else {
    // What transformers' AutoTokenizer needs beside a bare tokenizer.json.
    auto text_of = [&](int64_t id) -> nlohmann::json {
      return id >= 0 ? nlohmann::json(hf.piece(id)) : nlohmann::json(nullptr);
    };
    const nlohmann::json synth = {{"tokenizer_class", "PreTrainedTokenizerFast"},
                                  {"bos_token", text_of(im.bos)},
                                  {"eos_token", text_of(im.eos)},
                                  {"add_bos_token", im.add_bos},
                                  {"add_eos_token", im.add_eos},
                                  {"clean_up_tokenization_spaces", false}};
    im.hf_files.emplace_back("tokenizer_config.json", synth.dump(2) + "\n");
  }
  if (!special_tokens_map.empty())
    im.hf_files.emplace_back("special_tokens_map.json", special_tokens_map);
  return tok;
}

uint64_t Tokenizer::encode_stream(std::istream& in,
                                  const std::function<void(const std::vector<int64_t>&)>& on_ids,
                                  size_t window_bytes) const {
  std::vector<int64_t> wide;
  if (impl_->hf)
    return impl_->hf->encode_stream(in, window_bytes, [&](const std::vector<int32_t>& ids) {
      wide.assign(ids.begin(), ids.end());
      on_ids(wide);
    });
  // SentencePiece's dummy prefix and whitespace handling make any cut visible: read it all.
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw InputError("tokenize: read error on the input stream");
  wide = encode(text);
  if (!wide.empty()) on_ids(wide);
  return text.size();
}

std::vector<int64_t> Tokenizer::eos_ids() const {
  if (impl_->hf) return impl_->eos_ids;
  if (eos_id() >= 0) return {eos_id()};
  return {};
}

bool Tokenizer::add_bos() const {
  return impl_->hf ? impl_->add_bos : true;
}

bool Tokenizer::add_eos() const {
  return impl_->hf ? impl_->add_eos : false;
}

Tokenizer::Backend Tokenizer::backend() const {
  return impl_->hf ? Backend::HfBpe : Backend::SentencePiece;
}

std::string Tokenizer::kind() const {
  if (!impl_->hf) return "SentencePiece";
  return impl_->hf->byte_level() ? "BPE (tokenizer.json, byte-level)" : "BPE (tokenizer.json)";
}

std::vector<SpecialToken> Tokenizer::special_tokens() const {
  std::vector<SpecialToken> out;
  if (impl_->hf) {
    for (const auto& a : impl_->hf->added_tokens())
      if (a.special) out.push_back({a.id, a.content});
  } else {
    const auto entries = vocab();
    for (size_t id = 0; id < entries.size(); ++id)
      if (entries[id].type == VocabEntry::Type::Control)
        out.push_back({static_cast<int64_t>(id), entries[id].piece});
  }
  std::sort(out.begin(), out.end(),
            [](const SpecialToken& a, const SpecialToken& b) { return a.id < b.id; });
  return out;
}

std::string Tokenizer::description() const {
  auto name = [&](int64_t id) {
    std::string text;
    try {
      text = piece(id);
    } catch (const Error&) {
      text = "?";
    }
    return text + " (" + std::to_string(id) + ")";
  };
  std::string out = kind() + ", " + std::to_string(vocab_size()) + " ids";
  if (!merges().empty()) out += ", " + std::to_string(merges().size()) + " merges";
  if (const auto pre = pre_tokenizer_name(); !pre.empty()) out += ", pre-tokenizer " + pre;
  out += "; BOS ";
  out += bos_id() >= 0 ? name(bos_id()) + (add_bos() ? " added" : " not added")
                       : std::string(add_bos() ? "added (none defined)" : "none");
  out += "; EOS ";
  const auto eos = eos_ids();
  if (eos.empty()) out += "none";
  for (size_t i = 0; i < eos.size(); ++i)
    out += (i ? ", " : "") + name(eos[i]);
  if (add_eos()) out += " (added)";
  const auto special = special_tokens();
  out += "; " + std::to_string(special.size()) + " special tokens";
  for (size_t i = 0; i < special.size() && i < 4; ++i)
    out += (i ? ", " : ": ") + special[i].text;
  if (special.size() > 4) out += ", …";
  return out;
}

std::vector<std::pair<std::string, std::string>> Tokenizer::merges() const {
  return impl_->hf ? impl_->hf->merges() : std::vector<std::pair<std::string, std::string>>{};
}

std::string Tokenizer::pre_tokenizer_name() const {
  return impl_->hf ? impl_->hf->pre_tokenizer_name() : std::string();
}

std::vector<std::pair<std::string, std::string>> Tokenizer::hf_files() const {
  return impl_->hf_files;
}

}  // namespace lorashear
