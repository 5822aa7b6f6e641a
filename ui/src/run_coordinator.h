#pragma once
// Pruning runs around the Run panel: a local run is recorded while it goes (so that a restart can
// offer to resume it from its checkpoint) and resumed; a run written by another process is
// followed on the Dashboard (File ▸ Open run…); the tabs a run, a comparison or an experiment bring
// to the front; the graph's sparsity overlay during a run. GUI thread only.

#include <QObject>
#include <QString>

namespace lorashear {

class FileActions;
class GraphController;
class MainWindow;
class RunWatcher;
class TaskController;

class RunCoordinator : public QObject {
  Q_OBJECT
 public:
  /// Reads the interrupted run's record from the settings; the arguments must outlive it.
  RunCoordinator(MainWindow* window, FileActions* files, GraphController* graph,
                 TaskController* tasks);

  /// A pruning run was interrupted (the app closed or was killed) and its checkpoint is there.
  bool hasInterruptedRun() const;
  /// Opens its model, restores its plan and settings and continues it from the checkpoint.
  bool resumeRun();
  /// Forgets the interrupted run.
  void discardInterruptedRun();
  /// Follows the run in `path` (an OUT.run folder, its metrics.jsonl or run.json) on the
  /// Dashboard; see MainWindow::openRun.
  bool openRun(const QString& path);
  /// The followed run (null when none).
  RunWatcher* runWatcher() const { return watcher_; }
  void stopFollowing();
  /// The window closes: a run it stops stays resumable.
  void windowClosing() { closing_ = true; }

 signals:
  /// A run started or stopped being followed.
  void followingChanged();

 private:
  void updateFollowStatus();

  MainWindow* window_;
  FileActions* files_;
  GraphController* graph_;
  TaskController* tasks_;
  QString interrupted_run_;  // the record of a run that did not end (see RunPanel)
  bool closing_ = false;
  RunWatcher* watcher_ = nullptr;
};

}  // namespace lorashear
