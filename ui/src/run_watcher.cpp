#include "lorashear/ui/run_watcher.h"

#include <QFileInfo>
#include <QFileSystemWatcher>

#include <cmath>

#include "lorashear/run_log.h"

namespace lorashear {

RunWatcher::RunWatcher(const QString& path, QObject* parent)
    : QObject(parent), follower_(std::make_unique<RunFollower>(path.toStdString())) {
  watch_ = new QFileSystemWatcher(this);
  timer_.setInterval(1000);
  connect(&timer_, &QTimer::timeout, this, &RunWatcher::poll);
  connect(watch_, &QFileSystemWatcher::fileChanged, this, &RunWatcher::poll);
  connect(watch_, &QFileSystemWatcher::directoryChanged, this, &RunWatcher::poll);
}

RunWatcher::~RunWatcher() = default;

QString RunWatcher::metricsPath() const {
  return QString::fromStdString(follower_->metricsPath());
}

QString RunWatcher::runDir() const {
  return QString::fromStdString(follower_->dir());
}

qint64 RunWatcher::lines() const {
  return follower_->lines();
}

void RunWatcher::start() {
  // The folder (run.json is replaced by a rename; metrics.jsonl may not exist yet) and the file.
  if (QFileInfo(runDir()).isDir()) watch_->addPath(runDir());
  if (QFileInfo::exists(metricsPath())) watch_->addPath(metricsPath());
  poll();
  timer_.start();
}

void RunWatcher::readInfo() {
  const auto info = follower_->info();
  if (info.is_object()) {
    model_ = QString::fromStdString(info.value("model", std::string()));
    const auto settings = info.value("settings", nlohmann::json::object());
    plan_ = settings.contains("plan") && settings["plan"].is_object()
                ? QString::fromStdString(settings["plan"].dump())
                : QString();
    error_ = info.contains("error") && info["error"].is_string()
                 ? QString::fromStdString(info["error"].get<std::string>())
                 : QString();
    record_error_ = info.contains("metrics_error") && info["metrics_error"].is_string()
                        ? QString::fromStdString(info["metrics_error"].get<std::string>())
                        : QString();
  }
  const auto status = QString::fromStdString(follower_->status(stale_after_));
  if (status != status_) {
    status_ = status;
    emit statusChanged(status_);
  }
}

void RunWatcher::poll() {
  if (polling_) return;  // a watch event while a long first read runs
  polling_ = true;
  // A metrics file created after the start (the writer had not begun): watch it now.
  if (!watch_->files().contains(metricsPath()) && QFileInfo::exists(metricsPath()))
    watch_->addPath(metricsPath());
  MetricBatches batches;
  std::map<std::string, double> sparsity;
  // The fixed series, looked up once per read.
  auto& loss = batches["loss"];
  auto& recovery = batches["recovery"];
  auto& lr = batches["lr"];
  auto& tps = batches["tokens/s"];
  auto& zeroed = batches["zeroed"];
  auto& scheduled = batches["scheduled"];
  auto& period = batches["period"];
  auto& stage = batches["stage"];
  auto& instructions = batches["validation:instructions"];
  auto add = [](MetricBatch& b, double x, double y, double w) {
    if (!std::isfinite(y)) return;
    b.points.append({x, y});
    b.seconds.append(w);
  };
  bool restarted = false;
  try {
    follower_->poll([&](const RunRecord& r) {
      const double x = r.step, w = r.time;
      const bool pruning = r.kind != "recovery";
      for (const auto& [key, v] : r.values) {
        if (key == "loss")
          add(pruning ? loss : recovery, x, v, w);
        else if (key == "lr")
          add(lr, x, v, w);
        else if (key == "tokens_per_second")
          add(tps, x, v, w);
        else if (key == "zeroed")
          add(zeroed, x, v, w);
        else if (key == "scheduled")
          add(scheduled, x, v, w);
        else if (key == "period")
          add(period, x, v, w);
        else if (key == "stage")
          add(stage, x, v, w);
        else if (key == "validation_loss")
          add(instructions, x, v, w);
      }
      for (const auto& n : r.nested) {
        if (n.object == "sparsity") {
          sparsity[std::string(n.key)] = n.value;
        } else if (n.object == "category_loss" || n.object == "weights") {
          const auto name =
              (n.object == "weights" ? QStringLiteral("weight:") : QStringLiteral("validation:")) +
              QString::fromUtf8(n.key.data(), static_cast<qsizetype>(n.key.size()));
          add(batches[name], x, n.value, w);
        }
      }
    });
    restarted = follower_->restarted();
  } catch (const std::exception& e) {
    problem_ = QString::fromUtf8(e.what());
    emit problemFound(problem_);
    // The lines before it are shown; the next poll goes on after the bad line.
    restarted = follower_->restarted();
  }
  for (auto it = batches.begin(); it != batches.end();)
    it = it->second.points.isEmpty() ? batches.erase(it) : std::next(it);
  if (!batches.empty() || !sparsity.empty() || restarted)
    emit metrics(batches, sparsity, restarted);
  readInfo();
  polling_ = false;
}

}  // namespace lorashear
