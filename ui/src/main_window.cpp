#include "lorashear/ui/main_window.h"

#include <QCloseEvent>
#include <QDockWidget>
#include <QFileInfo>
#include <QGridLayout>
#include <QHeaderView>
#include <QLineEdit>
#include <QMenuBar>
#include <QMimeData>
#include <QScrollArea>
#include <QSettings>
#include <QTabWidget>
#include <QThreadPool>
#include <QToolBar>
#include <QTreeView>
#include <QVBoxLayout>

#include "document.h"
#include "file_actions.h"
#include "graph_controller.h"
#include "help_actions.h"
#include "lorashear/build_info.h"
#include "lorashear/ui/compare_panel.h"
#include "lorashear/ui/engine.h"
#include "lorashear/ui/experiments_panel.h"
#include "lorashear/ui/help_dialogs.h"
#include "lorashear/ui/inspector.h"
#include "lorashear/ui/log_view.h"
#include "lorashear/ui/node_group_model.h"
#include "lorashear/ui/plan_editor.h"
#include "lorashear/ui/run_panel.h"
#include "lorashear/ui/summary_view.h"
#include "lorashear/ui/welcome_page.h"
#include "lorashear/viewers/graph_legend.h"
#include "lorashear/viewers/graph_overview.h"
#include "lorashear/viewers/graph_view.h"
#include "lorashear/viewers/threads.h"
#include "run_coordinator.h"
#include "task_controller.h"
#include "view_actions.h"

namespace lorashear {

namespace {

// saveState()'s version: a state saved by a layout without the central tabs (0) is ignored.
constexpr int kStateVersion = 1;

}  // namespace

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent) {
  setObjectName("mainWindow");
  setWindowTitle(tr("LoRAShear Studio"));
  setAcceptDrops(true);
  install_log_sink();
  // Graphviz's version for Help ▸ About, asked now: later it would wait for a running layout.
  graphviz_runtime_version();
  settings_writer_ = new QThreadPool(this);
  settings_writer_->setMaxThreadCount(1);
  engine_ = new Engine(this);

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

  groups_ = new NodeGroupModel(this);
  buildDocks();

  // The docks show a new document before the controllers react to it.
  connect(engine_, &Engine::documentChanged, this, &MainWindow::documentChanged);
  tasks_ = new TaskController(this);
  // A model being opened takes the welcome page's place; if it fails, the page comes back.
  connect(engine_, &Engine::taskStarted, this, [this](const QString& task) {
    if (task.startsWith("Open")) {
      opening_ = true;
      updateWelcome();
    }
  });
  connect(engine_, &Engine::idle, this, [this] {
    opening_ = false;
    updateWelcome();
    emit engineIdle();
  });
  graph_ = new GraphController(this, tasks_);
  connect(graph_, &GraphController::graphShown, this, &MainWindow::graphShown);
  files_ = new FileActions(this, tasks_);
  view_actions_ = new ViewActions(this, graph_);
  runs_ = new RunCoordinator(this, files_, graph_, tasks_);
  connect(files_, &FileActions::openRunRequested, runs_, &RunCoordinator::openRun);
  connect(runs_, &RunCoordinator::followingChanged, this, &MainWindow::updateWelcome);
  help_ = new HelpActions(this);
  buildMenus();

  QSettings settings;
  resize(1400, 900);
  const auto inspector_dock = findChild<QDockWidget*>("inspectorDock");
  const auto log_dock = findChild<QDockWidget*>("logDock");
  resizeDocks({inspector_dock}, {330}, Qt::Horizontal);
  resizeDocks({log_dock}, {220}, Qt::Vertical);
  restoreGeometry(settings.value("window/geometry").toByteArray());
  restoreState(settings.value("window/state").toByteArray(), kStateVersion);
  setTheme(settings.value("theme", "light").toString());
  welcome_->setDemoModel(QString::fromStdString(demo_model_path()));
  updateWelcome();
  graph_->placeOverlays();
}

MainWindow::~MainWindow() {
  settings_writer_->waitForDone();
}

void MainWindow::saveSetting(const QString& key, const QVariant& value) {
  static const char to_writer = 0;  // the handoff's key (threads.h)
  const Handoff queueing(&to_writer);
  settings_writer_->start([key, value] {
    handoff_receive(&to_writer);
    QSettings().setValue(key, value);
  });
}

