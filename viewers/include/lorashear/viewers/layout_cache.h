#pragma once
// Graph layouts computed off the GUI thread (QtConcurrent, at a lower priority than the GUI) and
// cached by the set of expanded layers: a request answers at once from the cache, otherwise when
// the computation ends. While one computation runs, only the latest further request is kept (a user
// clicking through layers waits for the last click, not for every one).

#include <QFutureWatcher>
#include <QObject>

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <set>
#include <utility>

#include "lorashear/viewers/graph_layout.h"

namespace lorashear {

class LayoutCache : public QObject {
  Q_OBJECT
 public:
  using Compute = std::function<GraphLayout(const std::set<int64_t>&)>;
  explicit LayoutCache(QObject* parent = nullptr);
  ~LayoutCache() override;

  /// A new graph: drops the cache; results of computations still running are discarded.
  void reset(Compute compute);
  /// Asks for the layout with these layers expanded; layoutReady follows (at once when cached).
  void request(const std::set<int64_t>& expanded);
  bool computing() const { return running_.has_value(); }
  /// Layouts kept (at most 24).
  size_t size() const { return cache_.size(); }

 signals:
  /// `seconds`: Graphviz time, 0 for a cache hit.
  void layoutReady(std::shared_ptr<const lorashear::GraphLayout> layout,
                   const std::set<int64_t>& expanded, double seconds, bool cached);
  void layoutFailed(const QString& message);

 private:
  void start(const std::set<int64_t>& expanded);
  void done();
  Compute compute_;
  uint64_t generation_ = 0;
  std::list<std::pair<std::set<int64_t>, std::shared_ptr<const GraphLayout>>> cache_;
  std::optional<std::set<int64_t>> running_, pending_;
  // What the running computation hands back: the layout or the error, under a std::mutex (which,
  // unlike Qt's future, ThreadSanitizer sees order the two threads).
  struct Result;
  std::shared_ptr<Result> result_;
  QFutureWatcher<void>* watcher_ = nullptr;
  uint64_t running_generation_ = 0;
};

}  // namespace lorashear
