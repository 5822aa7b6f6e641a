#include "task_controller.h"

#include <QAction>
#include <QApplication>
#include <QDir>
#include <QDockWidget>
#include <QFileDialog>
#include <QFileInfo>
#include <QLabel>
#include <QMenu>
#include <QMessageBox>
#include <QProgressBar>
#include <QPushButton>
#include <QSettings>
#include <QStatusBar>
#include <QTabWidget>

#include "document.h"
#include "lorashear/ui/compare_panel.h"
#include "lorashear/ui/engine.h"
#include "lorashear/ui/main_window.h"
#include "lorashear/ui/plan_editor.h"

namespace lorashear {

TaskController::TaskController(MainWindow* window) : QObject(window), window_(window) {
  auto* engine = window->engine();
  status_ = new QLabel;
  time_left_ = new QLabel;
  progress_ = new QProgressBar;
  progress_->setMaximumWidth(220);
  progress_->setTextVisible(true);
  cancel_ = new QPushButton(tr("Cancel"));
  cancel_->setToolTip(tr("Stop the running task (Esc)"));
  // The running task on the right (permanent widgets); temporary messages on the left.
  auto* bar = window->statusBar();
  bar->addPermanentWidget(status_);
  bar->addPermanentWidget(time_left_);
  bar->addPermanentWidget(progress_);
  bar->addPermanentWidget(cancel_);
  progress_->hide();
  cancel_->hide();
  status_->hide();

  perplexity_ = new QAction(tr("Evaluate &perplexity…"), this);
  connect(perplexity_, &QAction::triggered, this, [this] { runTextTask(false); });
  knowledge_ = new QAction(tr("&Knowledge distribution analysis…"), this);
  connect(knowledge_, &QAction::triggered, this, [this] { runTextTask(true); });
  for (auto* a : {perplexity_, knowledge_})
    a->setEnabled(false);
  compare_ = new QAction(tr("C&ompare with another model…"), this);
  connect(compare_, &QAction::triggered, this, [this] {
    window_->findChild<QDockWidget*>("compareDock")->show();
    window_->findChild<QDockWidget*>("compareDock")->raise();
    window_->centralTabs()->setCurrentWidget(window_->comparePanel()->results());
  });
  cancel_task_ = new QAction(tr("&Cancel the running task"), this);
  cancel_task_->setShortcut(Qt::Key_Escape);
  connect(cancel_task_, &QAction::triggered, engine, &Engine::cancel);

  connect(cancel_, &QPushButton::clicked, engine, &Engine::cancel);
  connect(engine, &Engine::taskStarted, this, &TaskController::taskStarted);
  connect(engine, &Engine::progressChanged, this, &TaskController::progress);
  connect(engine, &Engine::idle, this, &TaskController::taskEnded);
  connect(engine, &Engine::taskFailed, this, [this](const QString& task, const QString& message) {
    const bool open = task.startsWith("Open");
    showError(open ? tr("Cannot open the model") : tr("%1 failed").arg(task),
              message + (window_->document() && open ? tr("\n\nThe previous model stays open.")
                                                     : QString()));
  });
  connect(engine, &Engine::taskFinished, this, [this](const QString& task, const QString& summary) {
    window_->statusBar()->showMessage(QString("%1: %2").arg(task, summary), 15000);
  });
  connect(engine, &Engine::taskCancelled, this, [this](const QString& task) {
    window_->statusBar()->showMessage(tr("%1: cancelled").arg(task), 8000);
  });
  connect(engine, &Engine::importanceChanged, this,
          [this] { window_->planEditor()->setImportance(window_->engine()->importance()); });
  connect(window->planEditor(), &PlanEditor::analysisRequested, this,
          [this] { runTextTask(true); });
  connect(engine, &Engine::documentChanged, this, [this] {
    if (const auto doc = window_->document())
      for (auto* a : {perplexity_, knowledge_})
        a->setEnabled(doc->has_weights);
  });
}

void TaskController::fillMenu(QMenu* tools) {
  tools->addAction(perplexity_);
  tools->addAction(knowledge_);
  tools->addAction(compare_);
  tools->addSeparator();
  tools->addAction(cancel_task_);
}

void TaskController::taskStarted(const QString& task) {
  last_error_.clear();
  status_->setText(task + "…");
  status_->show();
  progress_->setRange(0, 0);
  progress_->show();
  cancel_->show();
  cancel_->setEnabled(true);
  time_left_->clear();
}

void TaskController::progress(const EngineProgress& p) {
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

void TaskController::taskEnded() {
  progress_->hide();
  cancel_->hide();
  time_left_->clear();
  status_->hide();
}

void TaskController::runTextTask(bool knowledge) {
  QSettings settings;
  QString dir = settings.value("lastTextDir").toString();
  if (dir.isEmpty()) {
    const auto shared =
        QDir(QApplication::applicationDirPath()).absoluteFilePath("../shared/data/text");
    dir = QFileInfo::exists(shared) ? shared : QDir::homePath();
  }
  const auto path = QFileDialog::getOpenFileName(
      window_, knowledge ? tr("Text for the knowledge analysis") : tr("Text to evaluate"), dir,
      tr("Text (*.txt *.jsonl *.json);;All files (*)"));
  if (path.isEmpty()) return;
  window_->saveSetting("lastTextDir", QFileInfo(path).absolutePath());
  if (knowledge)
    window_->engine()->analyzeKnowledge(path);
  else
    window_->engine()->evaluatePerplexity(path, 200);
}

void TaskController::showError(const QString& title, const QString& message) {
  last_error_ = message;
  auto* box = new QMessageBox(QMessageBox::Critical, title, message, QMessageBox::Ok, window_);
  box->setAttribute(Qt::WA_DeleteOnClose);
  box->setObjectName("errorDialog");
  box->open();  // window-modal, does not block the event loop
}

}  // namespace lorashear
