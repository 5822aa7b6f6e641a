#pragma once
// The main window of LoRAShear Studio: tabs in the middle for what needs room — the dependency
// graph (search, expand and collapse, overlays with a legend, an overview), a run's dashboard and
// a comparison's tables — or, while no model is open, a welcome page; docks for the forms and lists
// (model summary, node-group tree, inspector, log, plan, run settings, comparison settings), and a
// status bar with the engine's progress, time left and a cancel button. Opens models from the
// menu, recent files, drag and drop or the command line; remembers its layout, theme and recent
// files. Help: the user guide, the keyboard shortcuts, About.

#include <QMainWindow>
#include <QString>
#include <QStringList>

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

class QAction;
class QComboBox;
class QLabel;
class QLineEdit;
class QMenu;
class QProgressBar;
class QPushButton;
class QTabWidget;
class QThreadPool;
class QVariant;
class QTreeView;

namespace lorashear {

class Engine;
class GraphLegend;
class GraphOverview;
class GraphView;
class Inspector;
class LayoutCache;
class LogView;
class NodeGroupModel;
class ComparePanel;
class ExperimentsPanel;
class PlanEditor;
class RunPanel;
class RunWatcher;
class SummaryView;
class UserGuideWindow;
class WelcomePage;
struct EngineProgress;
struct GraphLayout;
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
  QString device() const { return device_; }
  QString dtype() const { return dtype_; }
  /// Finds the next operator or node group whose name contains `text` (case-insensitive), shows
  /// it (expanding its layer) and selects it; false when nothing matches.
  bool search(const QString& text);
  void expandAll();
  void collapseAll();
  void setExpanded(const std::set<int64_t>& layers);
  const std::set<int64_t>& expandedLayers() const { return expanded_; }
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
  UserGuideWindow* userGuide() const { return guide_; }
  /// Help ▸ Keyboard shortcuts and Help ▸ About (non-modal; closed with the window).
  void showShortcuts();
  void showAbout();
  std::shared_ptr<const ModelDocument> document() const;
  /// The open model's path ("" when none).
  QString documentPath() const;
  /// The last error shown in a dialog (empty if none).
  QString lastError() const { return last_error_; }
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
  RunWatcher* runWatcher() const { return watcher_; }
  void stopFollowing();
  /// Time from a layout request to its drawing on screen, for the last drawing (ms).
  double lastPaintMs() const { return last_paint_ms_; }

 signals:
  /// A layout was drawn (after an open, expand, collapse).
  void graphShown();
  /// The engine went back to idle (after any task).
  void engineIdle();

 protected:
  void closeEvent(QCloseEvent* event) override;
  void dragEnterEvent(QDragEnterEvent* event) override;
  void dropEvent(QDropEvent* event) override;
  bool eventFilter(QObject* watched, QEvent* event) override;

 private:
  void buildActions();
  void buildDocks();
  void documentChanged();
  void requestLayout();
  void showLayoutResult(std::shared_ptr<const GraphLayout> layout,
                        const std::set<int64_t>& expanded, double seconds, bool cached);
  void progress(const EngineProgress& p);
  void taskStarted(const QString& task);
  void taskEnded();
  void showError(const QString& title, const QString& message);
  void addRecent(const QString& path);
  void updateRecentMenu();
  void selectOperator(qint64 op, bool from_tree = false);
  void selectNodeGroup(qint64 group, bool from_tree = false);
  /// Records the selection (1 operator, 2 node group), selects `tree_group` in the tree when
  /// `sync_tree`, and highlights it in the graph, expanding `layer` first when it is collapsed.
  void select(int kind, qint64 index, int64_t tree_group, int64_t layer, bool sync_tree);
  void applySelection();
  void applyOverlay();
  void placeOverlays();
  void exportGraph(bool png);
  void openDialog(bool folder);
  void runTextTask(bool knowledge);
  void updateWelcome();
  /// Writes a setting on a background thread (QSettings syncs with fdatasync, tens of ms).
  void saveSetting(const QString& key, const QVariant& value);

  Engine* engine_ = nullptr;
  LayoutCache* layouts_ = nullptr;
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
  UserGuideWindow* guide_ = nullptr;
  bool opening_ = false;  // an open is running (the welcome page steps aside)
  QLineEdit* search_ = nullptr;
  QComboBox* overlay_ = nullptr;
  QLabel* status_ = nullptr;
  QLabel* time_left_ = nullptr;
  QProgressBar* progress_ = nullptr;
  QPushButton* cancel_ = nullptr;
  QMenu* recent_menu_ = nullptr;
  std::vector<QAction*> model_actions_;  // enabled when a model with weights is open

  std::set<int64_t> expanded_;
  int selection_kind_ = 0;  // 0 none, 1 operator, 2 node group
  qint64 selection_ = -1;
  bool centre_pending_ = false;
  const void* shown_document_ = nullptr;  // the document whose graph is drawn
  bool selecting_ = false;
  bool layout_requested_ = false;
  QString last_error_;
  QString last_search_;
  int search_position_ = -1;
  double last_paint_ms_ = 0;
  qint64 request_started_ns_ = 0;
  bool dark_ = false;
  QString theme_;
  QString interrupted_run_;  // the record of a run that did not end (see RunPanel)
  bool closing_ = false;
  QString device_ = "cpu", dtype_ = "float32";
  QStringList recent_;
  QThreadPool* settings_writer_ = nullptr;  // one thread: writes stay in order
  RunWatcher* watcher_ = nullptr;
  void updateFollowStatus();
};

}  // namespace lorashear
