#include "view_actions.h"

#include <QAction>
#include <QActionGroup>
#include <QComboBox>
#include <QCompleter>
#include <QDockWidget>
#include <QLabel>
#include <QLineEdit>
#include <QMenu>
#include <QStatusBar>
#include <QStringListModel>
#include <QTabWidget>
#include <QToolBar>

#include <utility>

#include "document.h"
#include "graph_controller.h"
#include "lorashear/ui/engine.h"
#include "lorashear/ui/main_window.h"
#include "lorashear/ui/theme.h"
#include "lorashear/viewers/graph_overview.h"
#include "lorashear/viewers/graph_view.h"

namespace lorashear {

ViewActions::ViewActions(MainWindow* window, GraphController* graph)
    : QObject(window), window_(window), graph_(graph) {
  auto* view = window->graphView();
  search_ = new QLineEdit;
  search_->setPlaceholderText(tr("Find operator or node group (Ctrl+F)"));
  search_->setClearButtonEnabled(true);
  search_->setMinimumWidth(280);
  auto* completer = new QCompleter(new QStringListModel(this), this);
  completer->setCaseSensitivity(Qt::CaseInsensitive);
  completer->setFilterMode(Qt::MatchContains);
  completer->setMaxVisibleItems(15);
  search_->setCompleter(completer);
  connect(search_, &QLineEdit::returnPressed, this, [this] {
    if (!graph_->search(search_->text()))
      window_->statusBar()->showMessage(tr("Nothing matches “%1”").arg(search_->text()), 5000);
  });
  connect(completer, qOverload<const QString&>(&QCompleter::activated), this,
          [this](const QString& text) { graph_->search(text); });
  // The completer offers the open model's operators and node groups.
  connect(window->engine(), &Engine::documentChanged, this, [this] {
    const auto doc = window_->document();
    if (!doc) return;
    QStringList names;
    for (const auto& n : doc->trace.nodes)
      names << QString::fromStdString(n.name);
    for (const auto& g : doc->deps.node_groups)
      names << QString::fromStdString(g.id);
    static_cast<QStringListModel*>(search_->completer()->model())->setStringList(names);
  });

  find_ = new QAction(tr("&Find…"), this);
  find_->setShortcut(QKeySequence::Find);
  connect(find_, &QAction::triggered, this, [this] {
    search_->setFocus();
    search_->selectAll();
  });
  expand_ = new QAction(tr("&Expand all layers"), this);
  connect(expand_, &QAction::triggered, graph, &GraphController::expandAll);
  collapse_ = new QAction(tr("&Collapse all layers"), this);
  connect(collapse_, &QAction::triggered, graph, &GraphController::collapseAll);
  fit_ = new QAction(tr("&Fit to window"), this);
  fit_->setShortcut(Qt::CTRL | Qt::Key_0);
  connect(fit_, &QAction::triggered, view, &GraphView::fitAll);
  zoom_in_ = new QAction(tr("Zoom &in"), this);
  zoom_in_->setShortcut(QKeySequence::ZoomIn);
  connect(zoom_in_, &QAction::triggered, view, [view] { view->scale(1.25, 1.25); });
  zoom_out_ = new QAction(tr("Zoom &out"), this);
  zoom_out_->setShortcut(QKeySequence::ZoomOut);
  connect(zoom_out_, &QAction::triggered, view, [view] { view->scale(0.8, 0.8); });
  overview_ = new QAction(tr("O&verview"), this);
  overview_->setCheckable(true);
  overview_->setChecked(true);
  connect(overview_, &QAction::toggled, window->overview(), &QWidget::setVisible);
  // Acting on the graph shows it (the actions reach the view from any tab).
  auto show_graph = [this] { window_->centralTabs()->setCurrentWidget(window_->graphView()); };
  for (auto* a : {expand_, collapse_, fit_, zoom_in_, zoom_out_, overview_})
    connect(a, &QAction::triggered, this, show_graph);
  connect(graph->overlayBox(), &QComboBox::activated, this, show_graph);
}

void ViewActions::fillToolBar(QToolBar* graph) {
  graph->addWidget(search_);
  graph->addAction(expand_);
  graph->addAction(collapse_);
  graph->addAction(fit_);
  graph->addSeparator();
  graph->addWidget(new QLabel(tr(" Colour by ")));
  graph->addWidget(graph_->overlayBox());
}

void ViewActions::fillMenu(QMenu* view, QToolBar* toolbar) {
  for (auto* a : {find_, expand_, collapse_, fit_, zoom_in_, zoom_out_, overview_})
    view->addAction(a);
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
  for (auto* d : window_->findChildren<QDockWidget*>())
    panels->addAction(d->toggleViewAction());
  panels->addAction(toolbar->toggleViewAction());
}

void ViewActions::setTheme(const QString& name) {
  window_->graphView()->setDark(apply_theme(name));
  for (auto* a : window_->findChildren<QAction*>())
    if (a->isCheckable() && a->data().toString() == name) a->setChecked(true);
  if (name != theme_ && !theme_.isEmpty()) window_->saveSetting("theme", name);
  theme_ = name;
  graph_->applyOverlay();
}

}  // namespace lorashear
