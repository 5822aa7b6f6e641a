#include "lorashear/prune/subnet.h"

#include <map>

#include "lorashear/errors.h"

namespace lorashear {

namespace {

// Per parameter and dimension, which indices go.
using RemovalMasks = std::map<std::string, std::map<int, std::vector<char>>>;

RemovalMasks masks_of(const DependencyGraph& deps, const RemovalPlan& plan, bool producing_only) {
  RemovalMasks out;
  for (const auto& [g, list] : plan) {
    for (const auto& s : deps.node_groups[g].slices) {
      if (producing_only && s.role != GroupSlice::Role::Producing) continue;
      auto& mask = out[s.param][s.dim];
      mask.resize(static_cast<size_t>(s.shape[static_cast<size_t>(s.dim)]), 0);
      for (auto k : list)
        for (int64_t r = 0; r < s.repeats; ++r)
          std::fill_n(mask.begin() + k * s.block + r * s.step, s.block, char{1});
    }
  }
  return out;
}

torch::Tensor indices_where(const std::vector<char>& mask, char value) {
  std::vector<int64_t> idx;
  for (size_t i = 0; i < mask.size(); ++i)
    if (mask[i] == value) idx.push_back(static_cast<int64_t>(i));
  return torch::tensor(idx, torch::kLong);
}

std::string shape_text(c10::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i)
    out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace

DependencyGraph analyze_model(const LlamaModelImpl& model, const DependencyOptions& options) {
  return analyze_dependencies(trace_config(model.config(), model.lora()), options);
}

void zero_groups(LlamaModelImpl& model, const DependencyGraph& deps,
                 const std::vector<std::string>& ids) {
  const auto masks = masks_of(deps, deps.plan(ids), /*producing_only=*/true);
  const auto params = model.all_parameters();
  for (const auto& [name, dims] : masks)
    if (!params.count(name))
      throw Error("zero_groups: the analysis names '" + name + "', which the model lacks");
  torch::NoGradGuard no_grad;
  for (const auto& [name, dims] : masks) {
    auto t = params.at(name);
    for (const auto& [dim, mask] : dims)
      t.index_fill_(dim, indices_where(mask, 1).to(t.device()), 0.0);
  }
}

LlamaModel construct_subnet(const LlamaModelImpl& model, const DependencyGraph& deps,
                            const std::vector<std::string>& ids) {
  const auto plan = deps.plan(ids);
  ModelConfig cfg = model.config();
  for (const auto& [g, list] : plan) {
    const auto& grp = deps.node_groups[g];
    if (grp.layer < 0 || grp.layer >= cfg.n_layers() ||
        (grp.kind != "attention" && grp.kind != "mlp"))
      throw UsageError("node group " + grp.id + " (" + grp.kind +
                       ") has no dimension in a LLaMA configuration and cannot be removed");
    std::vector<char> removed(static_cast<size_t>(grp.size), 0);
    for (auto k : list)
      removed[static_cast<size_t>(k)] = 1;
    std::vector<int64_t> kept;
    for (int64_t k = 0; k < grp.size; ++k)
      if (!removed[static_cast<size_t>(k)])
        kept.push_back(grp.original_index[static_cast<size_t>(k)]);
    bool identity = true;
    for (size_t i = 0; i < kept.size(); ++i)
      identity = identity && kept[i] == static_cast<int64_t>(i);
    if (identity) kept.clear();
    auto& d = cfg.layers[static_cast<size_t>(grp.layer)];
    const auto n = static_cast<int64_t>(list.size());
    if (grp.kind == "attention") {
      const int64_t per_kv = d.n_heads / d.n_kv_heads;
      d.n_kv_heads -= n;
      d.n_heads = d.n_kv_heads * per_kv;
      d.kv_origin = std::move(kept);
    } else {
      d.intermediate_size -= n;
      d.channel_origin = std::move(kept);
    }
  }
  const auto masks = masks_of(deps, plan, /*producing_only=*/false);

  LlamaModel out(cfg, model.options());
  if (const auto* lora = model.lora()) attach_lora(*out, *lora);
  const auto src = model.all_parameters();
  const auto dst = out->all_parameters();
  if (src.size() != dst.size())
    throw Error("subnet construction: the source has " + std::to_string(src.size()) +
                " parameters, the pruned model " + std::to_string(dst.size()));
  torch::NoGradGuard no_grad;
  for (const auto& [name, target] : dst) {
    const auto it = src.find(name);
    if (it == src.end()) throw Error("subnet construction: the source has no '" + name + "'");
    auto t = it->second;
    if (const auto m = masks.find(name); m != masks.end())
      for (const auto& [dim, mask] : m->second)
        t = t.index_select(dim, indices_where(mask, 0).to(t.device()));
    if (t.sizes() != target.sizes())
      throw Error("subnet construction: " + name + " would be " + shape_text(t.sizes()) +
                  " but the pruned configuration needs " + shape_text(target.sizes()));
    target.copy_(t);
  }
  return out;
}

}  // namespace lorashear
