#pragma once
// Tokenizer with two backends:
//  - SentencePiece: every vocabulary source (tokenizer.model, llama2.c tokenizer.bin, GGUF
//    metadata) is turned into one SentencePiece model, so the same text always gives the same ids;
//  - Hugging Face tokenizer.json (BPE model, byte-level or SentencePiece-style), giving the ids of
//    the `tokenizers` library.
// Thread-safe after construction: encode/decode may run on several threads at once.

#include <cstdint>
#include <functional>
#include <istream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace lorashear {

/// One vocabulary entry as stored by llama2.c / GGUF. `piece` uses U+2581 for spaces.
struct VocabEntry {
  enum class Type { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };
  std::string piece;
  float score = 0.0f;
  Type type = Type::Normal;
};

/// A token that the tokenizer treats as a unit (added tokens of tokenizer.json; SentencePiece's
/// control pieces).
struct SpecialToken {
  int64_t id = -1;
  std::string text;
};

class Tokenizer {
 public:
  enum class Backend { SentencePiece, HfBpe };
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  /// Any tokenizer file, by name: `*.json` → from_hf_json_file, `*.bin` → from_llama2c_file (with
  /// `vocab_size`), anything else → SentencePiece; a directory → its tokenizer.json, else its
  /// tokenizer.model. Throws InputError naming the path.
  static std::shared_ptr<Tokenizer> from_file(const std::string& path, int64_t vocab_size = 0);
  /// SentencePiece `tokenizer.model`. Throws InputError naming the file.
  static std::shared_ptr<Tokenizer> from_sentencepiece_file(const std::string& path);
  /// Serialized SentencePiece ModelProto bytes; `source` names it in errors.
  static std::shared_ptr<Tokenizer> from_serialized_proto(const std::string& bytes,
                                                          const std::string& source);
  /// llama2.c `tokenizer.bin` (int32 max_token_length, then per token {f32 score, i32 len, bytes}).
  /// `vocab_size` is the model's (the file does not store it); 0 reads to the end of the file.
  /// The file does not record whitespace handling either: by default runs of spaces are kept, as
  /// llama2.c's run.c and Llama 2's tokenizer.model do; `remove_extra_whitespaces` collapses them
  /// as a SentencePiece model trained with default options (e.g. tok512.model) does.
  static std::shared_ptr<Tokenizer> from_llama2c_file(const std::string& path,
                                                      int64_t vocab_size = 0,
                                                      bool remove_extra_whitespaces = false);
  /// A BPE vocabulary (GGUF `tokenizer.ggml.*`). `add_dummy_prefix` and `remove_extra_whitespaces`
  /// mirror SentencePiece's normaliser options (GGUF `tokenizer.ggml.add_space_prefix` and
  /// `tokenizer.ggml.remove_extra_whitespaces`; llama.cpp's defaults are true and false).
  /// bos/eos: ids of the begin/end tokens, -1 = the Control pieces `<s>` and `</s>` when present.
  /// Throws InputError naming `source` when the vocabulary cannot form a SentencePiece model.
  static std::shared_ptr<Tokenizer> from_vocab(const std::vector<VocabEntry>& vocab,
                                               bool add_dummy_prefix, const std::string& source,
                                               bool remove_extra_whitespaces = false,
                                               int64_t bos_id = -1, int64_t eos_id = -1);

  /// Hugging Face `tokenizer.json` (BPE model). tokenizer_config.json, special_tokens_map.json
  /// and generation_config.json in the same folder, when present, give BOS/EOS and the
  /// add_bos/add_eos policy. Throws InputError naming the file for malformed JSON, unsupported
  /// component types (model, normalizer, pre-tokenizer, decoder), regexes PCRE2 cannot compile
  /// (with PCRE2's message and offset) and broken merges.
  static std::shared_ptr<Tokenizer> from_hf_json_file(const std::string& path);
  /// The same from texts; empty side texts mean absent files. `source` names tokenizer.json.
  static std::shared_ptr<Tokenizer> from_hf_json(const std::string& tokenizer_json,
                                                 const std::string& source,
                                                 const std::string& tokenizer_config = "",
                                                 const std::string& special_tokens_map = "",
                                                 const std::string& generation_config = "");

