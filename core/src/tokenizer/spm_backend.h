#pragma once
// Internal: SentencePiece reached through the liblorashear_spm.so shim (see core/spm/spm_api.h for
// why it is loaded at run time instead of linked). Thread-safe: one processor may encode/decode
// from several threads at once.

#include <memory>
#include <string>
#include <vector>

namespace lorashear::detail {

class SpmProcessor {
 public:
  ~SpmProcessor();
  SpmProcessor(const SpmProcessor&) = delete;
  SpmProcessor& operator=(const SpmProcessor&) = delete;

  /// Loads a serialized ModelProto; on failure returns null and sets `*error`.
  static std::unique_ptr<SpmProcessor> load(const std::string& proto, std::string* error);

  std::vector<int> encode(const std::string& text) const;  ///< throws Error
  std::string decode(const std::vector<int>& ids) const;   ///< ids must be valid; throws Error
  int piece_size() const;
  std::string id_to_piece(int id) const;  ///< id must be valid
  float score(int id) const;
  int unk_id() const;
  int bos_id() const;  ///< -1 when absent
  int eos_id() const;

 private:
  explicit SpmProcessor(void* handle) : handle_(handle) {}
  void* handle_;
};

/// SentencePieceTrainer::Train with trainer flags given as "key=value" lines ("input=FILE\n
/// vocab_size=512\n..."); returns the serialized model. Throws Error with SentencePiece's message.
std::string spm_train(const std::string& args);

}  // namespace lorashear::detail
