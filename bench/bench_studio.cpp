// The desktop app's responsiveness, measured in the real main window (offscreen): for the demo
// model, stories260K and Llama-2-7B / 70B configurations (traced from config.json), the time from
// "open" to the graph drawn (load + trace + analysis + layout + first paint), the layout and first
// paint alone, the same for one layer expanded, and the worst GUI-thread stall over the session (a
// 5 ms heartbeat timer). Prints figures; never fails on time.
//   bench_studio [--shared DIR] [--gaps]
#include "lorashear/model/config.h"
#include "lorashear/runtime.h"
// clang-format off
#include "lorashear/ui/main_window.h"
#include "lorashear/viewers/graph_view.h"
#include <QApplication>
#include <QElapsedTimer>
#include <QEventLoop>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QTimer>
// clang-format on

#include <nlohmann/json.hpp>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <string>

using namespace lorashear;
namespace fs = std::filesystem;

namespace {

// Runs the event loop until `signal` fires (or 120 s pass).
template <typename Signal>
bool wait_for(MainWindow& w, Signal signal) {
  QEventLoop loop;
  QTimer timeout;
  timeout.setSingleShot(true);
  QObject::connect(&timeout, &QTimer::timeout, &loop, [&] { loop.exit(1); });
  QObject::connect(&w, signal, &loop, [&] { loop.exit(0); });
  timeout.start(120000);
  return loop.exec() == 0;
}

// --gaps also names every event that took more than 20 ms on the GUI thread.
bool g_slow_events = false;
class TimedApplication : public QApplication {
 public:
  using QApplication::QApplication;
  bool notify(QObject* receiver, QEvent* event) override {
    if (!g_slow_events) return QApplication::notify(receiver, event);
    QElapsedTimer t;
    t.start();
    const auto type = event->type();
    const bool r = QApplication::notify(receiver, event);
    if (t.nsecsElapsed() > 20000000)
      std::printf("  slow event %d to %s (%s): %.1f ms\n", static_cast<int>(type),
                  receiver->metaObject()->className(), qPrintable(receiver->objectName()),
                  static_cast<double>(t.nsecsElapsed()) / 1e6);
    return r;
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (qEnvironmentVariableIsEmpty("QT_QPA_PLATFORM")) qputenv("QT_QPA_PLATFORM", "offscreen");
  TimedApplication app(argc, argv);
  QStandardPaths::setTestModeEnabled(true);  // leave the user's settings alone
  init_runtime();
  std::string shared = std::string(LORASHEAR_SOURCE_DIR) + "/../shared";
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--shared") shared = argv[i + 1];

  QTemporaryDir tmp;
  auto write = [&](const char* name, ModelConfig c) {
    c.max_position_embeddings = 4096;
    const auto path = fs::path(tmp.path().toStdString()) / name;
    std::ofstream(path) << c.to_hf_json().dump(2);
    return QString::fromStdString(path.string());
  };
  struct Case {
    const char* name;
    QString path;
  };
  std::vector<Case> cases = {
      {"demo model (4 layers)", LORASHEAR_SOURCE_DIR "/resources/demo-model"}};
  const auto stories = fs::path(shared) / "models/stories260K/stories260K.bin";
  if (fs::exists(stories))
    cases.push_back({"stories260K (5 layers)", QString::fromStdString(stories.string())});
  else
    std::printf("(stories260K not found under %s: skipped)\n", shared.c_str());
  cases.push_back({"Llama-2-7B config (32 layers)",
                   write("llama2-7b.json", ModelConfig::uniform(32000, 4096, 32, 32, 32, 11008))});
  cases.push_back({"Llama-2-70B config (80 layers)",
                   write("llama2-70b.json", ModelConfig::uniform(32000, 8192, 80, 64, 8, 28672))});

  MainWindow w;
  w.resize(1400, 900);
  w.show();
  QElapsedTimer clock;
  clock.start();
  qint64 last = clock.nsecsElapsed(), worst = 0;
  QTimer beat;
  beat.setInterval(5);
  // --gaps: every gap over 30 ms, with the GUI thread's own CPU time in it (CPU ≈ gap: work on
  // the GUI thread; CPU ≪ gap: it waited).
  bool gaps = false;
  for (int i = 1; i < argc; ++i)
    gaps = gaps || std::string(argv[i]) == "--gaps";
  g_slow_events = gaps;
  double cpu_last = 0;
  QObject::connect(&beat, &QTimer::timeout, [&] {
    const auto now = clock.nsecsElapsed();
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    const double cpu = static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
    if (gaps && now - last > 30000000)
      std::printf("  gap %.1f ms (GUI thread CPU %.1f ms)\n", static_cast<double>(now - last) / 1e6,
                  cpu - cpu_last);
    cpu_last = cpu;
    worst = std::max(worst, now - last);
    last = now;
  });
  std::printf("%-32s %9s %9s %9s %9s %12s\n", "model", "open→drawn", "layout", "paint", "expand 1",
              "worst stall");
  for (const auto& c : cases) {
    QEventLoop settle;  // let the previous drawing settle
    QTimer::singleShot(300, &settle, &QEventLoop::quit);
    settle.exec();
    worst = 0;
    last = clock.nsecsElapsed();
    beat.start();
    QElapsedTimer t;
    t.start();
    w.openModel(c.path);
    if (!wait_for(w, &MainWindow::graphShown)) {
      std::printf("%-32s failed: %s\n", c.name, qPrintable(w.lastError()));
      continue;
    }
    const double open_ms = static_cast<double>(t.nsecsElapsed()) / 1e6;
    const double paint_ms = w.lastPaintMs();
    const double layout_ms = w.graphView()->graphLayout().seconds * 1e3;
    // Expand one layer (the middle one); collapse all first when the model opened expanded.
    std::set<int64_t> one{static_cast<int64_t>(w.graphView()->layerClusterCount() / 2)};
    if (!w.expandedLayers().empty()) {
      w.collapseAll();
      wait_for(w, &MainWindow::graphShown);
    }
    w.setExpanded(one);
    wait_for(w, &MainWindow::graphShown);
    const double expand_ms = w.lastPaintMs();
    beat.stop();
    std::printf("%-32s %7.0f ms %6.0f ms %6.0f ms %6.0f ms %9.1f ms\n", c.name, open_ms, layout_ms,
                paint_ms, expand_ms, static_cast<double>(worst) / 1e6);
  }
  std::printf(
      "open→drawn: openModel to the graph on screen; layout: Graphviz alone (collapsed, or\n"
      "all layers for models of 4 or fewer); paint: layout request to the graph drawn;\n"
      "expand 1: one layer expanded, request to drawn; worst stall: longest GUI-thread\n"
      "gap between 5 ms heartbeats during the open and the expansion.\n");
  return 0;
}
