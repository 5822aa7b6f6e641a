#include "lorashear/ui/main_window.h"

#include <spdlog/spdlog.h>
#include <QAction>
#include <QActionGroup>
#include <QApplication>
#include <QCloseEvent>
#include <QComboBox>
#include <QCompleter>
#include <QDir>
#include <QDockWidget>
#include <QElapsedTimer>
#include <QFileDialog>
#include <QFileInfo>
#include <QGridLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QMenuBar>
#include <QMessageBox>
#include <QMimeData>
#include <QProgressBar>
#include <QPushButton>
#include <QScrollArea>
#include <QSettings>
#include <QStatusBar>
#include <QStringListModel>
#include <QTabWidget>
#include <QThreadPool>
#include <QTimer>
#include <QToolBar>
#include <QTreeView>
#include <QVBoxLayout>

#include <algorithm>

#include "document.h"
#include "lorashear/build_info.h"
#include "lorashear/runtime.h"
#include "lorashear/ui/compare_panel.h"
#include "lorashear/ui/engine.h"
#include "lorashear/ui/experiments_panel.h"
#include "lorashear/ui/export_dialog.h"
#include "lorashear/ui/help_dialogs.h"
#include "lorashear/ui/inspector.h"
#include "lorashear/ui/log_view.h"
#include "lorashear/ui/node_group_model.h"
#include "lorashear/ui/plan_editor.h"
#include "lorashear/ui/preferences_dialog.h"
#include "lorashear/ui/run_panel.h"
#include "lorashear/ui/run_watcher.h"
#include "lorashear/ui/summary_view.h"
#include "lorashear/ui/theme.h"
#include "lorashear/ui/welcome_page.h"
#include "lorashear/viewers/graph_legend.h"
#include "lorashear/viewers/graph_overview.h"
#include "lorashear/viewers/graph_view.h"
#include "lorashear/viewers/layout_cache.h"

namespace lorashear {

namespace {

constexpr int kMaxRecent = 10;
// saveState()'s version: a state saved by a layout without the central tabs (0) is ignored.
constexpr int kStateVersion = 1;
constexpr int64_t kExpandedByDefault = 4;  // models with at most this many layers open expanded
// Set at the first start: later starts without a model open the demo model.
constexpr const char* kWelcomeShown = "welcome/shown";

qint64 now_ns() {
  static QElapsedTimer clock = [] {
    QElapsedTimer t;
    t.start();
    return t;
  }();
  return clock.nsecsElapsed();
}

// Nodes and node groups matching a search, best first: exact names and ".text" suffixes, then
// substrings, each in graph order.
struct Match {
  bool group = false;
  size_t index = 0;
};

std::vector<Match> find_matches(const ModelDocument& doc, const QString& text) {
  const std::string needle = text.trimmed().toLower().toStdString();
  std::vector<Match> exact, partial;
  if (needle.empty()) return exact;
  auto lower = [](std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    return s;
  };
  auto consider = [&](const std::string& name, Match m) {
    const auto n = lower(name);
    const auto at = n.find(needle);
    if (at == std::string::npos) return;
    const bool whole = at + needle.size() == n.size() && (at == 0 || n[at - 1] == '.');
    (whole ? exact : partial).push_back(m);
  };
  for (size_t i = 0; i < doc.trace.nodes.size(); ++i)
    consider(doc.trace.nodes[i].name, {false, i});
  for (size_t g = 0; g < doc.deps.node_groups.size(); ++g)
    consider(doc.deps.node_groups[g].id, {true, g});
  exact.insert(exact.end(), partial.begin(), partial.end());
  return exact;
}

}  // namespace

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent) {
  setObjectName("mainWindow");
  setWindowTitle(tr("LoRAShear Studio"));
  setAcceptDrops(true);
  install_log_sink();
  // Graphviz's version for Help ▸ About: its first query touches Graphviz's global state, so it
  // is made now, before any layout runs on another thread.
  graphviz_runtime_version();
  engine_ = new Engine(this);
  layouts_ = new LayoutCache(this);

  // What needs room shares the middle as tabs: the graph, and (from buildDocks) a run's dashboard
  // and a comparison's tables; the docks keep the forms that drive them.
  tabs_ = new QTabWidget;
  tabs_->setObjectName("centralTabs");
  tabs_->setDocumentMode(true);
  // While no model is open the welcome page covers the tabs: both share one grid cell, so the tabs
  // keep their size and state underneath.
  auto* centre = new QWidget;
  auto* cell = new QGridLayout(centre);
  cell->setContentsMargins(0, 0, 0, 0);
  cell->addWidget(tabs_, 0, 0);
  welcome_ = new WelcomePage;
  cell->addWidget(welcome_, 0, 0);
  setCentralWidget(centre);
  view_ = new GraphView;
  view_->setObjectName("graphView");
  tabs_->addTab(view_, tr("Graph"));
  overview_ = new GraphOverview(view_, view_);
  overview_->setObjectName("overview");
  legend_ = new GraphLegend(view_);
  view_->installEventFilter(this);

  groups_ = new NodeGroupModel(this);
  buildDocks();
  buildActions();

  status_ = new QLabel;
  time_left_ = new QLabel;
  progress_ = new QProgressBar;
  progress_->setMaximumWidth(220);
  progress_->setTextVisible(true);
  cancel_ = new QPushButton(tr("Cancel"));
  cancel_->setToolTip(tr("Stop the running task (Esc)"));
  // The running task on the right (permanent widgets); temporary messages on the left.
  statusBar()->addPermanentWidget(status_);
  statusBar()->addPermanentWidget(time_left_);
  statusBar()->addPermanentWidget(progress_);
  statusBar()->addPermanentWidget(cancel_);
  progress_->hide();
  cancel_->hide();
  status_->hide();

  connect(cancel_, &QPushButton::clicked, engine_, &Engine::cancel);
  connect(engine_, &Engine::taskStarted, this, &MainWindow::taskStarted);
  // A model being opened takes the welcome page's place; if it fails, the page comes back.
  connect(engine_, &Engine::taskStarted, this, [this](const QString& task) {
    if (task.startsWith("Open")) {
      opening_ = true;
      updateWelcome();
    }
  });
  connect(welcome_, &WelcomePage::openModelRequested, this,
          [this](bool folder) { openDialog(folder); });
  connect(welcome_, &WelcomePage::openDemoRequested, this,
          [this] { openModel(QString::fromStdString(demo_model_path())); });
  connect(welcome_, &WelcomePage::openRecentRequested, this,
          [this](const QString& path) { openModel(path); });
  connect(welcome_, &WelcomePage::userGuideRequested, this, [this] { showUserGuide(); });
  connect(engine_, &Engine::progressChanged, this, &MainWindow::progress);
  connect(engine_, &Engine::idle, this, &MainWindow::taskEnded);
  connect(engine_, &Engine::documentChanged, this, &MainWindow::documentChanged);
  connect(engine_, &Engine::taskFailed, this, [this](const QString& task, const QString& message) {
    showError(
        task.startsWith("Open") ? tr("Cannot open the model") : tr("%1 failed").arg(task),
        message + (document() && task.startsWith("Open") ? tr("\n\nThe previous model stays open.")
                                                         : QString()));
  });
  connect(engine_, &Engine::taskFinished, this,
          [this](const QString& task, const QString& summary) {
            statusBar()->showMessage(QString("%1: %2").arg(task, summary), 15000);
          });
  connect(engine_, &Engine::taskCancelled, this, [this](const QString& task) {
    statusBar()->showMessage(tr("%1: cancelled").arg(task), 8000);
  });
  connect(engine_, &Engine::importanceChanged, this, [this] {
    plan_->setImportance(engine_->importance());
    setOverlay("importance");
  });
  connect(plan_, &PlanEditor::analysisRequested, this, [this] { runTextTask(true); });
  connect(layouts_, &LayoutCache::layoutReady, this, &MainWindow::showLayoutResult);
  connect(layouts_, &LayoutCache::layoutFailed, this, [this](const QString& message) {
    layout_requested_ = false;
    showError(tr("Cannot lay out the graph"), message);
  });
  connect(view_, &GraphView::layerToggleRequested, this, [this](int layer) {
    auto expanded = expanded_;
    if (!expanded.erase(layer)) expanded.insert(layer);
    setExpanded(expanded);
  });
  connect(view_, &GraphView::operatorSelected, this, [this](qint64 op) { selectOperator(op); });
  connect(inspector_, &Inspector::operatorActivated, this,
          [this](qint64 op) { selectOperator(op); });
  connect(inspector_, &Inspector::nodeGroupActivated, this,
          [this](qint64 g) { selectNodeGroup(g); });

  settings_writer_ = new QThreadPool(this);
  settings_writer_->setMaxThreadCount(1);
  QSettings settings;
  recent_ = settings.value("recentFiles").toStringList();
  interrupted_run_ = settings.value("run/active").toString();
  device_ = settings.value("device", "cpu").toString();
  dtype_ = settings.value("dtype", "float32").toString();
  resize(1400, 900);
  const auto inspector_dock = findChild<QDockWidget*>("inspectorDock");
  const auto log_dock = findChild<QDockWidget*>("logDock");
  resizeDocks({inspector_dock}, {330}, Qt::Horizontal);
  resizeDocks({log_dock}, {220}, Qt::Vertical);
  restoreGeometry(settings.value("window/geometry").toByteArray());
  restoreState(settings.value("window/state").toByteArray(), kStateVersion);
  setTheme(settings.value("theme", "light").toString());
  welcome_->setDemoModel(QString::fromStdString(demo_model_path()));
  updateRecentMenu();
  updateWelcome();
  placeOverlays();
}

