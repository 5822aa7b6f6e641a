#include "lorashear/viewers/layout_cache.h"

#include <QtConcurrent/QtConcurrentRun>

#include <mutex>

#include <stdexcept>
#include "lorashear/viewers/threads.h"

namespace lorashear {

namespace {
constexpr size_t kCapacity = 24;
const char kToPool = 0;  // the handoff's key (threads.h)
}  // namespace

struct LayoutCache::Result {
  std::mutex mutex;
  std::shared_ptr<const GraphLayout> layout;
  QString error;
};

LayoutCache::LayoutCache(QObject* parent) : QObject(parent) {
  qRegisterMetaType<std::shared_ptr<const GraphLayout>>();
  qRegisterMetaType<std::set<int64_t>>();
  watcher_ = new QFutureWatcher<void>(this);
  connect(watcher_, &QFutureWatcherBase::finished, this, &LayoutCache::done);
}

LayoutCache::~LayoutCache() {
  watcher_->waitForFinished();
}

void LayoutCache::reset(Compute compute) {
  compute_ = std::move(compute);
  ++generation_;
  cache_.clear();
  pending_.reset();
}

void LayoutCache::request(const std::set<int64_t>& expanded) {
  for (auto it = cache_.begin(); it != cache_.end(); ++it)
    if (it->first == expanded) {
      cache_.splice(cache_.begin(), cache_, it);  // most recently used first
      pending_.reset();
      emit layoutReady(cache_.front().second, expanded, 0.0, true);
      return;
    }
  if (running_) {
    pending_ = expanded;
    return;
  }
  start(expanded);
}

void LayoutCache::start(const std::set<int64_t>& expanded) {
  if (!compute_) return;
  running_ = expanded;
  running_generation_ = generation_;
  auto compute = compute_;
  auto result = std::make_shared<Result>();
  result_ = result;
  const Handoff queueing(&kToPool);
  watcher_->setFuture(QtConcurrent::run([compute, expanded, result] {
    handoff_receive(&kToPool);
    thread_local const bool lowered = (lower_thread_priority(), true);
    (void)lowered;
    try {
      auto layout = std::make_shared<const GraphLayout>(compute(expanded));
      std::lock_guard<std::mutex> lock(result->mutex);
      result->layout = std::move(layout);
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(result->mutex);
      result->error = QString::fromStdString(e.what());
    }
  }));
}

void LayoutCache::done() {
  std::shared_ptr<const GraphLayout> layout;
  QString error;
  {
    std::lock_guard<std::mutex> lock(result_->mutex);
    layout = std::move(result_->layout);
    error = result_->error;
  }
  result_.reset();
  const auto expanded = *running_;
  const bool current = running_generation_ == generation_;
  running_.reset();
  if (current) {
    if (layout) {
      cache_.emplace_front(expanded, layout);
      while (cache_.size() > kCapacity)
        cache_.pop_back();
      if (!pending_) emit layoutReady(layout, expanded, layout->seconds, false);
    } else {
      emit layoutFailed(error);
    }
  }
  if (pending_) {
    const auto next = *pending_;
    pending_.reset();
    request(next);
  }
}

}  // namespace lorashear
