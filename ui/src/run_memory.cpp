#include "lorashear/ui/run_memory.h"

#include <QCoreApplication>

#include <exception>

#include "document.h"
#include "lorashear/model/llama.h"
#include "lorashear/plan/memory_plan.h"
#include "lorashear/ui/engine.h"

namespace lorashear {

RunMemory plan_run_memory(const Engine& engine, const RunSettings& settings) {
  RunMemory out;
  const auto doc = engine.document();
  if (!doc) {
    out.error =
        QCoreApplication::translate("lorashear::RunPanel", "open a model to see what a run needs");
    return out;
  }
  // A model with weights runs in the dtype and on the device it was loaded with; a configuration
  // alone in those of the preferences it was opened with.
  const bool weights = doc->has_weights && doc->loaded.model;
  const ModelConfig& config = weights ? doc->loaded.model->config() : doc->trace.config;
  bool cuda = false;
  int64_t weight_bytes = 4;
  if (weights) {
    const auto& o = doc->loaded.model->options();
    cuda = o.device.is_cuda();
    out.device = QString::fromStdString(o.device.str());
    weight_bytes = o.dtype == torch::kFloat32 ? 4 : 2;
    out.weight_dtype = o.dtype == torch::kFloat32    ? "float32"
                       : o.dtype == torch::kBFloat16 ? "bfloat16"
                                                     : "float16";
  } else {
    out.device = QString::fromStdString(doc->device);
    cuda = out.device.startsWith("cuda");
    out.weight_dtype = QString::fromStdString(doc->dtype);
    weight_bytes = out.weight_dtype == "float32" ? 4 : 2;
  }
  try {
    // The options the pipeline plans with when it decides activation checkpointing
    // (prune_model): one process, the LHSPG stage (the larger model: recovery runs on the pruned
    // one).
    MemoryPlanOptions o;
    o.batch = settings.batch;
    o.seq_len = settings.seq_len;
    o.world_size = 1;
    o.weight_bytes = weight_bytes;
    o.lora.rank = settings.lora_rank;
    if (!settings.lora_targets.isEmpty()) {
      o.lora.targets.clear();
      for (const auto& t : settings.lora_targets)
        o.lora.targets.push_back(t.toStdString());
    }
    o.lhspg = true;
    o.periods = settings.periods;  // the app copies the weights (not mapped)
    std::string why;
    o.checkpoint_activations = decide_activation_checkpointing(
        settings.checkpoint_activations.toStdString(), config, o, cuda, &why);
    const auto plan = plan_memory(config, o);
    for (const auto& it : plan.items)
      out.items.append(
          {QString::fromStdString(it.name), it.bytes, QString::fromStdString(it.detail)});
    out.per_rank_bytes = plan.per_rank_bytes;
    out.parameters = plan.parameters;
    out.tokens = plan.tokens_per_rank;
    out.checkpoint_activations = o.checkpoint_activations;
    out.checkpointing_why = QString::fromStdString(why);
    // LibTorch 1.13 cannot ask CUDA for its free memory: unknown, rather than the host's.
    out.available_bytes = cuda ? -1 : available_memory_bytes();
    out.valid = true;
  } catch (const std::exception& e) {
    out.error = QString::fromStdString(e.what());
  }
  return out;
}

QString format_memory(qint64 bytes) {
  const double mib = static_cast<double>(bytes) / double(1 << 20);
  if (mib < 10 * 1024) return QString("%1 MiB").arg(mib, 0, 'f', 1);
  return QString("%1 GiB").arg(mib / 1024, 0, 'f', 1);
}

}  // namespace lorashear
