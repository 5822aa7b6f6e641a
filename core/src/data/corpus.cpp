#include "lorashear/data/corpus.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <random>
#include <set>

#include "lorashear/errors.h"
#include "lorashear/tokenizer/tokenizer.h"

namespace fs = std::filesystem;

namespace lorashear {

namespace {

bool is_jsonl(const std::string& path) {
  return fs::path(path).extension() == ".jsonl";
}

bool is_text_file(const fs::path& p) {
  static const std::set<std::string> exts = {".txt", ".text", ".raw", ".md", ".jsonl"};
  return exts.count(p.extension().string()) > 0;
}

bool blank(const std::string& s) {
  return s.find_first_not_of(" \t\r") == std::string::npos;
}

// Parses one JSON line; nullopt-like (false) for a malformed line when skipping.
bool parse_record(const std::string& line, const std::string& path, int64_t lineno, bool skip,
                  nlohmann::json& out) {
  try {
    out = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    if (skip) return false;
    throw InputError(path + ": line " + std::to_string(lineno) + ": invalid JSON (" + e.what() +
                     "); fix the line or pass --skip-bad-lines");
  }
  if (!out.is_object() || !out.contains("text") || !out["text"].is_string()) {
    if (skip) return false;
    throw InputError(path + ": line " + std::to_string(lineno) +
                     ": no string field 'text'; fix the line or pass --skip-bad-lines");
  }
  return true;
}

}  // namespace

std::vector<Category> discover_categories(const std::vector<std::string>& specs,
                                          const CorpusOptions& options) {
  if (specs.empty()) throw UsageError("no recovery data: give at least one --domain");
  std::vector<Category> out;
  for (const auto& spec : specs) {
    std::error_code ec;
    if (!fs::exists(spec, ec)) throw InputError(spec + ": no such file or folder");
    if (fs::is_directory(spec, ec)) {
      Category c;
      c.name = fs::path(spec).lexically_normal().filename().string();
      if (c.name.empty() || c.name == ".")
        c.name = fs::path(spec).lexically_normal().parent_path().filename().string();
      for (const auto& e : fs::recursive_directory_iterator(spec, ec))
        if (e.is_regular_file() && is_text_file(e.path())) c.files.push_back(e.path().string());
      if (c.files.empty())
        throw InputError(spec + ": the folder has no text files (.txt, .text, .raw, .md, .jsonl)");
      std::sort(c.files.begin(), c.files.end());
      out.push_back(std::move(c));
      continue;
    }
    // A JSON Lines file with "source" fields: one category per source, in order of appearance.
    std::vector<std::string> sources;
    if (is_jsonl(spec)) {
      std::ifstream in(spec);
      if (!in) throw InputError(spec + ": cannot open");
      std::string line;
      int64_t lineno = 0;
      std::set<std::string> seen;
      bool without_source = false;
      while (std::getline(in, line)) {
        ++lineno;
        if (blank(line)) continue;
        nlohmann::json j;
        if (!parse_record(line, spec, lineno, options.skip_bad_lines, j)) continue;
        if (j.contains("source") && j["source"].is_string()) {
          const auto s = j["source"].get<std::string>();
          if (seen.insert(s).second) sources.push_back(s);
        } else {
          without_source = true;
        }
      }
      if (!sources.empty() && without_source)
        throw InputError(spec +
                         ": some records have a \"source\" field and some do not; give every "
                         "record a source, or none");
    }
    if (sources.empty()) {
      out.push_back({fs::path(spec).stem().string(), {spec}, {}});
    } else {
      for (const auto& s : sources)
        out.push_back({s, {spec}, s});
    }
  }
  // Unique names: a second "data" becomes "data#2".
  std::map<std::string, int> count;
  for (auto& c : out)
    if (++count[c.name] > 1) c.name += "#" + std::to_string(count[c.name]);
  return out;
}

// ---- DocumentReader

DocumentReader::DocumentReader(Category category, CorpusOptions options)
    : category_(std::move(category)), options_(options) {}

bool DocumentReader::open_next_file() {
  if (in_.is_open()) in_.close();
  if (file_index_ >= category_.files.size()) return false;
  path_ = category_.files[file_index_++];
  in_.open(path_, std::ios::binary);
  if (!in_) throw InputError(path_ + ": cannot open");
  jsonl_ = is_jsonl(path_);
  line_ = 0;
  return true;
}

bool DocumentReader::next(std::string& document) {
  document.clear();
  std::string line;
  while (true) {
    if (!in_.is_open() && !open_next_file()) return false;
    bool got = false;
    while (std::getline(in_, line)) {
      ++line_;
      if (jsonl_) {
        if (blank(line)) continue;
        nlohmann::json j;
        if (!parse_record(line, path_, line_, options_.skip_bad_lines, j)) {
          ++skipped_;
          continue;
        }
        if (!category_.source.empty() && !(j.contains("source") && j["source"].is_string() &&
                                           j["source"].get<std::string>() == category_.source))
          continue;
        document = j["text"].get<std::string>();
        if (document.empty()) continue;
        return true;
      }
      // Plain text: a paragraph ends at a blank line.
      if (blank(line)) {
        if (got) return true;
        continue;
      }
      if (got) document += '\n';
      document += line;
      got = true;
    }
    if (in_.bad()) throw InputError(path_ + ": read error");
    in_.close();
    if (got) return true;
  }
}

// ---- SequencePacker

SequencePacker::SequencePacker(const Tokenizer& tokenizer, int64_t length)
    : tokenizer_(tokenizer), length_(length) {}

void SequencePacker::add(const std::string& document, std::vector<std::vector<int64_t>>& out) {
  const auto ids = tokenizer_.encode(document, /*add_bos=*/tokenizer_.bos_id() >= 0);
  pending_.insert(pending_.end(), ids.begin(), ids.end());
  size_t at = 0;
  while (pending_.size() - at >= static_cast<size_t>(length_)) {
    out.emplace_back(pending_.begin() + static_cast<long>(at),
                     pending_.begin() + static_cast<long>(at + static_cast<size_t>(length_)));
    at += static_cast<size_t>(length_);
  }
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<long>(at));
}

