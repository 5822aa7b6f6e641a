#pragma once
// Internal: the recorder the model's forward code reports its operators to while a trace runs.
// Outside a trace `TraceRecorder::active()` is null and the model pays one thread-local load per
// operator.

#include <torch/torch.h>

#include <string>
#include <unordered_map>
#include <vector>

#include "lorashear/graph/trace.h"

namespace lorashear::detail {

class TraceRecorder {
 public:
  struct Param {
    std::string name;  ///< full name
    torch::Tensor tensor;
  };

  explicit TraceRecorder(TraceGraph& graph) : graph_(graph) {}

  /// The recorder of this thread's running trace, or null.
  static TraceRecorder* active();

  /// Records operator `kind` run by `module`. Tensors are identified by their implementation
  /// (kept alive until the trace ends, so addresses are not reused); a tensor seen for the first
  /// time as an input gets no producer.
  void op(const std::string& kind, const std::string& module,
          const std::vector<torch::Tensor>& inputs, const std::vector<torch::Tensor>& outputs,
          const std::vector<Param>& params = {}, const std::string& tag = {});

  int64_t tensor(const torch::Tensor& t);

 private:
  TraceGraph& graph_;
  std::unordered_map<const void*, int64_t> ids_;
  std::vector<torch::Tensor> keep_;
};

/// Makes `recorder` the active one for this thread during its lifetime.
class TraceScope {
 public:
  explicit TraceScope(TraceRecorder& recorder);
  ~TraceScope();
  TraceScope(const TraceScope&) = delete;
  TraceScope& operator=(const TraceScope&) = delete;

 private:
  TraceRecorder* previous_;
};

}  // namespace lorashear::detail
