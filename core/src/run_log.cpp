#include "lorashear/run_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <ctime>
#include <filesystem>

#include <spdlog/spdlog.h>

#include "lorashear/dist/distributed.h"
#include "lorashear/errors.h"
#include "lorashear/io/checkpoint.h"
#include "lorashear/io/files.h"
#include "lorashear/io/json.h"
#include "lorashear/prune/lhspg.h"
#include "lorashear/recover/recovery.h"

namespace lorashear {

namespace fs = std::filesystem;

std::string run_dir_for(const std::string& out_dir) {
  std::string d = out_dir;
  while (d.size() > 1 && d.back() == '/')
    d.pop_back();
  return d + ".run";
}

namespace {

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return {};
  return buf;
}

// A compact JSON line: numbers with 7 significant digits (what a chart can show), keys escaped.
class Line {
 public:
  explicit Line(const char* kind) {
    s_ = "{\"kind\":";
    str(kind);
  }
  void key(std::string_view k) {
    s_ += ',';
    str(k);
    s_ += ':';
  }
  void num(std::string_view k, double v) {
    key(k);
    value(v);
  }
  void num(std::string_view k, int64_t v) {
    key(k);
    value(v);
  }
  /// A map of numbers: doubles as value(double) writes them, integers exactly.
  template <class T>
  void object(std::string_view k, const std::map<std::string, T>& m) {
    key(k);
    s_ += '{';
    bool first = true;
    for (const auto& [name, v] : m) {
      if (!first) s_ += ',';
      first = false;
      str(name);
      s_ += ':';
      value(v);
    }
    s_ += '}';
  }
  std::string done() { return s_ + "}\n"; }

 private:
  void value(int64_t v) { s_ += std::to_string(v); }
  void value(double v) {
    if (!std::isfinite(v)) {  // JSON has no NaN / inf
      s_ += "null";
      return;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.7g", v);
    s_ += buf;
  }
  void str(std::string_view v) { s_ += nlohmann::json(std::string(v)).dump(); }
  std::string s_;
};

}  // namespace

nlohmann::json complete_interrupted_run(const std::string& checkpoint_dir,
                                        const std::string& out_dir,
                                        const std::string& report_name) {
  const auto report_path = io::output_committed(checkpoint_dir);
  std::error_code ec;
  if (report_path.empty() || !fs::equivalent(report_path, out_dir + "/" + report_name, ec))
    return nullptr;
  auto report = io::read_json_file(report_path);
  auto& ranks = dist::current();
  if (ranks.active()) ranks.barrier();  // every rank has seen the mark before it goes
  const std::string note = "the process was stopped after writing " + out_dir +
                           ", while removing its checkpoint; --resume found the run complete";
  if (ranks.is_root()) {
    fs::remove_all(checkpoint_dir, ec);
    const auto record = run_dir_for(out_dir) + "/run.json";
    try {
      auto info = io::read_json_file(record);
      if (info.is_object() && info.value("status", std::string()) == "running") {
        info["status"] = "finished";
        info["ended"] = utc_now();
        info["note"] = note;
        io::write_file_atomic(record, info.dump(2) + "\n");
      }
    } catch (const std::exception&) {
      // The record is a view of the run; the output is what was asked for.
    }
  }
  spdlog::info("{}: nothing to resume ({})", out_dir, note);
  return report;
}

RunLogWriter::RunLogWriter(const std::string& dir, nlohmann::json info, bool enabled,
                           int world_size)
    : dir_(dir), info_(std::move(info)), enabled_(enabled), t0_(std::chrono::steady_clock::now()) {
  if (!enabled_) return;
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) throw Error(dir_ + ": cannot create the run's folder: " + ec.message());
  info_["format"] = "lorashear-run";
  info_["version"] = 1;
  info_["world_size"] = world_size;
  info_["pid"] = static_cast<int64_t>(::getpid());
  info_["host"] = host_name();
  info_["started"] = utc_now();
  info_["ended"] = nullptr;
  info_["status"] = "running";
  info_["error"] = nullptr;
  info_["metrics"] = "metrics.jsonl";
  const auto path = dir_ + "/metrics.jsonl";
  metrics_fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (metrics_fd_ < 0) throw Error(path + ": cannot create: " + std::string(std::strerror(errno)));
  write_info();
}