// ---- CategoryStream

namespace {
// A category whose training sequences fit in this many tokens is read once and replayed from
// memory in later epochs; a larger one is read again from its files.
constexpr int64_t kReplayTokens = int64_t{8} << 20;
}  // namespace

CategoryStream::CategoryStream(Category category, std::shared_ptr<const Tokenizer> tokenizer,
                               PackingOptions options, int64_t start_at)
    : category_(std::move(category)), tokenizer_(std::move(tokenizer)), options_(options) {
  if (options_.seq_len < 2) throw UsageError("sequence length must be at least 2");
  if (options_.validation < 1)
    throw UsageError("a category needs at least one validation sequence");
  const int64_t length = options_.seq_len + 1;
  // Validation: the category's first sequences.
  {
    DocumentReader reader(category_, options_.corpus);
    SequencePacker packer(*tokenizer_, length);
    std::string doc;
    while (static_cast<int64_t>(validation_.size()) < options_.validation && reader.next(doc))
      packer.add(doc, validation_);
  }
  if (static_cast<int64_t>(validation_.size()) < options_.validation)
    throw InputError("category '" + category_.name + "' (" + category_.files.front() +
                     (category_.files.size() > 1 ? ", ..." : "") + ") holds " +
                     std::to_string(validation_.size()) + " sequences of " +
                     std::to_string(length) + " tokens, fewer than the " +
                     std::to_string(options_.validation) +
                     " validation sequences plus one for training (give more text, or lower "
                     "--seq-len / --val-sequences)");
  validation_.resize(static_cast<size_t>(options_.validation));
  consumed_ = start_at;
  thread_ = std::thread([this, start_at] {
    try {
      produce(start_at);  // skipping what a resumed run consumed happens here, in the background
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      error_ = std::current_exception();
      ready_.notify_all();
    }
  });
}

CategoryStream::~CategoryStream() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  space_.notify_all();
  if (thread_.joinable()) thread_.join();
}

int64_t CategoryStream::epoch() const {
  return epoch_.load();
}

void CategoryStream::produce(int64_t to_skip) {
  const int64_t length = options_.seq_len + 1;
  std::mt19937_64 rng(options_.seed * 0x9E3779B97F4A7C15ull + 0x5851F42D4C957F2Dull);
  std::vector<std::vector<int64_t>> buffer, fresh, replay;
  bool replay_ok = true;  // the first epoch fits in memory so far
  bool have_replay = false;
  auto stopping = [&] {
    std::lock_guard<std::mutex> lock(mutex_);
    return stop_;
  };
  auto emit = [&](std::vector<int64_t> seq) {
    // Shuffle buffer: fill it, then each new sequence takes the place of a random one.
    if (static_cast<int64_t>(buffer.size()) < options_.shuffle_buffer) {
      buffer.push_back(std::move(seq));
      return true;
    }
    const auto i = static_cast<size_t>(rng() % buffer.size());
    std::swap(buffer[i], seq);
    if (to_skip > 0) {
      --to_skip;
      return true;
    }
    std::unique_lock<std::mutex> lock(mutex_);
    space_.wait(lock, [&] {
      return stop_ || static_cast<int64_t>(queue_.size()) < options_.queue_capacity;
    });
    if (stop_) return false;
    queue_.push_back(std::move(seq));
    ready_.notify_one();
    return true;
  };
  for (int64_t epoch = 0;; ++epoch) {
    epoch_.store(epoch);
    if (have_replay) {
      for (const auto& s : replay)
        if (!emit(s)) return;
      continue;
    }
    DocumentReader reader(category_, options_.corpus);
    SequencePacker packer(*tokenizer_, length);
    std::string doc;
    int64_t index = 0;  // sequence index within the epoch; the first ones are validation
    int64_t produced = 0;
    while (reader.next(doc)) {
      if (stopping()) return;
      fresh.clear();
      packer.add(doc, fresh);
      for (auto& s : fresh) {
        if (index++ < options_.validation) continue;
        ++produced;
        if (epoch == 0 && replay_ok) {
          if (static_cast<int64_t>(replay.size() + 1) * length <= kReplayTokens)
            replay.push_back(s);
          else
            replay_ok = false, replay.clear(), replay.shrink_to_fit();
        }
        if (!emit(std::move(s))) return;
      }
    }
    if (epoch == 0) skipped_lines_.store(reader.skipped_lines());
    if (produced == 0)
      throw InputError("category '" + category_.name + "' has no training sequence left after " +
                       std::to_string(options_.validation) + " validation sequences");
    if (epoch == 0 && replay_ok) have_replay = true;
  }
}

std::vector<int64_t> CategoryStream::next() {
  std::unique_lock<std::mutex> lock(mutex_);
  if (queue_.empty() && !error_) {
    const auto t0 = std::chrono::steady_clock::now();
    ready_.wait(lock, [&] { return !queue_.empty() || error_; });
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // The first sequence waits for the shuffle buffer to fill: start-up, not a stall.
    if (first_) {
      startup_ += dt;
    } else {
      ++stalls_;
      waited_ += dt;
    }
  }
  first_ = false;
  if (queue_.empty() && error_) std::rethrow_exception(error_);
  auto seq = std::move(queue_.front());
  queue_.pop_front();
  ++consumed_;
  space_.notify_one();
  return seq;
}

}  // namespace lorashear
