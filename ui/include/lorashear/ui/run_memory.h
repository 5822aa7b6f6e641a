#pragma once
// The memory a run from the Run dock needs per process (`lorashear plan-memory`'s accounting:
// core's plan_memory) for the open model and the dock's settings, against what its device has.
// Plain Qt data: LibTorch stays in run_memory.cpp.

#include <QList>
#include <QString>

namespace lorashear {

class Engine;
struct RunSettings;

struct RunMemoryItem {
  QString name;  ///< plan_memory's item name ("base weights", "runtime", …)
  qint64 bytes = 0;
  QString detail;  ///< how it was counted
};

struct RunMemory {
  bool valid = false;  ///< false: no model open, or settings the accounting refuses (`error`)
  QString error;
  QList<RunMemoryItem> items;
  qint64 per_rank_bytes = 0;    ///< sum of the items: the one process a run from the app starts
  qint64 parameters = 0;        ///< of the open model
  qint64 tokens = 0;            ///< per optimiser step (batch × (sequence length − 1))
  qint64 available_bytes = -1;  ///< the device's free memory; < 0 when unknown (CUDA)
  QString device;               ///< "cpu", "cuda:0"
  QString weight_dtype;         ///< "float32", "bfloat16", "float16"
  /// Whether the run checkpoints activations (its "auto" decided as the run will) and why.
  bool checkpoint_activations = false;
  QString checkpointing_why;
  bool memoryKnown() const { return available_bytes >= 0; }
  /// True where the memory is unknown: no warning without a figure to compare with.
  bool fits() const { return available_bytes < 0 || per_rank_bytes <= available_bytes; }
};

/// The plan for a run with `settings` on the engine's open document (its weights' dtype and
/// device). GUI thread: arithmetic on the configuration plus one read of /proc/meminfo. Never
/// throws: a problem is in `error`.
RunMemory plan_run_memory(const Engine& engine, const RunSettings& settings);

/// Bytes as the Run dock writes them: "145.3 MiB" below 10 GiB, "28.9 GiB" above.
QString format_memory(qint64 bytes);

}  // namespace lorashear