std::shared_ptr<const ModelDocument> MainWindow::document() const {
  return engine_->document();
}

QString MainWindow::documentPath() const {
  const auto doc = document();
  return doc ? QString::fromStdString(doc->path) : QString();
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
}

void MainWindow::buildMenus() {
  files_->fillMenu(menuBar()->addMenu(tr("&File")));
  auto* toolbar = addToolBar(tr("Graph"));
  toolbar->setObjectName("graphToolbar");
  view_actions_->fillToolBar(toolbar);
  view_actions_->fillMenu(menuBar()->addMenu(tr("&View")), toolbar);
  tasks_->fillMenu(menuBar()->addMenu(tr("&Tools")));
  help_->fillMenu(menuBar()->addMenu(tr("&Help")));
}

void MainWindow::documentChanged() {
  const auto doc = document();
  updateWelcome();
  if (!doc) return;
  groups_->setDocument(doc);
  inspector_->setDocument(doc);
  plan_->model()->setDocument(doc);
  plan_->setImportance({});
  summary_->setDocument(doc);
  const auto path = QString::fromStdString(doc->path);
  setWindowTitle(tr("%1 — LoRAShear Studio").arg(QFileInfo(path).fileName()));
}

void MainWindow::updateWelcome() {
  const bool show = !document() && !opening_ && !runs_->runWatcher();
  welcome_->setVisible(show);
  if (show) welcome_->raise();
}

// ---- what the controllers do

bool MainWindow::openModel(const QString& path, const QString& adapter) {
  return files_->openModel(path, adapter);
}

bool MainWindow::openAtStart(const QString& model, const QString& adapter) {
  return files_->openAtStart(model, adapter);
}

void MainWindow::setOpenOptions(const QString& device, const QString& dtype) {
  files_->setOpenOptions(device, dtype);
}

QString MainWindow::device() const {
  return files_->device();
}

QString MainWindow::dtype() const {
  return files_->dtype();
}

QStringList MainWindow::recentFiles() const {
  return files_->recentFiles();
}

bool MainWindow::search(const QString& text) {
  return graph_->search(text);
}

void MainWindow::expandAll() {
  graph_->expandAll();
}

void MainWindow::collapseAll() {
  graph_->collapseAll();
}

void MainWindow::setExpanded(const std::set<int64_t>& layers) {
  graph_->setExpanded(layers);
}

const std::set<int64_t>& MainWindow::expandedLayers() const {
  return graph_->expandedLayers();
}

void MainWindow::setOverlay(const QString& name) {
  graph_->setOverlay(name);
}

QStringList MainWindow::overlayNames() const {
  return graph_->overlayNames();
}

bool MainWindow::layoutPending() const {
  return graph_->layoutPending();
}

double MainWindow::lastPaintMs() const {
  return graph_->lastPaintMs();
}

void MainWindow::setTheme(const QString& name) {
  view_actions_->setTheme(name);
}

QString MainWindow::lastError() const {
  return tasks_->lastError();
}

bool MainWindow::hasInterruptedRun() const {
  return runs_->hasInterruptedRun();
}

bool MainWindow::resumeRun() {
  return runs_->resumeRun();
}

void MainWindow::discardInterruptedRun() {
  runs_->discardInterruptedRun();
}

bool MainWindow::openRun(const QString& path) {
  return runs_->openRun(path);
}

RunWatcher* MainWindow::runWatcher() const {
  return runs_->runWatcher();
}

void MainWindow::stopFollowing() {
  runs_->stopFollowing();
}

bool MainWindow::showUserGuide(const QString& anchor) {
  return help_->showUserGuide(anchor);
}

UserGuideWindow* MainWindow::userGuide() const {
  return help_->userGuide();
}

void MainWindow::showShortcuts() {
  help_->showShortcuts();
}

void MainWindow::showAbout() {
  help_->showAbout();
}

// ---- window

void MainWindow::closeEvent(QCloseEvent* event) {
  runs_->windowClosing();  // a run stopped by closing stays resumable
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
  files_->openPath(event->mimeData()->urls().front().toLocalFile());
  event->acceptProposedAction();
}

}  // namespace lorashear
