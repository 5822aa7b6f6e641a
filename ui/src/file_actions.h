#pragma once
// The File menu and opening models: from the menu's dialogs, recent files, the welcome page, the
// Experiments tab, drag and drop or the app's start, with the device and dtype of the preferences;
// attaching a LoRA adapter; exporting the model and the graph. GUI thread only.

#include <QObject>
#include <QString>
#include <QStringList>

class QAction;
class QMenu;

namespace lorashear {

class MainWindow;
class TaskController;

class FileActions : public QObject {
  Q_OBJECT
 public:
  /// Reads the recent files and open options from the settings; `window` and `tasks` (its errors)
  /// must outlive it.
  FileActions(MainWindow* window, TaskController* tasks);

  /// File ▸ …: open (file, folder, recent, run), attach an adapter, preferences, export, quit.
  void fillMenu(QMenu* file);
  /// Starts opening `path` in the engine (with a LoRA adapter folder, if given); false when busy.
  bool openModel(const QString& path, const QString& adapter = {});
  /// As openModel, but a weights file inside a Hugging Face folder opens the folder.
  bool openPath(const QString& path);
  /// See MainWindow::openAtStart.
  bool openAtStart(const QString& model, const QString& adapter = {});
  /// Device and weight dtype for the next open; saved with the settings.
  void setOpenOptions(const QString& device, const QString& dtype);
  QString device() const { return device_; }
  QString dtype() const { return dtype_; }
  QStringList recentFiles() const { return recent_; }

 signals:
  /// File ▸ Open run…: the user chose `path` (metrics.jsonl, run.json or a file of a run).
  void openRunRequested(const QString& path);

 private:
  void openDialog(bool folder);
  void exportGraph(bool png);
  void addRecent(const QString& path);
  void updateRecentMenu();

  MainWindow* window_;
  TaskController* tasks_;
  QAction* open_file_ = nullptr;
  QAction* open_folder_ = nullptr;
  QAction* open_run_ = nullptr;
  QAction* adapter_ = nullptr;  // enabled while a model with weights is open
  QAction* preferences_ = nullptr;
  QAction* export_model_ = nullptr;  // enabled while a model with weights is open
  QAction* export_svg_ = nullptr;
  QAction* export_png_ = nullptr;
  QAction* quit_ = nullptr;
  QMenu* recent_menu_ = nullptr;
  QStringList recent_;
  QString device_ = "cpu", dtype_ = "float32";
};

}  // namespace lorashear
