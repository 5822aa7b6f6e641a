// `lorashear-studio [MODEL]`: the desktop app. This first version shows the model's traced
// dependency graph (layers collapsed; double-click a layer to expand or collapse it).
// `lorashear-studio --export-graph out.svg|out.png [--expand LAYERS] MODEL` writes the drawing
// without opening a window.
// LibTorch (through the loader) before Qt: ATen has members called `slots`, a Qt keyword macro.
#include "lorashear/errors.h"
#include "lorashear/graph/dependency.h"
#include "lorashear/graph/export.h"
#include "lorashear/graph/trace.h"
#include "lorashear/io/loader.h"
#include "lorashear/runtime.h"
// clang-format off
#include "lorashear/viewers/graph_view.h"
#include <QApplication>
#include <QCommandLineParser>
#include <QElapsedTimer>
#include <QMainWindow>
#include <QStatusBar>
// clang-format on

#include <cstdio>
#include <filesystem>
#include <set>

using namespace lorashear;

namespace {

struct Structure {
  TraceGraph trace;
  DependencyGraph deps;
};

// A model the CLI loads, or a config.json alone (traced on the meta device).
Structure load_structure(const std::string& path) {
  Structure s;
  const std::filesystem::path p(path);
  if (p.extension() == ".json" && std::filesystem::is_regular_file(p)) {
    s.trace = trace_config(ModelConfig::from_file(path));
  } else {
    auto loaded = load_model(path);
    s.trace = trace_model(*loaded.model);
  }
  s.deps = analyze_dependencies(s.trace);
  return s;
}

std::set<int64_t> parse_expand(const QString& text, int64_t n_layers) {
  std::set<int64_t> out;
  if (text == "none" || text.isEmpty()) return out;
  GraphExportOptions range =
      text == "all" ? GraphExportOptions{} : parse_layer_range(text.toStdString(), n_layers);
  const int64_t first = range.first_layer < 0 ? 0 : range.first_layer;
  const int64_t last = range.last_layer < 0 ? n_layers - 1 : range.last_layer;
  for (int64_t l = first; l <= last; ++l)
    out.insert(l);
  return out;
}

class MainWindow : public QMainWindow {
 public:
  MainWindow(Structure s, const QString& path) : s_(std::move(s)) {
    setWindowTitle(QString("LoRAShear Studio — %1").arg(path));
    view_ = new GraphView(this);
    setCentralWidget(view_);
    connect(view_, &GraphView::layerToggleRequested, this, [this](int layer) {
      if (!expanded_.erase(layer)) expanded_.insert(layer);
      relayout(true);
    });
    relayout(false);
    resize(1100, 800);
  }

 private:
  void relayout(bool keep_view) {
    QElapsedTimer t;
    t.start();
    view_->showLayout(layout_graph(s_.trace, s_.deps, expanded_), keep_view);
    statusBar()->showMessage(QString("%1 layers, %2 operators, %3 expanded — laid out and drawn in "
                                     "%4 ms; double-click a layer to expand or collapse it")
                                 .arg(s_.trace.config.n_layers())
                                 .arg(s_.trace.nodes.size())
                                 .arg(expanded_.size())
                                 .arg(t.elapsed()));
  }
  Structure s_;
  std::set<int64_t> expanded_;
  GraphView* view_ = nullptr;
};

}  // namespace

int main(int argc, char** argv) {
  // Headless export: no display needed.
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--export-graph" && qEnvironmentVariableIsEmpty("QT_QPA_PLATFORM"))
      qputenv("QT_QPA_PLATFORM", "offscreen");
  QApplication app(argc, argv);
  QApplication::setApplicationName("LoRAShear Studio");
  QApplication::setOrganizationName("LoRAShear");
  QCommandLineParser parser;
  parser.setApplicationDescription("LoRAShear Studio: structured pruning with knowledge recovery");
  parser.addHelpOption();
  parser.addPositionalArgument("model",
                               "Hugging Face directory, llama2.c .bin, .gguf or config.json "
                               "(default: the bundled demo model)");
  QCommandLineOption export_graph(
      "export-graph", "write the dependency graph to FILE (.svg or .png) and exit", "FILE");
  QCommandLineOption expand("expand", "layers drawn expanded: none (default), all, 3 or 0-3",
                            "LAYERS", "none");
  parser.addOption(export_graph);
  parser.addOption(expand);
  parser.process(app);
  const auto args = parser.positionalArguments();
  const QString path = args.isEmpty() ? QString(LORASHEAR_DEMO_MODEL) : args.front();
  try {
    init_runtime();
    auto s = load_structure(path.toStdString());
    if (parser.isSet(export_graph)) {
      const auto out = parser.value(export_graph);
      GraphView view;
      view.showLayout(layout_graph(s.trace, s.deps,
                                   parse_expand(parser.value(expand), s.trace.config.n_layers())));
      QString error;
      const bool ok = out.endsWith(".png", Qt::CaseInsensitive) ? view.exportPng(out, 2.0, &error)
                                                                : view.exportSvg(out, &error);
      if (!ok) {
        std::fprintf(stderr, "error: %s\n", qPrintable(error));
        return 1;
      }
      std::printf("wrote %s\n", qPrintable(out));
      return 0;
    }
    MainWindow w(std::move(s), path);
    w.show();
    return app.exec();
  } catch (const UsageError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  } catch (const InputError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 3;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
