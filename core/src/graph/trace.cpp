#include "lorashear/graph/trace.h"

#include <regex>

#include "graph/recorder.h"
#include "lorashear/errors.h"
#include "lorashear/model/llama.h"

namespace lorashear {

namespace detail {

namespace {
thread_local TraceRecorder* g_active = nullptr;

int64_t layer_of(const std::string& module) {
  static const std::regex re(R"((^|\.)layers\.(\d+)(\.|$))");
  std::smatch m;
  return std::regex_search(module, m, re) ? std::stoll(m[2]) : -1;
}

bool named_by_module(const std::string& kind) {
  return kind == "linear" || kind == "lora_A" || kind == "lora_B" || kind == "embedding" ||
         kind == "rms_norm";
}
}  // namespace

TraceRecorder* TraceRecorder::active() {
  return g_active;
}

TraceScope::TraceScope(TraceRecorder& recorder) : previous_(g_active) {
  g_active = &recorder;
}
TraceScope::~TraceScope() {
  g_active = previous_;
}

int64_t TraceRecorder::tensor(const torch::Tensor& t) {
  const void* key = t.unsafeGetTensorImpl();
  if (auto it = ids_.find(key); it != ids_.end()) return it->second;
  const auto id = static_cast<int64_t>(graph_.tensors.size());
  graph_.tensors.push_back({t.sizes().vec(), -1});
  ids_.emplace(key, id);
  keep_.push_back(t);
  return id;
}

void TraceRecorder::op(const std::string& kind, const std::string& module,
                       const std::vector<torch::Tensor>& inputs,
                       const std::vector<torch::Tensor>& outputs, const std::vector<Param>& params,
                       const std::string& tag) {
  TraceNode n;
  n.kind = kind;
  n.module = module;
  if (named_by_module(kind) && !module.empty()) {
    n.name = module;
  } else {
    n.name = (module.empty() ? "" : module + "/") + kind + (tag.empty() ? "" : "." + tag);
  }
  n.layer = layer_of(module);
  for (const auto& t : inputs)
    n.inputs.push_back(tensor(t));
  const auto index = static_cast<int64_t>(graph_.nodes.size());
  for (const auto& t : outputs) {
    const int64_t id = tensor(t);
    if (graph_.tensors[static_cast<size_t>(id)].producer != -1)
      throw Error("trace: tensor produced twice (an in-place operator at " + n.name + ")");
    graph_.tensors[static_cast<size_t>(id)].producer = index;
    n.outputs.push_back(id);
  }
  for (const auto& p : params) {
    if (!p.tensor.defined()) continue;
    const auto dot = p.name.rfind('.');
    n.params.push_back({p.name, dot == std::string::npos ? p.name : p.name.substr(dot + 1),
                        p.tensor.sizes().vec()});
  }
  graph_.nodes.push_back(std::move(n));
}

}  // namespace detail

int64_t TraceGraph::find_node(const std::string& name) const {
  for (size_t i = 0; i < nodes.size(); ++i)
    if (nodes[i].name == name) return static_cast<int64_t>(i);
  return -1;
}

TraceGraph trace_model(LlamaModelImpl& model, const TraceOptions& options) {
  if (options.batch < 1 || options.seq_len < 1)
    throw UsageError("trace: batch and sequence length must be at least 1");
  TraceGraph g;
  g.config = model.config();
  if (const auto* lora = model.lora()) g.lora = *lora;
  g.has_weights = !model.options().device.is_meta();
  detail::TraceRecorder recorder(g);
  {
    detail::TraceScope scope(recorder);
    torch::NoGradGuard no_grad;
    auto ids =
        torch::zeros({options.batch, options.seq_len},
                     torch::TensorOptions().dtype(torch::kLong).device(model.options().device));
    g.input = recorder.tensor(ids);
    auto logits = model.forward(ids);
    g.output = recorder.tensor(logits);
  }
  if (g.tensors[static_cast<size_t>(g.output)].producer < 0)
    throw Error("trace: the logits were not produced by a recorded operator");
  return g;
}

TraceGraph trace_config(const ModelConfig& config, const LoraConfig* lora,
                        const TraceOptions& options) {
  LlamaModel model(config, ModelOptions{torch::Device(torch::kMeta), torch::kFloat32});
  if (lora != nullptr) attach_lora(*model, *lora);
  return trace_model(*model, options);
}

}  // namespace lorashear