MainWindow::~MainWindow() {
  settings_writer_->waitForDone();
}

void MainWindow::saveSetting(const QString& key, const QVariant& value) {
  settings_writer_->start([key, value] { QSettings().setValue(key, value); });
}

std::shared_ptr<const ModelDocument> MainWindow::document() const {
  return engine_->document();
}

QString MainWindow::documentPath() const {
  const auto doc = document();
  return doc ? QString::fromStdString(doc->path) : QString();
}

bool MainWindow::layoutPending() const {
  return layout_requested_ || layouts_->computing();
}

void MainWindow::buildDocks() {
  auto dock = [this](const QString& title, const QString& name, QWidget* widget,
                     Qt::DockWidgetArea area) {
    auto* d = new QDockWidget(title, this);
    d->setObjectName(name);
    d->setWidget(widget);
    addDockWidget(area, d);
    return d;
  };
  summary_ = new SummaryView;
  auto* summary_dock = dock(tr("Model"), "modelDock", summary_, Qt::LeftDockWidgetArea);

  auto* tree_panel = new QWidget;
  auto* tree_layout = new QVBoxLayout(tree_panel);
  tree_layout->setContentsMargins(2, 2, 2, 2);
  auto* filter = new QLineEdit;
  filter->setPlaceholderText(tr("Filter node groups (e.g. L3 or mlp)"));
  filter->setClearButtonEnabled(true);
  tree_layout->addWidget(filter);
  tree_ = new QTreeView;
  tree_->setObjectName("nodeGroupTree");
  tree_->setModel(groups_);
  tree_->setUniformRowHeights(true);
  tree_->setAlternatingRowColors(true);
  tree_->header()->setSectionResizeMode(QHeaderView::Interactive);
  tree_->setColumnWidth(NodeGroupModel::Name, 170);
  tree_layout->addWidget(tree_);
  connect(filter, &QLineEdit::textChanged, groups_, &NodeGroupModel::setFilter);
  connect(tree_->selectionModel(), &QItemSelectionModel::currentChanged, this,
          [this](const QModelIndex& current) {
            if (selecting_ || !current.isValid()) return;
            selectNodeGroup(current.data(NodeGroupModel::GroupRole).toLongLong(), true);
          });
  auto* tree_dock = dock(tr("Node groups"), "nodeGroupDock", tree_panel, Qt::LeftDockWidgetArea);
  tabifyDockWidget(summary_dock, tree_dock);
  tree_dock->raise();

  // The run and comparison forms are tall and narrow: on the right, beside the plan (bottom) a run
  // is set up with. (The bottom keeps the full width: the plan needs it.)
  inspector_ = new Inspector;
  auto* inspector_dock =
      dock(tr("Inspector"), "inspectorDock", inspector_, Qt::RightDockWidgetArea);
  log_ = new LogView;
  auto* log_dock = dock(tr("Log"), "logDock", log_, Qt::BottomDockWidgetArea);
  plan_ = new PlanEditor;
  auto* plan_dock = dock(tr("Plan"), "planDock", plan_, Qt::BottomDockWidgetArea);
  tabifyDockWidget(log_dock, plan_dock);
  log_dock->raise();
  run_ = new RunPanel(engine_, plan_->model());
  auto* run_dock = dock(tr("Run"), "runDock", run_, Qt::RightDockWidgetArea);
  tabifyDockWidget(inspector_dock, run_dock);
  compare_ = new ComparePanel(engine_);
  auto* compare_dock = dock(tr("Compare"), "compareDock", compare_, Qt::RightDockWidgetArea);
  tabifyDockWidget(run_dock, compare_dock);
  inspector_dock->raise();
  tabs_->addTab(run_->dashboard(), tr("Dashboard"));
  tabs_->addTab(compare_->results(), tr("Compare"));
  experiments_ = new ExperimentsPanel(engine_, run_, plan_->model());
  // Its form is wider than a small window's central area: it scrolls there rather than widening
  // the window.
  auto* experiments_scroll = new QScrollArea;
  experiments_scroll->setObjectName("experimentsScroll");
  experiments_scroll->setWidgetResizable(true);
  experiments_scroll->setFrameShape(QFrame::NoFrame);
  experiments_scroll->setWidget(experiments_);
  tabs_->addTab(experiments_scroll, tr("Experiments"));
  connect(experiments_, &ExperimentsPanel::openModelRequested, this,
          [this](const QString& path) { openModel(path); });
  connect(engine_, &Engine::taskStarted, this, [this, experiments_scroll](const QString& task) {
    if (task == "Experiment") tabs_->setCurrentWidget(experiments_scroll);
  });
  // The overlays sit in the view's corners: placed again once the view is shown at its size.
  connect(tabs_, &QTabWidget::currentChanged, this, [this] {
    if (tabs_->currentWidget() == view_) QTimer::singleShot(0, this, &MainWindow::placeOverlays);
  });
  connect(compare_, &ComparePanel::nodeGroupActivated, this, [this](const QString& id) {
    if (const auto doc = document()) selectNodeGroup(doc->deps.find_node_group(id.toStdString()));
  });
  // A comparison shows its tables; the graph shows what it removed.
  connect(engine_, &Engine::comparisonChanged, this, [this] {
    tabs_->setCurrentWidget(compare_->results());
    setOverlay("removed");
  });
  // A run is recorded while it goes, so that a restart can offer to resume it.
  connect(run_, &RunPanel::runStarted, this, [this] {
    tabs_->setCurrentWidget(run_->dashboard());
    // The model the run starts from is what its result is compared with.
    compare_->setOtherModel(documentPath());
    compare_->setTextPath(run_->settings().text);
    interrupted_run_ =
        run_record(run_->settings(), plan_->model()->planJson(), documentPath(), device_, dtype_);
    saveSetting("run/active", interrupted_run_);
  });
  connect(run_, &RunPanel::runStarted, this, &MainWindow::stopFollowing);
  connect(run_, &RunPanel::runEnded, this, [this] {
    if (!closing_) discardInterruptedRun();
  });
  // The graph follows a run: nodes coloured by their node group's sparsity.
  connect(run_, &RunPanel::sparsityChanged, this, [this] {
    if (overlay_->currentData().toString() == "sparsity")
      applyOverlay();
    else
      setOverlay("sparsity");
  });
}

