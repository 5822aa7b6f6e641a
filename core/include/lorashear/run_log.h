#pragma once
// A run's live record, `OUT.run/` beside its output folder (issue 18 §3): `run.json` (what runs:
// kind, model, settings, world size, pid, host, start / end, status running → finished / failed /
// cancelled, with the error) rewritten atomically, and `metrics.jsonl`, one JSON object per
// training step ("kind", "step", "time" = wall seconds since the start, and that step's figures),
// flushed line by line. The app follows such a folder (File ▸ Open run…) while it grows:
// RunFollower reads only the bytes appended since its last read.

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lorashear {

struct LhspgMetrics;
struct RecoveryMetrics;

/// `OUT.run` for an output folder `OUT` (a trailing slash dropped).
std::string run_dir_for(const std::string& out_dir);

/// --resume of a run killed once its output was committed but before its checkpoint was removed
/// (io::output_committed names `out_dir`/`report_name` with its checksum unchanged): the run is
/// complete, so the checkpoint goes, the run's record (still "running") is closed as finished with
/// a note, and OUT's report is returned, OUT untouched. Null when there is a run to resume. Every
/// rank of a distributed run calls it; rank 0 removes and writes.
nlohmann::json complete_interrupted_run(const std::string& checkpoint_dir,
                                        const std::string& out_dir, const std::string& report_name);

/// Writes OUT.run. Every method is a no-op when constructed with `enabled` false (ranks other
/// than 0 of a distributed run). Writing problems after the start do not stop the run (a full
/// disk must not cost it): a metrics line that does not fit is dropped whole and run.json gets
/// `metrics_error`; the constructor throws Error naming the folder when it cannot create it.
class RunLogWriter {
 public:
  /// `info`: {"kind": "prune" | "recover", "model", "out", "settings", …}; pid, host, world_size,
  /// start time and status are added. An existing metrics.jsonl is replaced (a resumed run starts
  /// its record again).
  RunLogWriter(const std::string& dir, nlohmann::json info, bool enabled = true,
               int world_size = 1);
  /// Not finished by then (an exception unwinding): status "failed".
  ~RunLogWriter();
  RunLogWriter(const RunLogWriter&) = delete;
  RunLogWriter& operator=(const RunLogWriter&) = delete;

  bool enabled() const { return enabled_; }
  const std::string& dir() const { return dir_; }
  /// One LHSPG / baseline step; "step" is m.step. Sparsity per node group is written on the
  /// first line and whenever it changed since the last line that carried it.
  void lhspg(const LhspgMetrics& m);
  /// One recovery step; "step" counts on from `step_offset` across both stages (a prune run's
  /// recovery continues after its pruning steps), "stage_step" is the step within the stage.
  void recovery(const RecoveryMetrics& m, int64_t step_offset = 0);
  /// Adds keys to run.json (rewritten now).
  void update(const nlohmann::json& extra);
  /// status: "finished", "failed" (with `error`) or "cancelled"; later calls do nothing.
  void finish(const std::string& status, const std::string& error = {});

 private:
  void write_info();
  void append_line(const std::string& line);
  double seconds() const;
  std::string dir_;
  nlohmann::json info_;
  bool enabled_ = true, finished_ = false;
  int metrics_fd_ = -1;        // metrics.jsonl, written with write(2): no stdio buffer to undo
  int64_t metrics_bytes_ = 0;  // its length in whole lines
  bool metrics_failing_ = false;
  std::chrono::steady_clock::time_point t0_;
  std::map<std::string, double> last_sparsity_;
  int64_t recovery_steps_ = 0;
};

/// Runs `body` and records how it ended in `log`: "finished", "cancelled" (CancelledError) or
/// "failed" with the exception's message (rethrown).
void run_logged(RunLogWriter& log, const std::function<void()>& body);

/// One line of metrics.jsonl, parsed. Views point into the follower's buffer and are valid only
/// during the callback.
struct RunRecord {
  int64_t line = 0;  ///< 1-based line number in the file
  std::string_view kind;
  double step = 0, time = 0;
  /// Every other top-level number (and true / false as 1 / 0), in file order.
  std::vector<std::pair<std::string_view, double>> values;
  /// Numbers inside top-level objects: (object key, key, value), e.g. ("sparsity", "L0.mlp", 0.5).
  struct Nested {
    std::string_view object, key;
    double value;
  };
  std::vector<Nested> nested;
  /// Unescaped copies of strings that held escapes (what the views above point to).
  std::deque<std::string> owned;
  double value(std::string_view key, double fallback = 0) const;
  bool has(std::string_view key) const;
};

/// Parses one line. Returns an empty string, or the problem (no file or line in it).
std::string parse_run_record(std::string_view line, RunRecord& out);

/// Follows a run: a `*.run` folder (or any folder with metrics.jsonl) or a metrics.jsonl file.
class RunFollower {
 public:
  /// Throws InputError when `path` is neither.
  explicit RunFollower(const std::string& path);
  const std::string& metricsPath() const { return metrics_; }
  /// The folder holding run.json (may not exist).
  const std::string& dir() const { return dir_; }
  /// Reads the bytes appended since the last call and calls `on_record` for each complete line,
  /// in order; a last line without its newline (a writer mid-line) is kept for the next call.
  /// A complete line that is not a JSON object with a numeric "step" is skipped; once the other
  /// lines were passed on, InputError "FILE:LINE: problem" names the first such line of this
  /// read (and how many more there were); the next call goes on from where this one ended. A file
  /// that shrank is read again from the start (`restarted()` then says so). Returns the number of
  /// records. A missing file reads as empty.
  int64_t poll(const std::function<void(const RunRecord&)>& on_record);
  bool restarted() const { return restarted_; }
  int64_t lines() const { return line_; }
  uint64_t offset() const { return offset_; }
  /// run.json, read again (null when absent or unreadable).
  nlohmann::json info() const;
  /// "running", "finished", "failed", "cancelled", or "stale" when run.json says running but
  /// no line arrived for `stale_after_seconds` (measured on this machine since the last line,
  /// or from the file's modification time). "unknown" without run.json.
  std::string status(double stale_after_seconds = 300) const;

 private:
  std::string metrics_, dir_;
  uint64_t offset_ = 0;
  int64_t line_ = 0;
  std::string pending_;
  bool restarted_ = false;
  std::chrono::steady_clock::time_point last_line_;
  bool seen_line_ = false;
  RunRecord record_;
};

}  // namespace lorashear