RunLogWriter::~RunLogWriter() {
  if (enabled_ && !finished_) {
    try {
      finish("failed", "the run ended without saying how (an exception)");
    } catch (...) {
    }
  }
  if (metrics_fd_ >= 0) ::close(metrics_fd_);
}

double RunLogWriter::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
}

void RunLogWriter::write_info() {
  try {
    io::write_file_atomic(dir_ + "/run.json", info_.dump(2) + "\n");
  } catch (const std::exception&) {
    // The record is a view of the run; failing to write it must not stop the run.
  }
}

void RunLogWriter::append_line(const std::string& line) {
  if (metrics_fd_ < 0) return;
  size_t done = 0;
  int err = 0;
  while (done < line.size()) {
    const auto n = ::write(metrics_fd_, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      err = n < 0 ? errno : EIO;
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (done == line.size()) {
    metrics_bytes_ += static_cast<int64_t>(done);
    metrics_failing_ = false;
    return;
  }
  // A full disk (or any write error): the part of the line that was written is cut off again,
  // so the record stays whole lines that a follower reads to the end, and the next line goes
  // where this one began once there is room. The run goes on; the record notes the loss.
  if (::ftruncate(metrics_fd_, metrics_bytes_) != 0 ||
      ::lseek(metrics_fd_, metrics_bytes_, SEEK_SET) != metrics_bytes_) {
    ::close(metrics_fd_);  // cannot take the piece back: stop rather than write after it
    metrics_fd_ = -1;
  }
  if (metrics_failing_) return;
  metrics_failing_ = true;
  const std::string message =
      dir_ + "/metrics.jsonl: lines are missing from the record (" + std::strerror(err) + ")";
  spdlog::warn("{}; the run goes on", message);
  info_["metrics_error"] = message;
  write_info();
}

void RunLogWriter::lhspg(const LhspgMetrics& m) {
  if (!enabled_ || finished_) return;
  Line l("lhspg");
  l.num("step", m.step);
  l.num("time", seconds());
  l.num("total", m.total_steps);
  l.num("period", m.period);
  l.num("loss", m.loss);
  l.num("lr", m.lr);
  l.num("redundant", m.redundant);
  l.num("zeroed", m.zeroed);
  l.num("scheduled", m.scheduled);
  l.num("target", m.target);
  l.num("lambda_mean", m.lambda_mean);
  l.num("lambda_max", m.lambda_max);
  l.num("tokens_per_second", m.tokens_per_second);
  if (!m.sparsity.empty() && (m.sparsity != last_sparsity_ || m.step <= 1)) {
    l.object("sparsity", m.sparsity);
    last_sparsity_ = m.sparsity;
  }
  append_line(l.done());
}

void RunLogWriter::recovery(const RecoveryMetrics& m, int64_t step_offset) {
  if (!enabled_ || finished_) return;
  ++recovery_steps_;
  Line l("recovery");
  // The run's step, not this process's: after a resume the count goes on where it stopped.
  l.num("step", step_offset + (m.run_step > 0 ? m.run_step : recovery_steps_));
  l.num("time", seconds());
  l.num("stage", static_cast<int64_t>(m.stage));
  l.num("stage_step", m.step);
  l.num("stage_total", m.total_steps);
  l.num("loss", m.loss);
  l.num("lr", m.lr);
  l.num("tokens_per_second", m.tokens_per_second);
  l.num("seconds_left", m.seconds_left);
  if (!m.category_loss.empty()) l.object("category_loss", m.category_loss);
  if (!m.weights.empty()) l.object("weights", m.weights);
  if (m.validation_loss >= 0) l.num("validation_loss", m.validation_loss);
  if (!m.drawn.empty()) l.object("drawn", m.drawn);
  append_line(l.done());
}

void RunLogWriter::update(const nlohmann::json& extra) {
  if (!enabled_) return;
  info_.update(extra);
  write_info();
}

void RunLogWriter::finish(const std::string& status, const std::string& error) {
  if (!enabled_ || finished_) return;
  finished_ = true;
  if (metrics_fd_ >= 0) {
    ::close(metrics_fd_);
    metrics_fd_ = -1;
  }
  info_["status"] = status;
  info_["error"] = error.empty() ? nlohmann::json(nullptr) : nlohmann::json(error);
  info_["ended"] = utc_now();
  info_["seconds"] = seconds();
  write_info();
}

void run_logged(RunLogWriter& log, const std::function<void()>& body) {
  try {
    body();
  } catch (const CancelledError&) {
    log.finish("cancelled");
    throw;
  } catch (const std::exception& e) {
    log.finish("failed", e.what());
    throw;
  }
  log.finish("finished");
}

// ---- reading ----

double RunRecord::value(std::string_view key, double fallback) const {
  for (const auto& [k, v] : values)
    if (k == key) return v;
  return fallback;
}

bool RunRecord::has(std::string_view key) const {
  for (const auto& [k, v] : values)
    if (k == key) return true;
  return false;
}

namespace {

// A small JSON reader for one line: objects, arrays, strings, numbers, literals. Top-level
// numbers and numbers inside top-level objects are recorded; everything else is checked and
// skipped. No allocation unless a string holds escapes.
class LineParser {
 public:
  LineParser(std::string_view s, RunRecord& out) : s_(s), out_(out) {}

  std::string parse() {
    out_.values.clear();
    out_.nested.clear();
    out_.owned.clear();
    out_.kind = {};
    ws();
    if (p_ == s_.size()) return "an empty line";
    if (s_[p_] != '{') return err("a JSON object (one per line) expected");
    ++p_;
    bool have_step = false, first = true;
    ws();
    if (peek() == '}') {
      ++p_;
    } else {
      for (;;) {
        if (!first) {
          ws();
          if (peek() == ',') {
            ++p_;
          } else if (peek() == '}') {
            ++p_;
            break;
          } else {
            return err("',' or '}' expected");
          }
        }
        first = false;
        ws();
        std::string_view key;
        if (!string(key)) return problem_;
        ws();
        if (peek() != ':') return err("':' expected after a key");
        ++p_;
        ws();
        const char c = peek();
        if (c == '"') {
          std::string_view v;
          if (!string(v)) return problem_;
          if (key == "kind") out_.kind = v;
        } else if (c == '{') {
          if (!object(key)) return problem_;
        } else if (c == '[') {
          if (!skip_value(0)) return problem_;
        } else {
          double v = 0;
          if (!scalar(v)) return problem_;
          if (key == "step") {
            out_.step = v;
            have_step = true;
          } else if (key == "time") {
            out_.time = v;
          } else {
            out_.values.emplace_back(key, v);
          }
        }
      }
    }
    ws();
    if (p_ != s_.size()) return err("text after the JSON object");
    if (!have_step) return "no numeric \"step\" in the object";
    return {};
  }

 private:
  char peek() const { return p_ < s_.size() ? s_[p_] : '\0'; }
  void ws() {
    while (p_ < s_.size() && (s_[p_] == ' ' || s_[p_] == '\t' || s_[p_] == '\r'))
      ++p_;
  }
  bool fail(const std::string& what) {
    problem_ = err(what);
    return false;
  }
  std::string err(const std::string& what) const {
    return what + " at column " + std::to_string(p_ + 1);
  }

  bool string(std::string_view& out) {
    if (peek() != '"') return fail("'\"' expected");
    const size_t start = ++p_;
    bool escaped = false;
    while (p_ < s_.size() && s_[p_] != '"') {
      const auto c = static_cast<unsigned char>(s_[p_]);
      if (c < 0x20) return fail("a control character inside a string");
      if (c == '\\') {
        escaped = true;
        if (++p_ >= s_.size()) break;
      }
      ++p_;
    }
    if (p_ >= s_.size()) return fail("an unterminated string");
    const auto raw = s_.substr(start - 1, p_ - start + 2);
    ++p_;
    if (!escaped) {
      out = raw.substr(1, raw.size() - 2);
      return true;
    }
    try {
      out_.owned.push_back(nlohmann::json::parse(raw).get<std::string>());
    } catch (const std::exception&) {
      p_ = start;
      return fail("a bad escape in a string");
    }
    out = out_.owned.back();
    return true;
  }

  bool scalar(double& v) {
    const char c = peek();
    if (c == 't' && s_.substr(p_, 4) == "true") {
      p_ += 4;
      v = 1;
      return true;
    }
    if (c == 'f' && s_.substr(p_, 5) == "false") {
      p_ += 5;
      v = 0;
      return true;
    }
    if (c == 'n' && s_.substr(p_, 4) == "null") {
      p_ += 4;
      v = std::nan("");
      return true;
    }
    if (c != '-' && (c < '0' || c > '9')) return fail("a value expected");
    const char* b = s_.data() + p_;
    const char* e = s_.data() + s_.size();
    const auto r = std::from_chars(b, e, v);
    if (r.ec == std::errc::invalid_argument) return fail("a bad number");
    if (r.ec == std::errc::result_out_of_range) v = (*b == '-') ? -HUGE_VAL : HUGE_VAL;
    p_ += static_cast<size_t>(r.ptr - b);
    return true;
  }

  // A top-level object's members: numbers recorded as nested values.
  bool object(std::string_view name) {
    ++p_;  // '{'
    ws();
    if (peek() == '}') {
      ++p_;
      return true;
    }
    for (;;) {
      ws();
      std::string_view key;
      if (!string(key)) return false;
      ws();
      if (peek() != ':') return fail("':' expected after a key");
      ++p_;
      ws();
      const char c = peek();
      if (c == '"' || c == '{' || c == '[') {
        if (!skip_value(1)) return false;
      } else {
        double v = 0;
        if (!scalar(v)) return false;
        out_.nested.push_back({name, key, v});
      }
      ws();
      if (peek() == ',') {
        ++p_;
        continue;
      }
      if (peek() == '}') {
        ++p_;
        return true;
      }
      return fail("',' or '}' expected");
    }
  }

  bool skip_value(int depth) {
    if (depth > 64) return fail("nesting too deep");
    ws();
    const char c = peek();
    if (c == '"') {
      std::string_view v;
      return string(v);
    }
    if (c == '{' || c == '[') {
      const char close = c == '{' ? '}' : ']';
      ++p_;
      ws();
      if (peek() == close) {
        ++p_;
        return true;
      }
      for (;;) {
        ws();
        if (c == '{') {
          std::string_view key;
          if (!string(key)) return false;
          ws();
          if (peek() != ':') return fail("':' expected after a key");
          ++p_;
        }
        if (!skip_value(depth + 1)) return false;
        ws();
        if (peek() == ',') {
          ++p_;
          continue;
        }
        if (peek() == close) {
          ++p_;
          return true;
        }
        return fail(std::string("',' or '") + close + "' expected");
      }
    }
    double v = 0;
    return scalar(v);
  }

  std::string_view s_;
  RunRecord& out_;
  size_t p_ = 0;
  std::string problem_;
};

}  // namespace

std::string parse_run_record(std::string_view line, RunRecord& out) {
  return LineParser(line, out).parse();
}

RunFollower::RunFollower(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    dir_ = path;
    metrics_ = (fs::path(path) / "metrics.jsonl").string();
  } else if (fs::is_regular_file(path, ec) || fs::path(path).filename() == "metrics.jsonl") {
    metrics_ = path;
    dir_ = fs::path(path).parent_path().string();
    if (dir_.empty()) dir_ = ".";
  } else {
    throw InputError(path + ": no such run (give an OUT.run folder or its metrics.jsonl)");
  }
  while (dir_.size() > 1 && dir_.back() == '/')
    dir_.pop_back();
  last_line_ = std::chrono::steady_clock::now();
}

int64_t RunFollower::poll(const std::function<void(const RunRecord&)>& on_record) {
  restarted_ = false;
  std::FILE* f = std::fopen(metrics_.c_str(), "rb");
  if (f == nullptr) return 0;
  struct Closer {
    std::FILE* f;
    ~Closer() { std::fclose(f); }
  } closer{f};
  if (std::fseek(f, 0, SEEK_END) != 0) return 0;
  const long end = std::ftell(f);
  if (end < 0) return 0;
  if (static_cast<uint64_t>(end) < offset_) {  // truncated or replaced: a new run in the folder
    offset_ = 0;
    line_ = 0;
    pending_.clear();
    restarted_ = true;
  }
  if (static_cast<uint64_t>(end) == offset_) return 0;
  if (std::fseek(f, static_cast<long>(offset_), SEEK_SET) != 0) return 0;
  int64_t count = 0;
  std::string buf;
  constexpr size_t kChunk = 8 << 20;
  std::string problem;
  int64_t problem_line = 0, bad = 0;
  for (;;) {
    // What the file held when this poll began, at most kChunk at a time (lines appended since
    // are the next poll's): a poll that finds a few new lines must not allocate and zero 8 MiB.
    const uint64_t left = static_cast<uint64_t>(end) > offset_ ? end - offset_ : 0;
    const size_t want = static_cast<size_t>(std::min<uint64_t>(kChunk, left));
    buf.resize(pending_.size() + want);
    std::memcpy(buf.data(), pending_.data(), pending_.size());
    const size_t got = std::fread(buf.data() + pending_.size(), 1, want, f);
    const size_t have = pending_.size() + got;
    offset_ += got;
    std::string_view data(buf.data(), have);
    size_t start = 0;
    for (;;) {
      const size_t nl = data.find('\n', start);
      if (nl == std::string_view::npos) break;
      ++line_;
      const auto text = data.substr(start, nl - start);
      start = nl + 1;
      if (text.find_first_not_of(" \t\r") == std::string_view::npos) continue;  // blank line
      auto why = parse_run_record(text, record_);
      if (!why.empty()) {  // reported once this read is done; the lines after it still count
        if (problem.empty()) {
          problem = std::move(why);
          problem_line = line_;
        }
        ++bad;
        continue;
      }
      record_.line = line_;
      ++count;
      on_record(record_);
    }
    pending_.assign(data.substr(start));
    if (want < kChunk || got < want) break;
  }
  if (count > 0 || problem_line > 0) {
    last_line_ = std::chrono::steady_clock::now();
    seen_line_ = true;
  }
  if (!problem.empty())
    throw InputError(metrics_ + ":" + std::to_string(problem_line) + ": " + problem +
                     (bad > 1 ? " (and " + std::to_string(bad - 1) + " more bad lines)" : ""));
  return count;
}

nlohmann::json RunFollower::info() const {
  const auto path = dir_ + "/run.json";
  std::error_code ec;
  if (!fs::exists(path, ec)) return nullptr;
  try {
    return io::read_json_file(path);
  } catch (const std::exception&) {
    return nullptr;
  }
}

std::string RunFollower::status(double stale_after_seconds) const {
  const auto i = info();
  if (!i.is_object()) return "unknown";
  auto s = i.value("status", std::string("unknown"));
  if (s != "running") return s;
  // The last line's age: the file's modification time, or (no file yet) since this follower
  // last read a line or started.
  double age = std::chrono::duration<double>(std::chrono::steady_clock::now() - last_line_).count();
  std::error_code ec;
  const auto mtime = fs::last_write_time(metrics_, ec);
  if (!ec) age = std::chrono::duration<double>(fs::file_time_type::clock::now() - mtime).count();
  return age > stale_after_seconds ? "stale" : "running";
}

}  // namespace lorashear