void MainWindow::buildActions() {
  auto* file = menuBar()->addMenu(tr("&File"));
  auto* open = file->addAction(tr("&Open model file…"), this, [this] { openDialog(false); });
  open->setShortcut(QKeySequence::Open);
  file->addAction(tr("Open model &folder…"), this, [this] { openDialog(true); });
  recent_menu_ = file->addMenu(tr("Open &recent"));
  auto* open_run = file->addAction(tr("Open r&un…"), this, [this] {
    const auto path = QFileDialog::getOpenFileName(
        this, tr("A run to follow: its metrics.jsonl or run.json (in OUT.run)"),
        QSettings().value("lastRunDir", QDir::homePath()).toString(),
        tr("Run records (metrics.jsonl run.json *.jsonl);;All files (*)"));
    if (path.isEmpty()) return;
    saveSetting("lastRunDir", QFileInfo(path).absolutePath());
    openRun(path);
  });
  open_run->setObjectName("openRun");
  auto* adapter = file->addAction(tr("Attach a LoRA &adapter…"), this, [this] {
    const auto doc = document();
    if (!doc || !doc->has_weights) return;
    const auto dir = QFileDialog::getExistingDirectory(
        this, tr("LoRA adapter folder (adapter_config.json + adapter_model.safetensors)"),
        QString::fromStdString(doc->path));
    if (!dir.isEmpty()) openModel(QString::fromStdString(doc->path), dir);
  });
  adapter->setObjectName("attachAdapter");
  file->addSeparator();
  auto* preferences = file->addAction(tr("&Preferences…"), this, [this] {
    PreferencesDialog dialog(device_, dtype_, this);
    if (dialog.exec() == QDialog::Accepted) setOpenOptions(dialog.device(), dialog.dtype());
  });
  preferences->setShortcut(QKeySequence::Preferences);
  file->addSeparator();
  auto* export_model = file->addAction(tr("E&xport model…"), this, [this] {
    if (!document() || !document()->has_weights) return;
    ExportDialog dialog(engine_, this);
    dialog.setFolder(QString::fromStdString(document()->path) + "-export");
    dialog.exec();
  });
  export_model->setObjectName("exportModel");
  file->addAction(tr("Export graph as &SVG…"), this, [this] { exportGraph(false); });
  file->addAction(tr("Export graph as &PNG…"), this, [this] { exportGraph(true); });
  file->addSeparator();
  auto* quit = file->addAction(tr("&Quit"), this, &QWidget::close);
  quit->setShortcut(QKeySequence::Quit);

  auto* graph = addToolBar(tr("Graph"));
  graph->setObjectName("graphToolbar");
  search_ = new QLineEdit;
  search_->setPlaceholderText(tr("Find operator or node group (Ctrl+F)"));
  search_->setClearButtonEnabled(true);
  search_->setMinimumWidth(280);
  auto* completer = new QCompleter(new QStringListModel(this), this);
  completer->setCaseSensitivity(Qt::CaseInsensitive);
  completer->setFilterMode(Qt::MatchContains);
  completer->setMaxVisibleItems(15);
  search_->setCompleter(completer);
  graph->addWidget(search_);
  connect(search_, &QLineEdit::returnPressed, this, [this] {
    if (!search(search_->text()))
      statusBar()->showMessage(tr("Nothing matches “%1”").arg(search_->text()), 5000);
  });
  connect(completer, qOverload<const QString&>(&QCompleter::activated), this,
          [this](const QString& text) { search(text); });

  auto* view = menuBar()->addMenu(tr("&View"));
  auto* find = view->addAction(tr("&Find…"), this, [this] {
    search_->setFocus();
    search_->selectAll();
  });
  find->setShortcut(QKeySequence::Find);
  auto* expand = view->addAction(tr("&Expand all layers"), this, &MainWindow::expandAll);
  auto* collapse = view->addAction(tr("&Collapse all layers"), this, &MainWindow::collapseAll);
  auto* fit = view->addAction(tr("&Fit to window"), view_, &GraphView::fitAll);
  fit->setShortcut(Qt::CTRL | Qt::Key_0);
  auto* zoom_in = view->addAction(tr("Zoom &in"), this, [this] { view_->scale(1.25, 1.25); });
  zoom_in->setShortcut(QKeySequence::ZoomIn);
  auto* zoom_out = view->addAction(tr("Zoom &out"), this, [this] { view_->scale(0.8, 0.8); });
  zoom_out->setShortcut(QKeySequence::ZoomOut);
  auto* show_overview = view->addAction(tr("O&verview"));
  show_overview->setCheckable(true);
  show_overview->setChecked(true);
  connect(show_overview, &QAction::toggled, overview_, &QWidget::setVisible);
  // Acting on the graph shows it (the actions reach the view from any tab).
  for (auto* a : {expand, collapse, fit, zoom_in, zoom_out, show_overview})
    connect(a, &QAction::triggered, this, [this] { tabs_->setCurrentWidget(view_); });
  graph->addAction(expand);
  graph->addAction(collapse);
  graph->addAction(fit);
  graph->addSeparator();
  graph->addWidget(new QLabel(tr(" Colour by ")));
  overlay_ = new QComboBox;
  overlay_->setObjectName("overlay");
  for (const auto& name : overlayNames())
    overlay_->addItem(name, name);
  graph->addWidget(overlay_);
  connect(overlay_, &QComboBox::currentIndexChanged, this,
          [this] { setOverlay(overlay_->currentData().toString()); });
  connect(overlay_, &QComboBox::activated, this, [this] { tabs_->setCurrentWidget(view_); });

  view->addSeparator();
  auto* theme = view->addMenu(tr("&Theme"));
  auto* themes = new QActionGroup(this);
  for (const auto& [name, label] : {std::pair<QString, QString>{"light", tr("&Light")},
                                    {"dark", tr("&Dark")},
                                    {"system", tr("&System")}}) {
    auto* a = theme->addAction(label, this, [this, name = name] { setTheme(name); });
    a->setCheckable(true);
    a->setData(name);
    themes->addAction(a);
  }
  view->addSeparator();
  auto* panels = view->addMenu(tr("&Panels"));
  for (auto* d : findChildren<QDockWidget*>())
    panels->addAction(d->toggleViewAction());
  panels->addAction(graph->toggleViewAction());

  auto* tools = menuBar()->addMenu(tr("&Tools"));
  auto* ppl = tools->addAction(tr("Evaluate &perplexity…"), this, [this] { runTextTask(false); });
  auto* knowledge = tools->addAction(tr("&Knowledge distribution analysis…"), this,
                                     [this] { runTextTask(true); });
  model_actions_ = {ppl, knowledge, findChild<QAction*>("attachAdapter"),
                    findChild<QAction*>("exportModel")};
  for (auto* a : model_actions_)
    a->setEnabled(false);
  tools->addAction(tr("C&ompare with another model…"), this, [this] {
    findChild<QDockWidget*>("compareDock")->show();
    findChild<QDockWidget*>("compareDock")->raise();
    tabs_->setCurrentWidget(compare_->results());
  });
  tools->addSeparator();
  auto* cancel = tools->addAction(tr("&Cancel the running task"), engine_, &Engine::cancel);
  cancel->setShortcut(Qt::Key_Escape);

  auto* help = menuBar()->addMenu(tr("&Help"));
  auto* guide = help->addAction(tr("&User guide"), this, [this] { showUserGuide(); });
  guide->setObjectName("userGuideAction");
  guide->setShortcut(Qt::Key_F1);
  auto* keys = help->addAction(tr("&Keyboard shortcuts"), this, &MainWindow::showShortcuts);
  keys->setObjectName("shortcutsAction");
  help->addSeparator();
  auto* about = help->addAction(tr("&About LoRAShear Studio"), this, &MainWindow::showAbout);
  about->setObjectName("aboutAction");
  about->setMenuRole(QAction::AboutRole);
}

