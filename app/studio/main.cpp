// `lorashear-studio [MODEL]`: the desktop app (opens the bundled demo model without arguments).
// `lorashear-studio --export-graph out.svg|out.png [--expand LAYERS] MODEL` writes the drawing
// without opening a window; `--screenshot out.png` saves the main window once the graph is drawn
// and exits.
// LibTorch (through the loader) before Qt: ATen has members called `slots`, a Qt keyword macro.
#include "lorashear/errors.h"
#include "lorashear/graph/dependency.h"
#include "lorashear/graph/export.h"
#include "lorashear/graph/trace.h"
#include "lorashear/io/loader.h"
#include "lorashear/runtime.h"
// clang-format off
#include "lorashear/ui/engine.h"
#include "lorashear/ui/main_window.h"
#include "lorashear/viewers/graph_view.h"
#include <QApplication>
#include <QCommandLineParser>
#include <QMessageBox>
#include <QTimer>
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
  QCommandLineOption screenshot(
      "screenshot", "save the main window as a PNG once the graph is drawn, and exit", "FILE");
  QCommandLineOption find("find", "select the operator or node group matching TEXT once open",
                          "TEXT");
  QCommandLineOption theme("theme", "light, dark or system (default: the last one used)", "THEME");
  parser.addOption(export_graph);
  parser.addOption(expand);
  parser.addOption(screenshot);
  QCommandLineOption device("device", "cpu, cuda or cuda:N (default: the preferences)", "DEVICE");
  QCommandLineOption dtype("dtype",
                           "weights in float32, bfloat16 or float16 (default: the "
                           "preferences)",
                           "DTYPE");
  QCommandLineOption adapter("adapter", "attach the LoRA adapter in DIR (PEFT layout)", "DIR");
  parser.addOption(theme);
  parser.addOption(device);
  parser.addOption(dtype);
  parser.addOption(adapter);
  parser.addOption(find);
  parser.process(app);
  const auto args = parser.positionalArguments();
  const QString path = args.isEmpty() ? QString(LORASHEAR_DEMO_MODEL) : args.front();
  try {
    init_runtime();
    if (parser.isSet(export_graph)) {
      auto s = load_structure(path.toStdString());
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
    MainWindow w;
    if (parser.isSet(theme)) w.setTheme(parser.value(theme));
    w.show();
    // After the model is drawn: --find selects an operator or node group (which may expand its
    // layer: wait for that drawing too), then --screenshot saves the window and exits.
    bool found = !parser.isSet(find);
    const auto take_screenshot = [&] {
      if (!parser.isSet(screenshot)) return;
      const auto out = parser.value(screenshot);
      QTimer::singleShot(300, &w, [&w, out] {
        const bool ok = w.grab().save(out, "PNG");
        std::printf("%s %s\n", ok ? "wrote" : "cannot write", qPrintable(out));
        QApplication::exit(ok ? 0 : 1);
      });
    };
    QObject::connect(&w, &MainWindow::graphShown, &w, [&] {
      if (!found) {
        found = true;
        if (!w.search(parser.value(find)))
          std::fprintf(stderr, "warning: nothing matches %s\n", qPrintable(parser.value(find)));
        if (w.layoutPending()) return;  // the next graphShown takes the screenshot
      }
      take_screenshot();
    });
    if (parser.isSet(screenshot))
      QObject::connect(&w, &MainWindow::engineIdle, &w, [&] {
        if (!w.document()) {
          std::fprintf(stderr, "error: %s\n", qPrintable(w.lastError()));
          QApplication::exit(3);
        }
      });
    if (parser.isSet(device) || parser.isSet(dtype))
      w.setOpenOptions(parser.isSet(device) ? parser.value(device) : w.device(),
                       parser.isSet(dtype) ? parser.value(dtype) : w.dtype());
    // A run the app did not finish (closed or killed): offer to continue it.
    if (!parser.isSet(screenshot) && !parser.isSet(find) && w.hasInterruptedRun()) {
      const auto answer = QMessageBox::question(
          &w, QObject::tr("Resume the pruning run?"),
          QObject::tr("A pruning run was interrupted when LoRAShear Studio last closed. Continue "
                      "it from its last checkpoint?"));
      if (answer == QMessageBox::Yes && w.resumeRun()) return app.exec();
      w.discardInterruptedRun();
    }
    w.openModel(path, parser.value(adapter));
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
