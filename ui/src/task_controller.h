#pragma once
// The engine's tasks as the user sees them: the status bar's running task, progress, time left and
// Cancel button; the message or error dialog when one ends; the Tools menu that starts the text
// tasks (perplexity, knowledge analysis) and cancels. GUI thread only.

#include <QObject>
#include <QString>

class QAction;
class QLabel;
class QMenu;
class QProgressBar;
class QPushButton;

namespace lorashear {

class MainWindow;
struct EngineProgress;

class TaskController : public QObject {
  Q_OBJECT
 public:
  /// Adds the task widgets to `window`'s status bar; `window` must outlive it (its parent).
  explicit TaskController(MainWindow* window);

  /// Tools ▸ …: the text tasks (enabled while a model with weights is open), Compare, Cancel (Esc).
  void fillMenu(QMenu* tools);
  /// A window-modal error dialog ("errorDialog"); `message` becomes lastError().
  void showError(const QString& title, const QString& message);
  /// The last error shown (cleared when a task starts).
  QString lastError() const { return last_error_; }
  /// Asks for a text file, then evaluates perplexity on it or (`knowledge`) analyses importance.
  void runTextTask(bool knowledge);

 private:
  void taskStarted(const QString& task);
  void progress(const EngineProgress& p);
  void taskEnded();

  MainWindow* window_;
  QLabel* status_ = nullptr;
  QLabel* time_left_ = nullptr;
  QProgressBar* progress_ = nullptr;
  QPushButton* cancel_ = nullptr;
  QAction* perplexity_ = nullptr;
  QAction* knowledge_ = nullptr;
  QAction* compare_ = nullptr;
  QAction* cancel_task_ = nullptr;
  QString last_error_;
};

}  // namespace lorashear
