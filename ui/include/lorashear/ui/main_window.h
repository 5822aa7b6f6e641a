#pragma once
// The main window of LoRAShear Studio: tabs in the middle for what needs room — the dependency
// graph (search, expand and collapse, overlays with a legend, an overview), a run's dashboard and
// a comparison's tables — or, while no model is open, a welcome page; docks for the forms and lists
// (model summary, node-group tree, inspector, log, plan, run settings, comparison settings), and a
// status bar with the engine's progress, time left and a cancel button. Opens models from the
// menu, recent files, drag and drop or the command line; remembers its layout, theme and recent
// files. Help: the user guide, the keyboard shortcuts, About.
// It builds the docks and menus; one controller per concern (ui/src) owns the actions and wiring:
// FileActions (File menu, opening), ViewActions (View menu, toolbar, theme), GraphController
// (layouts, overlays, selection, search), TaskController (status bar, errors, Tools menu),
// RunCoordinator (runs: record, resume, follow) and HelpActions (Help menu).

#include <QMainWindow>
#include <QString>
#include <QStringList>

#include <cstdint>
#include <memory>
#include <set>

class QTabWidget;
class QThreadPool;
class QVariant;
class QTreeView;

namespace lorashear {

class ComparePanel;
class Engine;
class ExperimentsPanel;
class FileActions;
class GraphController;
class GraphLegend;
class GraphOverview;
class GraphView;
class HelpActions;
class Inspector;
class LogView;
class NodeGroupModel;
class PlanEditor;
class RunCoordinator;
class RunPanel;
class RunWatcher;
class SummaryView;
class TaskController;
class UserGuideWindow;
class ViewActions;
class WelcomePage;
struct ModelDocument;

class MainWindow : public QMainWindow {
  Q_OBJECT
 public:
  explicit MainWindow(QWidget* parent = nullptr);
  ~MainWindow() override;

  /// Starts opening `path` in the engine (with a LoRA adapter folder, if given) on the device and
  /// in the precision of the preferences; false when the engine is busy.
  bool openModel(const QString& path, const QString& adapter = {});
  /// The app's start: opens `model` when given; without one, the very first start (no
  /// "welcome/shown" setting yet) opens nothing and leaves the welcome page in front, later starts
  /// open the bundled demo model (demo_model_path()) when it is there. Returns whether an open
  /// started.
  bool openAtStart(const QString& model, const QString& adapter = {});
  /// Device ("cpu", "cuda:0") and weight dtype ("float32", "bfloat16", "float16") for the next
  /// open; saved with the settings.
  void setOpenOptions(const QString& device, const QString& dtype);
  QString device() const;
  QString dtype() const;
  /// Finds the next operator or node group whose name contains `text` (case-insensitive), shows
  /// it (expanding its layer) and selects it; false when nothing matches.
  bool search(const QString& text);
  void expandAll();
  void collapseAll();
  void setExpanded(const std::set<int64_t>& layers);
  const std::set<int64_t>& expandedLayers() const;
  /// Overlays: "kind" (default), "parameters", "variable groups", "prunable", "importance".
  void setOverlay(const QString& name);
  QStringList overlayNames() const;
  /// "light", "dark" or "system".
  void setTheme(const QString& name);

  Engine* engine() const { return engine_; }
  /// The central tabs: Graph, Dashboard, Compare. Another view needs the room too? addTab() here.
  QTabWidget* centralTabs() const { return tabs_; }
  GraphView* graphView() const { return view_; }
  GraphOverview* overview() const { return overview_; }
  GraphLegend* legend() const { return legend_; }
  NodeGroupModel* nodeGroupModel() const { return groups_; }
  QTreeView* nodeGroupTree() const { return tree_; }
  Inspector* inspector() const { return inspector_; }
  LogView* logView() const { return log_; }
  SummaryView* summaryView() const { return summary_; }
  PlanEditor* planEditor() const { return plan_; }
  RunPanel* runPanel() const { return run_; }
  ComparePanel* comparePanel() const { return compare_; }
  ExperimentsPanel* experimentsPanel() const { return experiments_; }
  /// Shown in the middle, over the tabs, whenever no model is open (or being opened).
  WelcomePage* welcomePage() const { return welcome_; }
  /// Help ▸ User guide: the manual (manual_path()) in the guide window, at `anchor` when given;
  /// false, with a message naming where it was expected, when it is missing.
  bool showUserGuide(const QString& anchor = {});
  /// The guide window (null until the guide was first shown).
  UserGuideWindow* userGuide() const;
  /// Help ▸ Keyboard shortcuts and Help ▸ About (non-modal; closed with the window).
  void showShortcuts();
  void showAbout();
  std::shared_ptr<const ModelDocument> document() const;
  /// The open model's path ("" when none).
  QString documentPath() const;
  /// The last error shown in a dialog (empty if none).
  QString lastError() const;
  /// True while a layout is being computed or waits to be drawn.
  bool layoutPending() const;
  QStringList recentFiles() const;
  /// A pruning run was interrupted (the app closed or was killed) and its checkpoint is there.
  bool hasInterruptedRun() const;
  /// Opens its model, restores its plan and settings and continues it from the checkpoint.
  bool resumeRun();
  /// Forgets the interrupted run.
  void discardInterruptedRun();
  /// File ▸ Open run…: follows the run in `path` (an OUT.run folder, its metrics.jsonl or
  /// run.json) on the Dashboard tab while it grows, with its status; opens the model run.json
  /// names (with the run's plan) as for a local run. False, with a message, when it cannot.
  bool openRun(const QString& path);
  /// The followed run (null when none).
  RunWatcher* runWatcher() const;
  void stopFollowing();
  /// Time from a layout request to its drawing on screen, for the last drawing (ms).
  double lastPaintMs() const;
  /// Writes a setting on a background thread (QSettings syncs with fdatasync, tens of ms), in
  /// order; for the controllers.
  void saveSetting(const QString& key, const QVariant& value);

 signals:
  /// A layout was drawn (after an open, expand, collapse).
  void graphShown();
  /// The engine went back to idle (after any task).
  void engineIdle();

 protected:
  void closeEvent(QCloseEvent* event) override;
  void dragEnterEvent(QDragEnterEvent* event) override;
  void dropEvent(QDropEvent* event) override;

 private:
  void buildDocks();
  void buildMenus();
  void documentChanged();
  void updateWelcome();

  Engine* engine_ = nullptr;
  QTabWidget* tabs_ = nullptr;
  GraphView* view_ = nullptr;
  GraphOverview* overview_ = nullptr;
  GraphLegend* legend_ = nullptr;
  NodeGroupModel* groups_ = nullptr;
  QTreeView* tree_ = nullptr;
  Inspector* inspector_ = nullptr;
  LogView* log_ = nullptr;
  SummaryView* summary_ = nullptr;
  PlanEditor* plan_ = nullptr;
  RunPanel* run_ = nullptr;
  ComparePanel* compare_ = nullptr;
  ExperimentsPanel* experiments_ = nullptr;
  WelcomePage* welcome_ = nullptr;
  TaskController* tasks_ = nullptr;
  GraphController* graph_ = nullptr;
  FileActions* files_ = nullptr;
  ViewActions* view_actions_ = nullptr;
  RunCoordinator* runs_ = nullptr;
  HelpActions* help_ = nullptr;
  bool opening_ = false;                    // an open is running (the welcome page steps aside)
  QThreadPool* settings_writer_ = nullptr;  // one thread: writes stay in order
};

}  // namespace lorashear
