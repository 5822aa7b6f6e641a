// `lorashear-studio [MODEL]`: the desktop app. Without MODEL the very first start shows the welcome
// page and later starts open the bundled demo model.
// `lorashear-studio --export-graph out.svg|out.png [--expand LAYERS] [MODEL]` writes the drawing
// without opening a window; `--screenshot out.png [MODEL]` saves the main window once the graph is
// drawn and exits (both use the demo model without MODEL, and need no display). `--help` and
// `--version` need no display either (help2man runs them at build time).
// LibTorch (through the loader) before Qt: ATen has members called `slots`, a Qt keyword macro.
#include "lorashear/build_info.h"
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
#include <QCoreApplication>
#include <QMessageBox>
#include <QTimer>
// clang-format on

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <vector>

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

// The command line, shared by the display-less --help / --version pass and the app itself.
struct Options {
  QCommandLineOption version{"version",
                             "print the version, the build and the CPU kernel, and exit"};
  QCommandLineOption export_graph{
      "export-graph", "write the dependency graph to FILE (.svg or .png) and exit", "FILE"};
  QCommandLineOption expand{"expand", "layers drawn expanded: none (default), all, 3 or 0-3",
                            "LAYERS", "none"};
  QCommandLineOption screenshot{
      "screenshot", "save the main window as a PNG once the graph is drawn, and exit", "FILE"};
  QCommandLineOption find{"find", "select the operator or node group matching TEXT once open",
                          "TEXT"};
  QCommandLineOption theme{"theme", "light, dark or system (default: the last one used)", "THEME"};
  QCommandLineOption device{"device", "cpu, cuda or cuda:N (default: the preferences)", "DEVICE"};
  QCommandLineOption dtype{
      "dtype",
      "weights in float32, bfloat16, float16 or auto (as stored) (default: the preferences)",
      "DTYPE"};
  QCommandLineOption adapter{"adapter", "attach the LoRA adapter in DIR (PEFT layout)", "DIR"};

  void describe(QCommandLineParser& parser) const {
    parser.setApplicationDescription(
        "LoRAShear Studio: structured pruning with knowledge recovery for LLaMA-family models.\n"
        "Without MODEL: the welcome page on the very first start, the bundled demo model "
        "afterwards (--export-graph and --screenshot always use the demo model).\n"
        "Without a display: --export-graph and --screenshot run headless; the lorashear command "
        "line does everything else.");
    parser.addHelpOption();
    parser.addOption(version);
    parser.addPositionalArgument(
        "model", "Hugging Face directory, llama2.c .bin, .gguf or config.json", "[model]");
    for (const auto* o :
         {&export_graph, &expand, &screenshot, &theme, &device, &dtype, &adapter, &find})
      parser.addOption(*o);
  }
};

// Whether one of `names` is on the command line (also as --name=value).
bool has_arg(int argc, char** argv, std::initializer_list<const char*> names) {
  for (int i = 1; i < argc; ++i)
    for (const char* n : names) {
      const size_t len = std::strlen(n);
      if (std::strncmp(argv[i], n, len) == 0 && (argv[i][len] == 0 || argv[i][len] == '='))
        return true;
    }
  return false;
}

// Where Qt's xcb or wayland plugin would find no display and abort.
bool no_display() {
#if defined(Q_OS_LINUX) || defined(Q_OS_FREEBSD)
  return qEnvironmentVariableIsEmpty("DISPLAY") && qEnvironmentVariableIsEmpty("WAYLAND_DISPLAY") &&
         qEnvironmentVariableIsEmpty("QT_QPA_PLATFORM");
#else
  return false;
#endif
}

void set_names() {
  QCoreApplication::setApplicationName("LoRAShear Studio");
  QCoreApplication::setOrganizationName("LoRAShear");
  QCoreApplication::setApplicationVersion(QString::fromStdString(version()));
}

}  // namespace

int main(int argc, char** argv) {
  const Options opt;
  // --help and --version before any display is needed.
  if (has_arg(argc, argv, {"-h", "--help", "--help-all", "-?", "--version"})) {
    // The usage line names the program, not the path it was run from (help2man copies it).
    std::vector<char*> args(argv, argv + argc);
    char name[] = "lorashear-studio";
    args[0] = name;
    int n = argc;
    QCoreApplication core(n, args.data());
    set_names();
    QCommandLineParser parser;
    opt.describe(parser);
    parser.process(core);  // prints the help and exits
    if (parser.isSet(opt.version)) {
      std::string text = build_info_text("lorashear-studio");
      try {
        text += "CPU attention kernel: " + cpu_kernel_variant() + "\n";
      } catch (const std::exception& e) {
        text += std::string("CPU attention kernel: ") + e.what() + "\n";
      }
      std::fputs(text.c_str(), stdout);
      return 0;
    }
  }
  // Headless export and screenshots: no display needed. Anything else needs one.
  if (no_display()) {
    if (has_arg(argc, argv, {"--export-graph", "--screenshot"})) {
      qputenv("QT_QPA_PLATFORM", "offscreen");
    } else {
      std::fprintf(stderr,
                   "lorashear-studio: no display (DISPLAY and WAYLAND_DISPLAY are not set).\n"
                   "Without a window:\n"
                   "  lorashear-studio --screenshot out.png [MODEL]   # the window as a PNG\n"
                   "  lorashear-studio --export-graph g.svg [MODEL]   # the dependency graph\n"
                   "  QT_QPA_PLATFORM=offscreen lorashear-studio …    # the app, drawn off screen\n"
                   "and the lorashear command line (lorashear --help) for everything else.\n");
      return 2;
    }
  }
  QApplication app(argc, argv);
  set_names();
  QCommandLineParser parser;
  opt.describe(parser);
  parser.process(app);
  const auto &export_graph = opt.export_graph, &expand = opt.expand, &screenshot = opt.screenshot,
             &find = opt.find, &theme = opt.theme, &device = opt.device, &dtype = opt.dtype,
             &adapter = opt.adapter;
  const auto args = parser.positionalArguments();
  // Scripts rely on these opening the demo model without MODEL.
  const bool scripted =
      parser.isSet(export_graph) || parser.isSet(screenshot) || parser.isSet(find);
  const QString demo = QString::fromStdString(demo_model_path());
  const QString path = !args.isEmpty() ? args.front() : scripted ? demo : QString();
  if (scripted && path.isEmpty()) {
    std::fprintf(stderr, "error: the demo model is not installed; give a MODEL\n");
    return 2;
  }
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
    w.openAtStart(path, parser.value(adapter));
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