QStringList MainWindow::overlayNames() const {
  return {"kind", "parameters", "variable groups", "prunable", "importance", "sparsity", "removed"};
}

void MainWindow::setTheme(const QString& name) {
  dark_ = apply_theme(name);
  view_->setDark(dark_);
  for (auto* a : findChildren<QAction*>())
    if (a->isCheckable() && a->data().toString() == name) a->setChecked(true);
  if (name != theme_ && !theme_.isEmpty()) saveSetting("theme", name);
  theme_ = name;
  applyOverlay();
}

// ---- opening

bool MainWindow::openModel(const QString& path, const QString& adapter) {
  if (engine_->busy()) {
    statusBar()->showMessage(tr("Busy with %1: cancel it first").arg(engine_->currentTask()), 5000);
    return false;
  }
  OpenOptions o;
  o.device = device_;
  o.dtype = dtype_;
  o.adapter = adapter.isEmpty() ? QString() : QFileInfo(adapter).absoluteFilePath();
  spdlog::info("opening {} on {} in {}{}", path.toStdString(), device_.toStdString(),
               dtype_.toStdString(),
               adapter.isEmpty() ? "" : " with adapter " + adapter.toStdString());
  return engine_->openModel(QFileInfo(path).absoluteFilePath(), o);
}

bool MainWindow::openAtStart(const QString& model, const QString& adapter) {
  const bool first = !QSettings().value(kWelcomeShown, false).toBool();
  if (first) saveSetting(kWelcomeShown, true);
  if (!model.isEmpty()) return openModel(model, adapter);
  if (first) return false;  // the welcome page says what to do
  const auto demo = QString::fromStdString(demo_model_path());
  return !demo.isEmpty() && openModel(demo, adapter);
}

