#pragma once
// Internal: a Hugging Face `tokenizer.json` tokenizer (BPE model) that gives the same ids as the
// `tokenizers` library. Regexes run on PCRE2, Unicode normalisation on ICU; neither appears here so
// that the public header stays free of them. Thread-safe: one instance may encode/decode from
// several threads at once (the word cache is guarded by a mutex).

#include <cstdint>
#include <functional>
#include <istream>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace lorashear::detail {

/// One entry of tokenizer.json's `added_tokens`.
struct HfAddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false, lstrip = false, rstrip = false, single_word = false, normalized = false;
};

class HfTokenizer {
 public:
  ~HfTokenizer();
  HfTokenizer(const HfTokenizer&) = delete;
  HfTokenizer& operator=(const HfTokenizer&) = delete;

  /// Parses the text of a tokenizer.json; `source` names it in errors. Throws InputError for
  /// malformed JSON, unknown component types, regexes PCRE2 cannot compile and broken merges.
  static std::unique_ptr<HfTokenizer> from_json(const std::string& text, const std::string& source);

  /// Text → ids, with added tokens matched first; no BOS/EOS (the caller adds them). Invalid UTF-8
  /// bytes are read as U+FFFD, as Python's errors="replace" does.
  std::vector<int32_t> encode(std::string_view text) const;
  /// The same ids as encode() on the whole stream, delivered per window of about `window` bytes;
  /// see the .cpp for where windows are cut. Returns the number of bytes read.
  uint64_t encode_stream(std::istream& in, size_t window,
                         const std::function<void(const std::vector<int32_t>&)>& on_ids) const;
  /// True when encode_stream can cut windows (otherwise it reads the whole stream first).
  bool stream_cuts() const;

  /// ids → text through the file's decoder; special added tokens are left out when `skip_special`.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special) const;

  int64_t vocab_size() const;  ///< max id + 1 over the model's vocabulary and the added tokens
  /// Raw token text of `id` ("" for an id no entry names; the caller checks the range).
  const std::string& piece(int64_t id) const;
  int64_t token_to_id(const std::string& piece) const;  ///< -1 when absent
  int64_t unk_id() const;                               ///< -1 when the model has no unk_token
  const std::vector<HfAddedToken>& added_tokens() const;
  /// Merges in rank order as (left, right) pieces.
  std::vector<std::pair<std::string, std::string>> merges() const;
  /// Rank of the merge that creates `id` (-1 for base symbols, added tokens and gaps).
  int64_t merge_rank_of(int64_t id) const;
  bool byte_level() const;     ///< a ByteLevel pre-tokenizer maps bytes to printable characters
  bool byte_fallback() const;  ///< unknown characters become <0xXX> byte tokens
  /// True when spaces become U+2581 and a leading one is added (Metaspace / Prepend ▁).
  bool adds_space_prefix() const;
  /// llama.cpp's `tokenizer.ggml.pre` for the pre-tokenizer, "" when it matches none we know.
  std::string pre_tokenizer_name() const;
  /// What the post-processor adds around a single sequence (empty for none).
  const std::vector<int32_t>& template_prefix() const;
  const std::vector<int32_t>& template_suffix() const;

 private:
  HfTokenizer();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The tokenizer.json `pre_tokenizer` object that llama.cpp's `tokenizer.ggml.pre` name stands for
/// ("llama-bpe", "qwen2", "gpt-2", "smollm"); null for a name it does not know.
nlohmann::json pre_tokenizer_for_llama_cpp(const std::string& name);

}  // namespace lorashear::detail
