#include "file_actions.h"

#include <spdlog/spdlog.h>
#include <QAction>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QMenu>
#include <QSettings>
#include <QStatusBar>

#include "document.h"
#include "lorashear/build_info.h"
#include "lorashear/ui/engine.h"
#include "lorashear/ui/experiments_panel.h"
#include "lorashear/ui/export_dialog.h"
#include "lorashear/ui/main_window.h"
#include "lorashear/ui/preferences_dialog.h"
#include "lorashear/ui/welcome_page.h"
#include "lorashear/viewers/graph_view.h"
#include "task_controller.h"

namespace lorashear {

namespace {

constexpr int kMaxRecent = 10;
// Set at the first start: later starts without a model open the demo model.
constexpr const char* kWelcomeShown = "welcome/shown";

}  // namespace

FileActions::FileActions(MainWindow* window, TaskController* tasks)
    : QObject(window), window_(window), tasks_(tasks) {
  QSettings settings;
  recent_ = settings.value("recentFiles").toStringList();
  device_ = settings.value("device", "cpu").toString();
  dtype_ = settings.value("dtype", "float32").toString();

  auto action = [this](const QString& text, auto slot) {
    auto* a = new QAction(text, this);
    connect(a, &QAction::triggered, this, slot);
    return a;
  };
  open_file_ = action(tr("&Open model file…"), [this] { openDialog(false); });
  open_file_->setShortcut(QKeySequence::Open);
  open_folder_ = action(tr("Open model &folder…"), [this] { openDialog(true); });
  open_run_ = action(tr("Open r&un…"), [this] {
    const auto path = QFileDialog::getOpenFileName(
        window_, tr("A run to follow: its metrics.jsonl or run.json (in OUT.run)"),
        QSettings().value("lastRunDir", QDir::homePath()).toString(),
        tr("Run records (metrics.jsonl run.json *.jsonl);;All files (*)"));
    if (path.isEmpty()) return;
    window_->saveSetting("lastRunDir", QFileInfo(path).absolutePath());
    emit openRunRequested(path);
  });
  open_run_->setObjectName("openRun");
  adapter_ = action(tr("Attach a LoRA &adapter…"), [this] {
    const auto doc = window_->document();
    if (!doc || !doc->has_weights) return;
    const auto dir = QFileDialog::getExistingDirectory(
        window_, tr("LoRA adapter folder (adapter_config.json + adapter_model.safetensors)"),
        QString::fromStdString(doc->path));
    if (!dir.isEmpty()) openModel(QString::fromStdString(doc->path), dir);
  });
  adapter_->setObjectName("attachAdapter");
  preferences_ = action(tr("&Preferences…"), [this] {
    PreferencesDialog dialog(device_, dtype_, window_);
    if (dialog.exec() == QDialog::Accepted) setOpenOptions(dialog.device(), dialog.dtype());
  });
  preferences_->setShortcut(QKeySequence::Preferences);
  export_model_ = action(tr("E&xport model…"), [this] {
    const auto doc = window_->document();
    if (!doc || !doc->has_weights) return;
    ExportDialog dialog(window_->engine(), window_);
    dialog.setFolder(QString::fromStdString(doc->path) + "-export");
    dialog.exec();
  });
  export_model_->setObjectName("exportModel");
  export_svg_ = action(tr("Export graph as &SVG…"), [this] { exportGraph(false); });
  export_png_ = action(tr("Export graph as &PNG…"), [this] { exportGraph(true); });
  quit_ = action(tr("&Quit"), [this] { window_->close(); });
  quit_->setShortcut(QKeySequence::Quit);
  for (auto* a : {adapter_, export_model_})
    a->setEnabled(false);

  auto* welcome = window->welcomePage();
  connect(welcome, &WelcomePage::openModelRequested, this,
          [this](bool folder) { openDialog(folder); });
  connect(welcome, &WelcomePage::openDemoRequested, this,
          [this] { openModel(QString::fromStdString(demo_model_path())); });
  connect(welcome, &WelcomePage::openRecentRequested, this,
          [this](const QString& path) { openModel(path); });
  connect(window->experimentsPanel(), &ExperimentsPanel::openModelRequested, this,
          [this](const QString& path) { openModel(path); });
  connect(window->engine(), &Engine::documentChanged, this, [this] {
    const auto doc = window_->document();
    if (!doc) return;
    for (auto* a : {adapter_, export_model_})
      a->setEnabled(doc->has_weights);
    addRecent(QString::fromStdString(doc->path));
  });
}

void FileActions::fillMenu(QMenu* file) {
  file->addAction(open_file_);
  file->addAction(open_folder_);
  recent_menu_ = file->addMenu(tr("Open &recent"));
  file->addAction(open_run_);
  file->addAction(adapter_);
  file->addSeparator();
  file->addAction(preferences_);
  file->addSeparator();
  file->addAction(export_model_);
  file->addAction(export_svg_);
  file->addAction(export_png_);
  file->addSeparator();
  file->addAction(quit_);
  updateRecentMenu();
}

bool FileActions::openModel(const QString& path, const QString& adapter) {
  auto* engine = window_->engine();
  if (engine->busy()) {
    window_->statusBar()->showMessage(
        tr("Busy with %1: cancel it first").arg(engine->currentTask()), 5000);
    return false;
  }
  OpenOptions o;
  o.device = device_;
  o.dtype = dtype_;
  o.adapter = adapter.isEmpty() ? QString() : QFileInfo(adapter).absoluteFilePath();
  spdlog::info("opening {} on {} in {}{}", path.toStdString(), device_.toStdString(),
               dtype_.toStdString(),
               adapter.isEmpty() ? "" : " with adapter " + adapter.toStdString());
  return engine->openModel(QFileInfo(path).absoluteFilePath(), o);
}

bool FileActions::openPath(const QString& path) {
  const QFileInfo info(path);
  return openModel(info.suffix() == "safetensors" ? info.absolutePath() : path);
}

bool FileActions::openAtStart(const QString& model, const QString& adapter) {
  const bool first = !QSettings().value(kWelcomeShown, false).toBool();
  if (first) window_->saveSetting(kWelcomeShown, true);
  if (!model.isEmpty()) return openModel(model, adapter);
  if (first) return false;  // the welcome page says what to do
  const auto demo = QString::fromStdString(demo_model_path());
  return !demo.isEmpty() && openModel(demo, adapter);
}

void FileActions::setOpenOptions(const QString& device, const QString& dtype) {
  if (device == device_ && dtype == dtype_) return;
  device_ = device;
  dtype_ = dtype;
  window_->saveSetting("device", device);
  window_->saveSetting("dtype", dtype);
}

void FileActions::openDialog(bool folder) {
  QSettings settings;
  const auto dir = settings.value("lastDir", QDir::homePath()).toString();
  const QString path =
      folder
          ? QFileDialog::getExistingDirectory(window_, tr("Open a Hugging Face model folder"), dir)
          : QFileDialog::getOpenFileName(
                window_, tr("Open a model or a configuration"), dir,
                tr("Models (*.bin *.gguf *.safetensors *.json);;All files (*)"));
  if (path.isEmpty()) return;
  window_->saveSetting("lastDir", QFileInfo(path).absolutePath());
  // A weights file inside a Hugging Face folder opens the folder.
  openPath(path);
}

void FileActions::exportGraph(bool png) {
  if (!window_->document()) return;
  const auto path = QFileDialog::getSaveFileName(
      window_, png ? tr("Export the graph as PNG") : tr("Export the graph as SVG"),
      QSettings().value("lastDir", QDir::homePath()).toString() +
          (png ? "/graph.png" : "/graph.svg"),
      png ? tr("PNG image (*.png)") : tr("SVG drawing (*.svg)"));
  if (path.isEmpty()) return;
  QString error;
  auto* view = window_->graphView();
  const bool ok = png ? view->exportPng(path, 2.0, &error) : view->exportSvg(path, &error);
  if (!ok)
    tasks_->showError(tr("Cannot export the graph"), error);
  else
    window_->statusBar()->showMessage(tr("Wrote %1").arg(path), 8000);
}

void FileActions::addRecent(const QString& path) {
  const auto before = recent_;
  recent_.removeAll(path);
  recent_.prepend(path);
  while (recent_.size() > kMaxRecent)
    recent_.removeLast();
  if (recent_ == before) return;
  window_->saveSetting("recentFiles", recent_);
  updateRecentMenu();
}

void FileActions::updateRecentMenu() {
  recent_menu_->clear();
  for (const auto& path : recent_) {
    auto* a = recent_menu_->addAction(path, this, [this, path] { openModel(path); });
    a->setEnabled(QFileInfo::exists(path));
  }
  if (recent_.isEmpty()) recent_menu_->addAction(tr("(none yet)"))->setEnabled(false);
  window_->welcomePage()->setRecentFiles(recent_);
  recent_menu_->addSeparator();
  recent_menu_->addAction(tr("Clear the list"), this, [this] {
    recent_.clear();
    window_->saveSetting("recentFiles", recent_);
    updateRecentMenu();
  });
}

}  // namespace lorashear