void MainWindow::setOpenOptions(const QString& device, const QString& dtype) {
  if (device == device_ && dtype == dtype_) return;
  device_ = device;
  dtype_ = dtype;
  saveSetting("device", device);
  saveSetting("dtype", dtype);
}

void MainWindow::openDialog(bool folder) {
  QSettings settings;
  const auto dir = settings.value("lastDir", QDir::homePath()).toString();
  const QString path =
      folder ? QFileDialog::getExistingDirectory(this, tr("Open a Hugging Face model folder"), dir)
             : QFileDialog::getOpenFileName(
                   this, tr("Open a model or a configuration"), dir,
                   tr("Models (*.bin *.gguf *.safetensors *.json);;All files (*)"));
  if (path.isEmpty()) return;
  saveSetting("lastDir", QFileInfo(path).absolutePath());
  // A weights file inside a Hugging Face folder opens the folder.
  const QFileInfo info(path);
  openModel(info.suffix() == "safetensors" ? info.absolutePath() : path);
}

void MainWindow::addRecent(const QString& path) {
  const auto before = recent_;
  recent_.removeAll(path);
  recent_.prepend(path);
  while (recent_.size() > kMaxRecent)
    recent_.removeLast();
  if (recent_ == before) return;
  saveSetting("recentFiles", recent_);
  updateRecentMenu();
}

QStringList MainWindow::recentFiles() const {
  return recent_;
}

void MainWindow::updateRecentMenu() {
  recent_menu_->clear();
  const auto recent = recentFiles();
  for (const auto& path : recent) {
    auto* a = recent_menu_->addAction(path, this, [this, path] { openModel(path); });
    a->setEnabled(QFileInfo::exists(path));
  }
  if (recent.isEmpty()) recent_menu_->addAction(tr("(none yet)"))->setEnabled(false);
  welcome_->setRecentFiles(recent);
  recent_menu_->addSeparator();
  recent_menu_->addAction(tr("Clear the list"), this, [this] {
    recent_.clear();
    saveSetting("recentFiles", recent_);
    updateRecentMenu();
  });
}

void MainWindow::documentChanged() {
  const auto doc = document();
  updateWelcome();
  if (!doc) return;
  selection_kind_ = 0;
  selection_ = -1;
  groups_->setDocument(doc);
  inspector_->setDocument(doc);
  plan_->model()->setDocument(doc);
  plan_->setImportance({});
  summary_->setDocument(doc);
  const auto n_layers = doc->trace.config.n_layers();
  std::set<int64_t> expanded;
  if (n_layers <= kExpandedByDefault)
    for (int64_t l = 0; l < n_layers; ++l)
      expanded.insert(l);
  expanded_ = expanded;
  layouts_->reset([doc](const std::set<int64_t>& layers) {
    return layout_graph(doc->trace, doc->deps, layers);
  });
  QStringList names;
  for (const auto& n : doc->trace.nodes)
    names << QString::fromStdString(n.name);
  for (const auto& g : doc->deps.node_groups)
    names << QString::fromStdString(g.id);
  static_cast<QStringListModel*>(search_->completer()->model())->setStringList(names);
  for (auto* a : model_actions_)
    a->setEnabled(doc->has_weights);
  // Importance, a run's sparsity and a comparison belong to the model they were measured on.
  if (overlay_->currentData().toString() == "importance" ||
      overlay_->currentData().toString() == "sparsity" ||
      overlay_->currentData().toString() == "removed")
    overlay_->setCurrentIndex(0);
  const auto path = QString::fromStdString(doc->path);
  setWindowTitle(tr("%1 — LoRAShear Studio").arg(QFileInfo(path).fileName()));
  addRecent(path);
  requestLayout();
}

// ---- the graph

void MainWindow::requestLayout() {
  if (!document()) return;
  layout_requested_ = true;
  request_started_ns_ = now_ns();
  statusBar()->showMessage(tr("Laying out the graph…"));
  layouts_->request(expanded_);
}

void MainWindow::showLayoutResult(std::shared_ptr<const GraphLayout> layout,
                                  const std::set<int64_t>& expanded, double seconds, bool cached) {
  if (expanded != expanded_) return;  // a newer request follows
  const auto doc = document();
  const bool same_graph = shown_document_ == doc.get();
  view_->showLayout(*layout, same_graph);
  shown_document_ = doc.get();
  applyOverlay();
  applySelection();
  if (view_->isVisible()) view_->viewport()->repaint();
  last_paint_ms_ = static_cast<double>(now_ns() - request_started_ns_) / 1e6;
  layout_requested_ = false;
  statusBar()->showMessage(
      tr("%1 layers (%2 expanded), %3 operators — %4, shown %5 ms after the request; "
         "double-click a layer to expand or collapse it")
          .arg(doc->trace.config.n_layers())
          .arg(expanded_.size())
          .arg(doc->trace.nodes.size())
          .arg(cached ? tr("layout from the cache")
                      : tr("laid out in %1 ms").arg(seconds * 1000, 0, 'f', 0))
          .arg(last_paint_ms_, 0, 'f', 0),
      20000);
  placeOverlays();
  emit graphShown();
}

void MainWindow::setExpanded(const std::set<int64_t>& layers) {
  expanded_ = layers;
  requestLayout();
}

void MainWindow::expandAll() {
  const auto doc = document();
  if (!doc) return;
  std::set<int64_t> all;
  for (int64_t l = 0; l < doc->trace.config.n_layers(); ++l)
    all.insert(l);
  setExpanded(all);
}

void MainWindow::collapseAll() {
  setExpanded({});
}

