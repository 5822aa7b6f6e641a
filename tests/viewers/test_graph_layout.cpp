// The graph viewer's layout: one cluster per layer, collapsed layers as one box, an expanded
// layer's operators inside its cluster and their node group's, edges routed.
#include <QtTest>

#include "lorashear/graph/trace.h"
#include "lorashear/io/loader.h"
#include "lorashear/prune/subnet.h"
#include "lorashear/viewers/graph_layout.h"
#include "lorashear/viewers/layout_cache.h"
#include "test_support.h"

using namespace lorashear;

namespace {

bool inside(const LayoutPoint& p, const LayoutCluster& c) {
  return p.x >= c.top_left.x && p.x <= c.bottom_right.x && p.y >= c.top_left.y &&
         p.y <= c.bottom_right.y;
}

const LayoutCluster* cluster(const GraphLayout& l, const std::string& id) {
  for (const auto& c : l.clusters)
    if (c.id == id) return &c;
  return nullptr;
}

}  // namespace

class TestGraphLayout : public QObject {
  Q_OBJECT
  TraceGraph graph_;
  DependencyGraph deps_;

 private slots:
  void initTestCase() {
    auto loaded = load_model(test::source_path("resources/demo-model").string());
    graph_ = trace_model(*loaded.model);
    deps_ = analyze_model(*loaded.model);
  }

  void collapsedLayersAreBoxesInTheirClusters() {
    const auto l = layout_graph(graph_, deps_, {});
    QVERIFY(l.width > 0 && l.height > 0);
    int boxes = 0;
    for (const auto& n : l.nodes) {
      if (!n.collapsed) continue;
      ++boxes;
      const auto* c = cluster(l, "L" + std::to_string(n.layer));
      QVERIFY(c != nullptr);
      QVERIFY(inside(n.centre, *c));
    }
    QCOMPARE(boxes, 4);
    int layer_clusters = 0;
    for (const auto& c : l.clusters)
      layer_clusters += c.id.size() == 2 && c.id[0] == 'L';
    QCOMPARE(layer_clusters, 4);
    QVERIFY(l.find("tokens") >= 0 && l.find("logits") >= 0);
    // The collapsed layers are chained from the tokens to the logits, top to bottom.
    for (int i = 0; i + 1 < 4; ++i)
      QVERIFY(l.nodes[l.find("L" + std::to_string(i))].centre.y <
              l.nodes[l.find("L" + std::to_string(i + 1))].centre.y);
    for (const auto& e : l.edges)
      QVERIFY(e.points.size() >= 4);
  }

  void expandedLayerShowsItsOperatorsAndNodeGroups() {
    const auto l = layout_graph(graph_, deps_, {2});
    const auto down = graph_.find_node("model.layers.2.mlp.down_proj");
    QVERIFY(down >= 0);
    const auto i = l.find("n" + std::to_string(down));
    QVERIFY(i >= 0);
    const auto& node = l.nodes[static_cast<size_t>(i)];
    QCOMPARE(QString::fromStdString(node.node_group), QString("L2.mlp"));
    QVERIFY(inside(node.centre, *cluster(l, "L2")));
    QVERIFY(inside(node.centre, *cluster(l, "L2.mlp")));
    QVERIFY(cluster(l, "L2.attn") != nullptr);
    QVERIFY(cluster(l, "L1.attn") == nullptr);  // layer 1 stays collapsed
    QVERIFY(l.find("L1") >= 0 && l.find("L2") < 0);
    int ops = 0;
    for (const auto& n : l.nodes)
      if (n.layer == 2) {
        ++ops;
        QVERIFY(!n.collapsed && n.op >= 0);
        QVERIFY(inside(n.centre, *cluster(l, "L2")));
      }
    int expected = 0;
    for (const auto& n : graph_.nodes)
      expected += n.layer == 2;
    QCOMPARE(ops, expected);
    const auto all = layout_graph(graph_, deps_, {0, 1, 2, 3});
    QVERIFY(all.nodes.size() > l.nodes.size());
    QVERIFY(all.height > l.height);
  }

  void cacheComputesOffThreadAndKeepsTheLatestRequest() {
    LayoutCache cache;
    std::atomic<int> computed{0};
    std::atomic<bool> on_gui_thread{false};
    QThread* gui = QThread::currentThread();
    cache.reset([&](const std::set<int64_t>& expanded) {
      ++computed;
      if (QThread::currentThread() == gui) on_gui_thread = true;
      return layout_graph(graph_, deps_, expanded);
    });
    QSignalSpy ready(&cache, &LayoutCache::layoutReady);
    auto expanded_of = [&](int i) { return ready.at(i).at(1).value<std::set<int64_t>>(); };
    cache.request({});
    QVERIFY(cache.computing());
    QVERIFY(ready.wait(30000));
    QCOMPARE(ready.last().at(3).toBool(), false);  // computed, not from the cache
    QVERIFY(!on_gui_thread);
    // The same request again: answered at once from the cache.
    cache.request({});
    QCOMPARE(ready.size(), 2);
    QCOMPARE(ready.last().at(3).toBool(), true);
    QCOMPARE(computed.load(), 1);
    // Clicks in a row while one computes: only the last one is drawn.
    ready.clear();
    cache.request({1});
    cache.request({2});
    cache.request({3});
    QTRY_VERIFY_WITH_TIMEOUT(!ready.isEmpty() && !cache.computing(), 30000);
    QCOMPARE(ready.size(), 1);
    QCOMPARE(expanded_of(0), std::set<int64_t>{3});
    QCOMPARE(computed.load(), 3);  // {1} (already running) and {3}; {2} was never computed
    QVERIFY(ready.at(0).at(0).value<std::shared_ptr<const GraphLayout>>()->find("L3") < 0);
    // A new graph drops the cache.
    cache.reset([&](const std::set<int64_t>& expanded) {
      ++computed;
      return layout_graph(graph_, deps_, expanded);
    });
    QCOMPARE(cache.size(), size_t(0));
    ready.clear();
    cache.request({});
    QVERIFY(ready.wait(30000));
    QCOMPARE(computed.load(), 4);
  }
};

QTEST_GUILESS_MAIN(TestGraphLayout)
#include "test_graph_layout.moc"
