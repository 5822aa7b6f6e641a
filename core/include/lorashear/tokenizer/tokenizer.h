#pragma once
// Tokenizer backed by SentencePiece. Every vocabulary source (tokenizer.model, llama2.c
// tokenizer.bin, GGUF metadata) is turned into one SentencePiece model, so the same text always
// gives the same ids.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lorashear {

/// One vocabulary entry as stored by llama2.c / GGUF. `piece` uses U+2581 for spaces.
struct VocabEntry {
  enum class Type { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };
  std::string piece;
  float score = 0.0f;
  Type type = Type::Normal;
};

class Tokenizer {
 public:
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

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

  /// UTF-8 text → ids (bytes outside the vocabulary become byte pieces when the model has them).
  std::vector<int64_t> encode(const std::string& text, bool add_bos = false,
                              bool add_eos = false) const;
  /// ids → text; control tokens (BOS/EOS) produce nothing. Throws UsageError for ids out of range.
  std::string decode(const std::vector<int64_t>& ids) const;
  /// Raw piece text of one id (with U+2581 for spaces). Throws UsageError for ids out of range.
  std::string piece(int64_t id) const;
  int64_t vocab_size() const;
  int64_t bos_id() const;  ///< -1 when the model has none
  int64_t eos_id() const;  ///< -1 when the model has none
  int64_t unk_id() const;
  /// The SentencePiece model, ready to be written as `tokenizer.model`.
  std::string serialized_model_proto() const;
  /// Vocabulary in llama2.c/GGUF form (pieces, scores, types).
  std::vector<VocabEntry> vocab() const;
  /// The normaliser's options (GGUF `tokenizer.ggml.add_space_prefix` and
  /// `tokenizer.ggml.remove_extra_whitespaces`); SentencePiece's defaults when the model omits
  /// them.
  bool add_dummy_prefix() const;
  bool remove_extra_whitespaces() const;

 private:
  Tokenizer();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lorashear