void MainWindow::setOverlay(const QString& name) {
  const int index = overlay_->findData(name);
  if (index >= 0 && index != overlay_->currentIndex()) {
    overlay_->setCurrentIndex(index);  // comes back here through the signal
    return;
  }
  if (name == "importance" && engine_->importance().empty()) {
    statusBar()->showMessage(
        tr("No importance yet: run Tools ▸ Knowledge distribution analysis first"), 8000);
  }
  applyOverlay();
}

void MainWindow::applyOverlay() {
  const auto doc = document();
  const auto name = overlay_ ? overlay_->currentData().toString() : QString("kind");
  GraphOverlay o;
  if (doc && name != "kind") {
    const auto& deps = doc->deps;
    auto put = [&](const NodeGroup& g, double v) { o.groups[g.id] = v; };
    if (name == "removed") {
      o.title = tr("removed against the dense model (fraction of variable groups)");
      for (const auto& d : engine_->comparison().groups) {
        const auto g = deps.find_node_group(d.id.toStdString());
        if (g >= 0 && d.before > 0)
          put(deps.node_groups[static_cast<size_t>(g)],
              static_cast<double>(d.before - d.after) / static_cast<double>(d.before));
      }
    } else if (name == "importance" || name == "sparsity") {
      o.title = name == "importance" ? tr("importance (knowledge delta, normalised)")
                                     : tr("sparsity (fraction of variable groups at zero)");
      if (name == "sparsity" && !run_->sparsity().empty())
        for (const auto& g : deps.node_groups)
          if (g.prunable) put(g, 0.0);  // groups the plan leaves whole stay at zero
      for (const auto& [id, v] : name == "importance" ? engine_->importance() : run_->sparsity()) {
        const auto g = deps.find_node_group(id);
        if (g >= 0) put(deps.node_groups[static_cast<size_t>(g)], v);
      }
    } else {
      for (const auto& g : deps.node_groups) {
        if (name == "parameters")
          put(g, static_cast<double>(g.total().params));
        else if (name == "variable groups")
          put(g, static_cast<double>(g.size));
        else if (name == "prunable")
          put(g, g.prunable ? 1.0 : 0.0);
      }
      o.title = name == "parameters"        ? tr("parameters per node group")
                : name == "variable groups" ? tr("variable groups per node group")
                                            : tr("prunable (1) or not (0)");
    }
    // A collapsed layer shows the mean (prunable: the max) of its node groups' values.
    std::map<int64_t, std::vector<double>> per_layer;
    for (const auto& [id, v] : o.groups) {
      const auto layer = deps.node_groups[static_cast<size_t>(deps.find_node_group(id))].layer;
      if (layer >= 0) per_layer[layer].push_back(v);
    }
    for (auto& [layer, values] : per_layer) {
      double sum = 0;
      for (auto v : values)
        sum += v;
      o.layers[layer] = name == "prunable" ? *std::max_element(values.begin(), values.end())
                                           : sum / static_cast<double>(values.size());
    }
    if (!o.groups.empty()) {
      o.low = 0;
      o.high = 0;
      for (const auto& [id, v] : o.groups)
        o.high = std::max(o.high, v);
      if (o.high <= 0 || name == "sparsity" || name == "removed") o.high = 1;
      // Groups going to zero (a run) or gone (a comparison) fade out.
      o.fade = name == "sparsity" || name == "removed";
    }
  }
  view_->setOverlay(o);
  if (o.empty())
    legend_->setKinds(view_->kindColours());
  else
    legend_->setScale(o.title, o.low, o.high);
  placeOverlays();
}

void MainWindow::placeOverlays() {
  const auto area = view_->viewport()->geometry();
  legend_->adjustSize();
  legend_->move(area.left() + 8, area.bottom() - legend_->height() - 8);
  legend_->raise();
  const double w = view_->sceneRect().width(), h = view_->sceneRect().height();
  int ow = 180, oh = 180;
  if (w > 0 && h > 0) {
    if (h > w)
      ow = std::max(60, static_cast<int>(oh * w / h));
    else
      oh = std::max(60, static_cast<int>(ow * h / w));
  }
  oh = std::min(oh, std::max(60, area.height() / 3));
  overview_->setGeometry(area.right() - ow - 8, area.top() + 8, ow, oh);
  overview_->refit();
  overview_->raise();
}

bool MainWindow::eventFilter(QObject* watched, QEvent* event) {
  // After the view's own resize handling, which moves the viewport.
  if (watched == view_ && event->type() == QEvent::Resize)
    QTimer::singleShot(0, this, &MainWindow::placeOverlays);
  return QMainWindow::eventFilter(watched, event);
}

// ---- selection

void MainWindow::selectOperator(qint64 op, bool from_tree) {
  const auto doc = document();
  if (!doc || op < 0 || op >= static_cast<qint64>(doc->trace.nodes.size())) return;
  inspector_->showOperator(op);
  select(1, op, doc->deps.home_group[static_cast<size_t>(op)],
         doc->trace.nodes[static_cast<size_t>(op)].layer, !from_tree);
}

void MainWindow::selectNodeGroup(qint64 group, bool from_tree) {
  const auto doc = document();
  if (!doc || group < 0 || group >= static_cast<qint64>(doc->deps.node_groups.size())) return;
  inspector_->showNodeGroup(group);
  select(2, group, group, doc->deps.node_groups[static_cast<size_t>(group)].layer, !from_tree);
}

void MainWindow::select(int kind, qint64 index, int64_t tree_group, int64_t layer, bool sync_tree) {
  // A selection is shown in the graph and the inspector (which shares its dock area with forms).
  tabs_->setCurrentWidget(view_);
  inspector_->parentWidget()->raise();
  selection_kind_ = kind;
  selection_ = index;
  centre_pending_ = true;
  if (sync_tree && tree_group >= 0) {
    selecting_ = true;
    const auto row = groups_->groupIndex(static_cast<int>(tree_group));
    tree_->setCurrentIndex(row);
    tree_->scrollTo(row);
    selecting_ = false;
  }
  if (layer >= 0 && !expanded_.count(layer)) {
    auto expanded = expanded_;
    expanded.insert(layer);
    setExpanded(expanded);  // the selection is applied once it is drawn
    return;
  }
  applySelection();
}

