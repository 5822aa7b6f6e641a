#pragma once
// Pretraining-style recovery data (LORASHEAR.md §4): categories (domains) of text, read lazily,
// tokenised and packed into fixed-length sequences in a background thread, shuffled by seed.
//
// A category is one text file, one folder of text files, or one `source` of a JSON Lines file.
// Documents: a JSON Lines record's "text" field; a paragraph (text up to a blank line) of a plain
// text file. Each document starts with BOS; documents are concatenated and cut into sequences of
// seq_len + 1 tokens (inputs and their next-token targets). The first `validation` sequences of a
// category are its validation set; training reads the rest, through a shuffle buffer, epoch after
// epoch. Everything depends only on the files and the seed, so the n-th training sequence of a
// category is the same in every run — a resumed run skips what it had consumed.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace lorashear {

class Tokenizer;

struct CorpusOptions {
  /// Skip malformed JSON lines (counted) instead of refusing the file.
  bool skip_bad_lines = false;
};

struct Category {
  std::string name;                ///< file stem, folder name, or the JSONL source
  std::vector<std::string> files;  ///< read in this order
  std::string source;              ///< non-empty: only JSONL records with this "source"
};

/// Categories from files and folders (`specs`, in order). A folder is one category (its .txt,
/// .text, .raw, .md and .jsonl files, recursively, sorted); a JSON Lines file whose records carry
/// a "source" field gives one category per source (one pass over the file); any other file is
/// one category. Names are made unique. Throws InputError naming the path when a spec is missing,
/// a folder has no text files, or a file has no document.
std::vector<Category> discover_categories(const std::vector<std::string>& specs,
                                          const CorpusOptions& options = {});

/// A category's documents, one at a time, read lazily.
class DocumentReader {
 public:
  DocumentReader(Category category, CorpusOptions options);
  /// The next document, or false at the end of the last file. Throws InputError naming the file
  /// and line for a malformed JSON line (unless skip_bad_lines) or a record without "text".
  bool next(std::string& document);
  int64_t skipped_lines() const { return skipped_; }

 private:
  bool open_next_file();
  Category category_;
  CorpusOptions options_;
  size_t file_index_ = 0;
  std::ifstream in_;
  std::string path_;
  bool jsonl_ = false;
  int64_t line_ = 0;
  int64_t skipped_ = 0;
};

struct PackingOptions {
  int64_t seq_len = 128;    ///< a sequence holds seq_len + 1 tokens
  int64_t validation = 16;  ///< first sequences of the category kept for validation
  int64_t shuffle_buffer = 1024;
  int64_t queue_capacity = 256;  ///< packed sequences the background thread keeps ready
  uint64_t seed = 0;
  CorpusOptions corpus;
};

/// One category's packed sequences. The constructor reads the validation sequences; training
/// sequences come from a background thread (read → tokenise → pack → shuffle) through a bounded
/// queue, so the trainer only waits when the thread falls behind (measured in `waited_seconds`).
class CategoryStream {
 public:
  /// `start_at`: training sequences already consumed (resume). Throws InputError when the
  /// category holds fewer than validation + 1 sequences.
  CategoryStream(Category category, std::shared_ptr<const Tokenizer> tokenizer,
                 PackingOptions options, int64_t start_at = 0);
  ~CategoryStream();
  CategoryStream(const CategoryStream&) = delete;
  CategoryStream& operator=(const CategoryStream&) = delete;

  const Category& category() const { return category_; }
  /// [validation, seq_len + 1] int64.
  const std::vector<std::vector<int64_t>>& validation() const { return validation_; }
  /// The next training sequence (seq_len + 1 tokens). Rethrows the reader thread's error.
  std::vector<int64_t> next();
  int64_t consumed() const { return consumed_; }
  int64_t epoch() const;
  /// Time next() waited for the reader thread after the first sequence, and how many calls did.
  double waited_seconds() const { return waited_; }
  int64_t stalls() const { return stalls_; }
  /// The first next() call's wait (the shuffle buffer filling).
  double startup_seconds() const { return startup_; }
  int64_t skipped_lines() const { return skipped_lines_.load(); }

 private:
  void produce(int64_t to_skip);
  Category category_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  PackingOptions options_;
  std::vector<std::vector<int64_t>> validation_;
  int64_t consumed_ = 0;
  double waited_ = 0, startup_ = 0;
  int64_t stalls_ = 0;
  bool first_ = true;
  std::atomic<int64_t> skipped_lines_{0};
  std::atomic<int64_t> epoch_{0};

  std::mutex mutex_;
  std::condition_variable ready_, space_;
  std::deque<std::vector<int64_t>> queue_;
  std::exception_ptr error_;
  bool stop_ = false;
  std::thread thread_;
};

/// Packs documents into sequences of `length` tokens: BOS + tokens of each document,
/// concatenated. Used by CategoryStream; exposed for the tests.
class SequencePacker {
 public:
  SequencePacker(const Tokenizer& tokenizer, int64_t length);
  /// Adds a document; complete sequences are appended to `out`.
  void add(const std::string& document, std::vector<std::vector<int64_t>>& out);
  void reset() { pending_.clear(); }

 private:
  const Tokenizer& tokenizer_;
  int64_t length_;
  std::vector<int64_t> pending_;
};

}  // namespace lorashear
