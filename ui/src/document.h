#pragma once
// What the app has open: a model (with weights) or a configuration traced on the meta device,
// its traced operator graph and dependency analysis. Private to ui/src: it holds LibTorch types.
// Shared immutable between the GUI, the layout thread and the engine once published; the engine
// alone touches the weights, and only inside a task.

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "lorashear/graph/dependency.h"
#include "lorashear/graph/trace.h"
#include "lorashear/io/loader.h"

namespace lorashear {

struct ModelDocument {
  std::string path;
  bool has_weights = false;  ///< false for a config.json traced on the meta device
  /// What it was opened with (OpenOptions): the device and storage dtype of its weights, or those
  /// a run would load a configuration's weights in.
  std::string device = "cpu", dtype = "float32";
  LoadedModel loaded;  ///< model is null without weights
  TraceGraph trace;
  DependencyGraph deps;
  double load_seconds = 0, trace_seconds = 0;
  /// A GGUF file's metadata (key, value as text), in file order; empty for other formats.
  std::vector<std::pair<std::string, std::string>> gguf_metadata;
};

}  // namespace lorashear