void MainWindow::applySelection() {
  const auto doc = document();
  std::vector<std::string> ids;
  if (doc && selection_ >= 0) {
    std::set<std::string> seen;
    auto add = [&](int64_t op) {
      const auto layer = doc->trace.nodes[static_cast<size_t>(op)].layer;
      const std::string id = layer >= 0 && !expanded_.count(layer) ? "L" + std::to_string(layer)
                                                                   : "n" + std::to_string(op);
      if (seen.insert(id).second) ids.push_back(id);
    };
    if (selection_kind_ == 1)
      add(selection_);
    else if (selection_kind_ == 2)
      for (auto op : doc->deps.node_groups[static_cast<size_t>(selection_)].nodes)
        add(op);
  }
  view_->setHighlighted(ids);
  if (centre_pending_ && !ids.empty()) {
    view_->centerOnNodes(ids);
    centre_pending_ = false;
  }
}

bool MainWindow::search(const QString& text) {
  const auto doc = document();
  if (!doc) return false;
  const auto matches = find_matches(*doc, text);
  if (matches.empty()) return false;
  search_position_ =
      text == last_search_ ? (search_position_ + 1) % static_cast<int>(matches.size()) : 0;
  last_search_ = text;
  const auto& m = matches[static_cast<size_t>(search_position_)];
  if (m.group)
    selectNodeGroup(static_cast<qint64>(m.index));
  else
    selectOperator(static_cast<qint64>(m.index));
  statusBar()->showMessage(tr("Match %1 of %2 for “%3” (Enter: next)")
                               .arg(search_position_ + 1)
                               .arg(matches.size())
                               .arg(text),
                           8000);
  return true;
}

// ---- tasks

void MainWindow::taskStarted(const QString& task) {
  last_error_.clear();
  status_->setText(task + "…");
  status_->show();
  progress_->setRange(0, 0);
  progress_->show();
  cancel_->show();
  cancel_->setEnabled(true);
  time_left_->clear();
}

void MainWindow::progress(const EngineProgress& p) {
  QString text = p.task;
  if (!p.stage.isEmpty()) text += " — " + p.stage;
  if (!p.message.isEmpty()) text += ": " + p.message;
  status_->setText(text);
  if (p.total > 0) {
    progress_->setRange(0, 1000);
    progress_->setValue(
        static_cast<int>(1000.0 * static_cast<double>(p.done) / static_cast<double>(p.total)));
    progress_->setFormat(QString("%1 / %2").arg(p.done).arg(p.total));
  } else {
    progress_->setRange(0, 0);
  }
  time_left_->setText(p.eta >= 0 ? tr("%1 s left").arg(p.eta, 0, 'f', p.eta < 10 ? 1 : 0)
                                 : tr("%1 s").arg(p.elapsed, 0, 'f', 1));
}

void MainWindow::taskEnded() {
  opening_ = false;
  updateWelcome();
  progress_->hide();
  cancel_->hide();
  time_left_->clear();
  status_->hide();
  emit engineIdle();
}

void MainWindow::runTextTask(bool knowledge) {
  QSettings settings;
  QString dir = settings.value("lastTextDir").toString();
  if (dir.isEmpty()) {
    const auto shared =
        QDir(QApplication::applicationDirPath()).absoluteFilePath("../shared/data/text");
    dir = QFileInfo::exists(shared) ? shared : QDir::homePath();
  }
  const auto path = QFileDialog::getOpenFileName(
      this, knowledge ? tr("Text for the knowledge analysis") : tr("Text to evaluate"), dir,
      tr("Text (*.txt *.jsonl *.json);;All files (*)"));
  if (path.isEmpty()) return;
  saveSetting("lastTextDir", QFileInfo(path).absolutePath());
  if (knowledge)
    engine_->analyzeKnowledge(path);
  else
    engine_->evaluatePerplexity(path, 200);
}

void MainWindow::showError(const QString& title, const QString& message) {
  last_error_ = message;
  auto* box = new QMessageBox(QMessageBox::Critical, title, message, QMessageBox::Ok, this);
  box->setAttribute(Qt::WA_DeleteOnClose);
  box->setObjectName("errorDialog");
  box->open();  // window-modal, does not block the event loop
}

void MainWindow::exportGraph(bool png) {
  if (!document()) return;
  const auto path = QFileDialog::getSaveFileName(
      this, png ? tr("Export the graph as PNG") : tr("Export the graph as SVG"),
      QSettings().value("lastDir", QDir::homePath()).toString() +
          (png ? "/graph.png" : "/graph.svg"),
      png ? tr("PNG image (*.png)") : tr("SVG drawing (*.svg)"));
  if (path.isEmpty()) return;
  QString error;
  const bool ok = png ? view_->exportPng(path, 2.0, &error) : view_->exportSvg(path, &error);
  if (!ok)
    showError(tr("Cannot export the graph"), error);
  else
    statusBar()->showMessage(tr("Wrote %1").arg(path), 8000);
}

// ---- help

bool MainWindow::openRun(const QString& path) {
  if (run_->following() == false && engine_->busy() && engine_->currentTask() == "Prune") {
    statusBar()->showMessage(tr("A run is going in this window: cancel it first"), 5000);
    return false;
  }
  QString target = path;
  if (QFileInfo(path).fileName() == "run.json") target = QFileInfo(path).absolutePath();
  RunWatcher* watcher = nullptr;
  try {
    watcher = new RunWatcher(target, this);
  } catch (const std::exception& e) {
    showError(tr("Cannot open the run"), QString::fromUtf8(e.what()));
    return false;
  }
  stopFollowing();
  watcher_ = watcher;
  const auto title = tr("Following %1").arg(QDir::toNativeSeparators(watcher->runDir()));
  run_->beginFollowing(title);
  connect(watcher, &RunWatcher::metrics, this,
          [this, title](const MetricBatches& batches, const std::map<std::string, double>& sparsity,
                        bool restarted) {
            if (restarted) run_->beginFollowing(title);
            run_->showMetrics(batches, sparsity);
            updateFollowStatus();
          });
  connect(watcher, &RunWatcher::statusChanged, this, &MainWindow::updateFollowStatus);
  connect(watcher, &RunWatcher::problemFound, this, [this](const QString& message) {
    statusBar()->showMessage(message, 15000);
    spdlog::warn("{}", message.toStdString());
    updateFollowStatus();
  });
  tabs_->setCurrentWidget(run_->dashboard());
  updateWelcome();
  QElapsedTimer clock;
  clock.start();
  watcher->start();
  spdlog::info("opened run {}: {} lines in {:.3f} s", watcher->metricsPath().toStdString(),
               watcher->lines(), static_cast<double>(clock.nsecsElapsed()) / 1e9);
  // The run's model and plan, as for a local run.
  const auto model = watcher->modelPath();
  const auto plan = watcher->planJson();
  auto apply_plan = [this, plan] {
    if (!plan.isEmpty() && !plan_->model()->setPlanJson(plan))
      spdlog::warn("the run's plan does not apply: {}", plan_->model()->lastError().toStdString());
  };
  if (!model.isEmpty() && QFileInfo::exists(model)) {
    if (QFileInfo(model).canonicalFilePath() == QFileInfo(documentPath()).canonicalFilePath()) {
      apply_plan();
    } else if (openModel(model)) {
      auto* once = new QObject(this);
      connect(engine_, &Engine::documentChanged, once, [this, once, apply_plan] {
        once->deleteLater();
        QTimer::singleShot(0, this, apply_plan);
        // The open raised the graph: the run stays in front.
        QTimer::singleShot(0, this, [this] {
          if (watcher_) tabs_->setCurrentWidget(run_->dashboard());
        });
      });
      connect(engine_, &Engine::taskFailed, once, [once] { once->deleteLater(); });
    }
  }
  return true;
}

