#include "run_coordinator.h"

#include <spdlog/spdlog.h>
#include <QComboBox>
#include <QDir>
#include <QDockWidget>
#include <QElapsedTimer>
#include <QFileInfo>
#include <QScrollArea>
#include <QSettings>
#include <QStatusBar>
#include <QTabWidget>
#include <QTimer>

#include <map>
#include <string>

#include "file_actions.h"
#include "graph_controller.h"
#include "lorashear/ui/compare_panel.h"
#include "lorashear/ui/engine.h"
#include "lorashear/ui/main_window.h"
#include "lorashear/ui/plan_editor.h"
#include "lorashear/ui/run_panel.h"
#include "lorashear/ui/run_watcher.h"
#include "task_controller.h"

namespace lorashear {

RunCoordinator::RunCoordinator(MainWindow* window, FileActions* files, GraphController* graph,
                               TaskController* tasks)
    : QObject(window), window_(window), files_(files), graph_(graph), tasks_(tasks) {
  interrupted_run_ = QSettings().value("run/active").toString();
  auto* engine = window->engine();
  auto* run = window->runPanel();
  auto* tabs = window->centralTabs();
  auto* experiments = window->findChild<QScrollArea*>("experimentsScroll");
  connect(engine, &Engine::taskStarted, this, [tabs, experiments](const QString& task) {
    if (task == "Experiment") tabs->setCurrentWidget(experiments);
  });
  // A comparison shows its tables; the graph shows what it removed.
  connect(engine, &Engine::comparisonChanged, this, [this] {
    window_->centralTabs()->setCurrentWidget(window_->comparePanel()->results());
    graph_->setOverlay("removed");
  });
  // A run is recorded while it goes, so that a restart can offer to resume it.
  connect(run, &RunPanel::runStarted, this, [this] {
    auto* run = window_->runPanel();
    window_->centralTabs()->setCurrentWidget(run->dashboard());
    // The model the run starts from is what its result is compared with.
    const auto model = window_->documentPath();
    window_->comparePanel()->setOtherModel(model);
    window_->comparePanel()->setTextPath(run->settings().text);
    interrupted_run_ = run_record(run->settings(), window_->planEditor()->model()->planJson(),
                                  model, files_->device(), files_->dtype());
    window_->saveSetting("run/active", interrupted_run_);
  });
  connect(run, &RunPanel::runStarted, this, &RunCoordinator::stopFollowing);
  connect(run, &RunPanel::runEnded, this, [this] {
    if (!closing_) discardInterruptedRun();
  });
  // The graph follows a run: nodes coloured by their node group's sparsity.
  connect(run, &RunPanel::sparsityChanged, this, [this] {
    if (graph_->overlayBox()->currentData().toString() == "sparsity")
      graph_->applyOverlay();
    else
      graph_->setOverlay("sparsity");
  });
}

// ---- a local run

bool RunCoordinator::hasInterruptedRun() const {
  RunSettings s;
  QString plan, model, device, dtype;
  if (interrupted_run_.isEmpty() ||
      !parse_run_record(interrupted_run_, &s, &plan, &model, &device, &dtype))
    return false;
  return QFileInfo::exists(s.out_dir + ".checkpoint");
}

void RunCoordinator::discardInterruptedRun() {
  if (interrupted_run_.isEmpty()) return;
  interrupted_run_.clear();
  window_->saveSetting("run/active", QString());
}

bool RunCoordinator::resumeRun() {
  RunSettings s;
  QString plan, model, device, dtype;
  if (!hasInterruptedRun() ||
      !parse_run_record(interrupted_run_, &s, &plan, &model, &device, &dtype))
    return false;
  files_->setOpenOptions(device, dtype);
  if (!files_->openModel(model)) return false;
  // Once the model is open: its plan and settings, then the run from its checkpoint.
  auto* once = new QObject(this);
  auto* engine = window_->engine();
  connect(engine, &Engine::documentChanged, once, [this, once, s, plan] {
    once->deleteLater();
    QTimer::singleShot(0, this, [this, s, plan] {
      auto* plans = window_->planEditor()->model();
      if (!plans->setPlanJson(plan)) {
        tasks_->showError(tr("Cannot resume the run"), plans->lastError());
        return;
      }
      window_->runPanel()->setSettings(s);
      window_->findChild<QDockWidget*>("runDock")->raise();
      window_->runPanel()->start(/*resume=*/true);
    });
  });
  connect(engine, &Engine::taskFailed, once, [once] { once->deleteLater(); });
  return true;
}

// ---- following a run of another process

bool RunCoordinator::openRun(const QString& path) {
  auto* run = window_->runPanel();
  auto* engine = window_->engine();
  if (run->following() == false && engine->busy() && engine->currentTask() == "Prune") {
    window_->statusBar()->showMessage(tr("A run is going in this window: cancel it first"), 5000);
    return false;
  }
  QString target = path;
  if (QFileInfo(path).fileName() == "run.json") target = QFileInfo(path).absolutePath();
  RunWatcher* watcher = nullptr;
  try {
    watcher = new RunWatcher(target, this);
  } catch (const std::exception& e) {
    tasks_->showError(tr("Cannot open the run"), QString::fromUtf8(e.what()));
    return false;
  }
  stopFollowing();
  watcher_ = watcher;
  const auto title = tr("Following %1").arg(QDir::toNativeSeparators(watcher->runDir()));
  run->beginFollowing(title);
  connect(watcher, &RunWatcher::metrics, this,
          [this, title](const MetricBatches& batches, const std::map<std::string, double>& sparsity,
                        bool restarted) {
            auto* run = window_->runPanel();
            if (restarted) run->beginFollowing(title);
            run->showMetrics(batches, sparsity);
            updateFollowStatus();
          });
  connect(watcher, &RunWatcher::statusChanged, this, &RunCoordinator::updateFollowStatus);
  connect(watcher, &RunWatcher::problemFound, this, [this](const QString& message) {
    window_->statusBar()->showMessage(message, 15000);
    spdlog::warn("{}", message.toStdString());
    updateFollowStatus();
  });
  window_->centralTabs()->setCurrentWidget(run->dashboard());
  emit followingChanged();
  QElapsedTimer clock;
  clock.start();
  watcher->start();
  spdlog::info("opened run {}: {} lines in {:.3f} s", watcher->metricsPath().toStdString(),
               watcher->lines(), static_cast<double>(clock.nsecsElapsed()) / 1e9);
  // The run's model and plan, as for a local run.
  const auto model = watcher->modelPath();
  const auto plan = watcher->planJson();
  auto apply_plan = [this, plan] {
    auto* plans = window_->planEditor()->model();
    if (!plan.isEmpty() && !plans->setPlanJson(plan))
      spdlog::warn("the run's plan does not apply: {}", plans->lastError().toStdString());
  };
  if (!model.isEmpty() && QFileInfo::exists(model)) {
    if (QFileInfo(model).canonicalFilePath() ==
        QFileInfo(window_->documentPath()).canonicalFilePath()) {
      apply_plan();
    } else if (files_->openModel(model)) {
      auto* once = new QObject(this);
      connect(engine, &Engine::documentChanged, once, [this, once, apply_plan] {
        once->deleteLater();
        QTimer::singleShot(0, this, apply_plan);
        // The open raised the graph: the run stays in front.
        QTimer::singleShot(0, this, [this] {
          if (watcher_) window_->centralTabs()->setCurrentWidget(window_->runPanel()->dashboard());
        });
      });
      connect(engine, &Engine::taskFailed, once, [once] { once->deleteLater(); });
    }
  }
  return true;
}

void RunCoordinator::stopFollowing() {
  if (!watcher_) return;
  delete watcher_;
  watcher_ = nullptr;
  window_->runPanel()->endFollowing();
  emit followingChanged();
}

void RunCoordinator::updateFollowStatus() {
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
  if (!watcher_->recordError().isEmpty()) text += tr(" · %1").arg(watcher_->recordError());
  if (!watcher_->problem().isEmpty()) text += tr(" · %1").arg(watcher_->problem());
  window_->runPanel()->setFollowStatus(text, QDir::toNativeSeparators(watcher_->metricsPath()));
}

}  // namespace lorashear
