// The graph view, offscreen: one cluster item per layer, collapsed boxes, an expanded layer's
// operators, and SVG / PNG exports that hold every layer.
#include <QtTest>

#include <QGraphicsItem>
#include <QImage>
#include <QProcess>
#include <QTemporaryDir>

#include "lorashear/graph/trace.h"
#include "lorashear/io/loader.h"
#include "lorashear/prune/subnet.h"
#include "lorashear/viewers/graph_view.h"
#include "test_support.h"

using namespace lorashear;

class TestGraphView : public QObject {
  Q_OBJECT
  TraceGraph graph_;
  DependencyGraph deps_;

 private slots:
  void initTestCase() {
    auto loaded = load_model(test::source_path("resources/demo-model").string());
    graph_ = trace_model(*loaded.model);
    deps_ = analyze_model(*loaded.model);
  }

  void drawsLayersAndExports() {
    GraphView view;
    view.resize(900, 700);
    view.showLayout(layout_graph(graph_, deps_, {2}));
    QCOMPARE(view.layerClusterCount(), 4);
    for (int l = 0; l < 4; ++l)
      QVERIFY(view.clusterItem("L" + std::to_string(l)) != nullptr);
    QVERIFY(view.nodeItem("L1") != nullptr);  // collapsed
    const auto down = graph_.find_node("model.layers.2.mlp.down_proj");
    QVERIFY(view.nodeItem("n" + std::to_string(down)) != nullptr);
    QVERIFY(view.clusterItem("L2.mlp") != nullptr);

    // An overlay that fades: a node group at the top of the scale is faint, one at zero opaque,
    // nodes outside the overlay's groups as they were.
    const auto up = graph_.find_node("model.layers.2.mlp.up_proj");
    const auto q = graph_.find_node("model.layers.2.self_attn.q_proj");
    GraphOverlay o;
    o.groups = {{"L2.mlp", 1.0}, {"L2.attn", 0.0}};
    o.fade = true;
    view.setOverlay(o);
    QVERIFY(view.nodeItem("n" + std::to_string(up))->opacity() < 0.5);
    QCOMPARE(view.nodeItem("n" + std::to_string(q))->opacity(), 1.0);
    o.fade = false;
    view.setOverlay(o);
    QCOMPARE(view.nodeItem("n" + std::to_string(up))->opacity(), 1.0);
    view.setOverlay({});

    QSignalSpy toggled(&view, &GraphView::layerToggleRequested);
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    const auto centre = view.mapFromScene(view.nodeItem("L1")->sceneBoundingRect().center());
    QTest::mouseDClick(view.viewport(), Qt::LeftButton, {}, centre);
    QCOMPARE(toggled.count(), 1);
    QCOMPARE(toggled.first().first().toInt(), 1);

    QTemporaryDir dir;
    const QString svg = dir.filePath("g.svg"), png = dir.filePath("g.png");
    QVERIFY(view.exportSvg(svg));
    QFile f(svg);
    QVERIFY(f.open(QIODevice::ReadOnly));
    const auto text = QString::fromUtf8(f.readAll());
    QVERIFY(text.startsWith("<?xml") && text.contains("</svg>"));
    for (int l = 0; l < 4; ++l)
      QVERIFY2(text.contains(QString("layer %1").arg(l)), qPrintable(QString::number(l)));
    QVERIFY(view.exportPng(png, 2.0));
    QImage img(png);
    QVERIFY(!img.isNull());
    QVERIFY(img.width() > 200 && img.height() > 200);
    QString error;
    QVERIFY(!view.exportPng(dir.filePath("no/such/dir/g.png"), 1.0, &error));
    QVERIFY(error.contains("g.png"));
    if (qEnvironmentVariableIsSet("LORASHEAR_SCREENSHOT"))
      view.grab().save(qEnvironmentVariable("LORASHEAR_SCREENSHOT"));
  }

  void studioExportsWithoutAWindow() {
    QTemporaryDir dir;
    auto run = [](const QStringList& args) {
      QProcess p;
      auto env = QProcessEnvironment::systemEnvironment();
      env.remove("QT_QPA_PLATFORM");  // the app must not need a display for --export-graph
      env.remove("DISPLAY");
      p.setProcessEnvironment(env);
      p.start(LORASHEAR_STUDIO_PATH, args);
      p.waitForFinished(120000);
      return std::make_pair(p.exitCode(), QString::fromUtf8(p.readAllStandardError()));
    };
    const QString svg = dir.filePath("demo.svg");
    auto r = run({"--export-graph", svg, "--expand", "all"});  // the bundled demo model
    QVERIFY2(r.first == 0, qPrintable(r.second));
    QFile f(svg);
    QVERIFY(f.open(QIODevice::ReadOnly));
    const auto text = QString::fromUtf8(f.readAll());
    for (int l = 0; l < 4; ++l)
      QVERIFY(text.contains(QString("layer %1").arg(l)));
    QVERIFY(text.contains("down_proj"));  // expanded: the operators are drawn
    const QString png = dir.filePath("demo.png");
    r = run(
        {"--export-graph", png,
         QString::fromStdString(test::source_path("resources/demo-model/config.json").string())});
    QVERIFY2(r.first == 0, qPrintable(r.second));
    QVERIFY(!QImage(png).isNull());
    r = run({"--export-graph", dir.filePath("x.svg"), dir.filePath("nowhere")});
    QCOMPARE(r.first, 3);
    QVERIFY2(r.second.contains("nowhere"), qPrintable(r.second));
  }
};

QTEST_MAIN(TestGraphView)
#include "test_graph_view.moc"
