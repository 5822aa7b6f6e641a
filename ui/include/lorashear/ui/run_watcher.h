#pragma once
// Follows a run's OUT.run folder (or its metrics.jsonl) while it grows — a run of the CLI, of
// another app, a sweep's run, rank 0 of a distributed run, on this machine or a shared
// filesystem: a file watch and a one-second poll (a shared filesystem may not report changes)
// read only the bytes appended since the last read, converted to the dashboard's series. The
// status comes from run.json (running / finished / failed / cancelled, or stale when no line came
// for a while).

#include <QObject>
#include <QString>
#include <QTimer>

#include <map>
#include <memory>
#include <string>

#include "lorashear/ui/run_panel.h"

class QFileSystemWatcher;

namespace lorashear {

class RunFollower;

class RunWatcher : public QObject {
  Q_OBJECT
 public:
  /// Throws InputError when `path` is neither a run folder nor a metrics file. Nothing is read
  /// until start().
  explicit RunWatcher(const QString& path, QObject* parent = nullptr);
  ~RunWatcher() override;
  /// Reads what is there (emitting it) and starts following.
  void start();
  /// Reads what was appended now (the watch and the timer call it).
  void poll();
  QString metricsPath() const;
  QString runDir() const;
  /// "running", "finished", "failed", "cancelled", "stale" or "unknown" (no run.json).
  QString status() const { return status_; }
  /// run.json's "model" (empty when absent).
  QString modelPath() const { return model_; }
  /// run.json's settings.plan as JSON text (empty when absent).
  QString planJson() const { return plan_; }
  /// run.json's error of a failed run.
  QString error() const { return error_; }
  qint64 lines() const;
  /// run.json's metrics_error: the writer could not append some lines (a full disk), empty when
  /// none.
  QString recordError() const { return record_error_; }
  /// The last problem reading the file (file:line: what), empty when none.
  QString problem() const { return problem_; }
  /// Seconds without a new line after which a running run is called stale (default 300).
  void setStaleAfter(double seconds) { stale_after_ = seconds; }
  /// Milliseconds between polls (default 1000).
  void setInterval(int ms) { timer_.setInterval(ms); }

 signals:
  /// New points; `sparsity` holds the node groups whose sparsity changed. `restarted`: the file
  /// was replaced (a new run in the folder) and the points start again.
  void metrics(const lorashear::MetricBatches& batches,
               const std::map<std::string, double>& sparsity, bool restarted);
  /// The status or run.json changed.
  void statusChanged(const QString& status);
  /// A line that is not a metrics record: "FILE:LINE: what".
  void problemFound(const QString& message);

 private:
  void readInfo();
  std::unique_ptr<RunFollower> follower_;
  QFileSystemWatcher* watch_ = nullptr;
  QTimer timer_;
  QString status_, model_, plan_, error_, problem_, record_error_;
  double stale_after_ = 300;
  bool polling_ = false;
};

}  // namespace lorashear