  /// UTF-8 text → ids (bytes outside the vocabulary become byte pieces when the model has them).
  std::vector<int64_t> encode(const std::string& text, bool add_bos = false,
                              bool add_eos = false) const;
  /// A byte-level BPE vocabulary as llama.cpp stores it in GGUF (`tokenizer.ggml.model = "gpt2"`):
  /// tokens, their types (VocabEntry::Type values; Control → special added tokens, UserDefined →
  /// added tokens), merges ("a b"), the pre-tokenizer by llama.cpp's name (llama-bpe, qwen2,
  /// gpt-2, smollm), BOS/EOS ids (-1 = none) and whether BOS is added. Text is split as llama.cpp
  /// splits it (no normaliser). Throws InputError naming `source` for an unknown pre-tokenizer.
  static std::shared_ptr<Tokenizer> from_gguf_bpe(const std::vector<std::string>& tokens,
                                                  const std::vector<int64_t>& types,
                                                  const std::vector<std::string>& merges,
                                                  const std::string& pre, int64_t bos_id,
                                                  int64_t eos_id, bool add_bos,
                                                  const std::string& source);

  /// The ids of encode(whole stream) delivered in pieces, reading about `window_bytes` at a time
  /// (no BOS/EOS). tokenizer.json: windows are cut where ids cannot change (see hf_backend.cpp),
  /// so memory stays about one window; SentencePiece reads the whole stream first. Returns the
  /// number of bytes read.
  uint64_t encode_stream(std::istream& in,
                         const std::function<void(const std::vector<int64_t>&)>& on_ids,
                         size_t window_bytes = size_t(1) << 20) const;
  /// ids → text; control tokens (BOS/EOS) produce nothing. Throws UsageError for ids out of range.
  std::string decode(const std::vector<int64_t>& ids) const;
  /// Raw piece text of one id (with U+2581 for spaces). Throws UsageError for ids out of range.
  std::string piece(int64_t id) const;
  /// Number of ids: max id + 1 (tokenizer.json: over the model's vocabulary and added tokens).
  int64_t vocab_size() const;
  int64_t bos_id() const;  ///< -1 when the model has none
  int64_t eos_id() const;  ///< -1 when the model has none
  int64_t unk_id() const;  ///< -1 when the model has none (byte-level BPE)
  /// Every id that ends generation: eos_id() and generation_config.json's eos_token_id (an int
  /// or a list, as Llama 3.x has). Empty when there is none.
  std::vector<int64_t> eos_ids() const;
  /// Whether the model expects BOS / EOS around a text (tokenizer_config.json add_bos_token /
  /// add_eos_token, else the post-processor's template; SentencePiece: true / false).
  bool add_bos() const;
  bool add_eos() const;
  Backend backend() const;
  /// "SentencePiece", "BPE (tokenizer.json, byte-level)" or "BPE (tokenizer.json)".
  std::string kind() const;
  /// Added special tokens (tokenizer.json) or control pieces (SentencePiece), by id.
  std::vector<SpecialToken> special_tokens() const;
  /// One line for `info` and the Model dock: kind, ids, BOS/EOS and whether they are added,
  /// special tokens, e.g. "BPE (tokenizer.json, byte-level), 151669 ids; BOS not added; EOS
  /// <|im_end|> (151645), <|endoftext|> (151643); 26 special tokens: <|endoftext|>, …".
  std::string description() const;
  /// BPE merges in rank order as (left, right) pieces; empty for SentencePiece.
  std::vector<std::pair<std::string, std::string>> merges() const;
  /// llama.cpp's `tokenizer.ggml.pre` matching the pre-tokenizer ("qwen2", "llama-bpe",
  /// "smollm", "gpt-2", "default"); "" when unknown or for SentencePiece.
  std::string pre_tokenizer_name() const;
  /// The original files to write beside an exported model, as (file name, text):
  /// tokenizer.json, tokenizer_config.json (and special_tokens_map.json when there was one).
  /// Empty for SentencePiece.
  std::vector<std::pair<std::string, std::string>> hf_files() const;
  /// The SentencePiece model, ready to be written as `tokenizer.model`. Throws UsageError for a
  /// tokenizer.json tokenizer (write hf_files() instead).
  std::string serialized_model_proto() const;
  /// Vocabulary in llama2.c/GGUF form (pieces, scores, types). tokenizer.json: added special
  /// tokens are Control, other added tokens UserDefined, <0xXX> pieces Byte (with byte_fallback),
  /// the unk token Unknown, ids no entry names Unused; the score is minus the rank of the merge
  /// that creates the piece (0 for base symbols).
  std::vector<VocabEntry> vocab() const;
  /// The normaliser's options (GGUF `tokenizer.ggml.add_space_prefix` and
  /// `tokenizer.ggml.remove_extra_whitespaces`); SentencePiece's defaults when the model omits
  /// them. tokenizer.json: whether a U+2581 prefix is added (Prepend / Metaspace), and false.
  bool add_dummy_prefix() const;
  bool remove_extra_whitespaces() const;

 private:
  Tokenizer();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lorashear