void MainWindow::stopFollowing() {
  if (!watcher_) return;
  delete watcher_;
  watcher_ = nullptr;
  run_->endFollowing();
  updateWelcome();
}

void MainWindow::updateFollowStatus() {
  if (!watcher_) return;
  const auto status = watcher_->status();
  QString text;
  if (status == "running")
    text = tr("running");
  else if (status == "finished")
    text = tr("finished");
  else if (status == "failed")
    text = watcher_->error().isEmpty() ? tr("failed") : tr("failed: %1").arg(watcher_->error());
  else if (status == "cancelled")
    text = tr("cancelled");
  else if (status == "stale")
    text = tr("stale: no new line for 5 minutes");
  else
    text = tr("no run.json");
  text = tr("%1: %2 · %3 lines")
             .arg(QFileInfo(watcher_->runDir()).fileName(), text)
             .arg(watcher_->lines());
  if (!watcher_->problem().isEmpty()) text += tr(" · %1").arg(watcher_->problem());
  run_->setFollowStatus(text, QDir::toNativeSeparators(watcher_->metricsPath()));
}

void MainWindow::updateWelcome() {
  const bool show = !document() && !opening_ && !watcher_;
  welcome_->setVisible(show);
  if (show) welcome_->raise();
}

bool MainWindow::showUserGuide(const QString& anchor) {
  const auto path = QString::fromStdString(manual_path());
  if (path.isEmpty()) {
    auto* box = new QMessageBox(
        QMessageBox::Warning, tr("User guide not found"),
        tr("The user guide is not installed. It was expected at:\n\n%1\n\nIn a build tree, "
           "build it with: cmake --build build --target manual")
            .arg(manual_candidates().join("\n")),
        QMessageBox::Ok, this);
    box->setObjectName("manualMissing");
    box->setAttribute(Qt::WA_DeleteOnClose);
    box->open();
    return false;
  }
  if (!guide_) guide_ = new UserGuideWindow(this);
  guide_->showManual(path, anchor);
  guide_->show();
  guide_->raise();
  guide_->activateWindow();
  return true;
}

void MainWindow::showShortcuts() {
  // Built from the actions each time, so it lists what the window has now.
  delete findChild<ShortcutsDialog*>("shortcutsDialog");
  auto* dialog = new ShortcutsDialog(shortcut_entries(this), this);
  dialog->setAttribute(Qt::WA_DeleteOnClose);
  dialog->show();
}

void MainWindow::showAbout() {
  auto* dialog = new AboutDialog(this);
  dialog->setAttribute(Qt::WA_DeleteOnClose);
  dialog->open();
}

// ---- window

bool MainWindow::hasInterruptedRun() const {
  RunSettings s;
  QString plan, model, device, dtype;
  if (interrupted_run_.isEmpty() ||
      !parse_run_record(interrupted_run_, &s, &plan, &model, &device, &dtype))
    return false;
  return QFileInfo::exists(s.out_dir + ".checkpoint");
}

void MainWindow::discardInterruptedRun() {
  if (interrupted_run_.isEmpty()) return;
  interrupted_run_.clear();
  saveSetting("run/active", QString());
}

bool MainWindow::resumeRun() {
  RunSettings s;
  QString plan, model, device, dtype;
  if (!hasInterruptedRun() ||
      !parse_run_record(interrupted_run_, &s, &plan, &model, &device, &dtype))
    return false;
  setOpenOptions(device, dtype);
  if (!openModel(model)) return false;
  // Once the model is open: its plan and settings, then the run from its checkpoint.
  auto* once = new QObject(this);
  connect(engine_, &Engine::documentChanged, once, [this, once, s, plan] {
    once->deleteLater();
    QTimer::singleShot(0, this, [this, s, plan] {
      if (!plan_->model()->setPlanJson(plan)) {
        showError(tr("Cannot resume the run"), plan_->model()->lastError());
        return;
      }
      run_->setSettings(s);
      findChild<QDockWidget*>("runDock")->raise();
      run_->start(/*resume=*/true);
    });
  });
  connect(engine_, &Engine::taskFailed, once, [once] { once->deleteLater(); });
  return true;
}

void MainWindow::closeEvent(QCloseEvent* event) {
  closing_ = true;  // a run stopped by closing stays resumable
  engine_->cancel();
  settings_writer_->waitForDone();
  QSettings settings;
  settings.setValue("window/geometry", saveGeometry());
  settings.setValue("window/state", saveState(kStateVersion));
  event->accept();
}

void MainWindow::dragEnterEvent(QDragEnterEvent* event) {
  const auto* mime = event->mimeData();
  if (mime->hasUrls() && !mime->urls().isEmpty() && mime->urls().front().isLocalFile())
    event->acceptProposedAction();
}

void MainWindow::dropEvent(QDropEvent* event) {
  const auto path = event->mimeData()->urls().front().toLocalFile();
  const QFileInfo info(path);
  openModel(info.suffix() == "safetensors" ? info.absolutePath() : path);
  event->acceptProposedAction();
}

}  // namespace lorashear
