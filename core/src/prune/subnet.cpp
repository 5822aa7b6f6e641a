#include "lorashear/prune/subnet.h"

#include <map>
#include <regex>
#include <set>

#include "lorashear/errors.h"

namespace lorashear {

std::string VariableGroupRef::id() const {
  return "L" + std::to_string(layer) + (kind == Kind::AttentionKv ? ".attn.kv" : ".mlp.c") +
         std::to_string(index);
}

VariableGroupRef VariableGroupRef::parse(const std::string& text) {
  static const std::regex re(R"(L(\d+)\.(attn\.kv|mlp\.c)(\d+))");
  std::smatch m;
  if (!std::regex_match(text, m, re))
    throw UsageError("variable group '" + text + "': expected LN.attn.kvK or LN.mlp.cK");
  VariableGroupRef r;
  r.layer = std::stoll(m[1]);
  r.kind = m[2] == "attn.kv" ? Kind::AttentionKv : Kind::MlpChannel;
  r.index = std::stoll(m[3]);
  return r;
}

bool VariableGroupRef::operator<(const VariableGroupRef& o) const {
  return std::tie(layer, kind, index) < std::tie(o.layer, o.kind, o.index);
}

bool VariableGroupRef::operator==(const VariableGroupRef& o) const {
  return layer == o.layer && kind == o.kind && index == o.index;
}

namespace {

// Removed indices per layer, validated against the configuration.
struct RemovalSet {
  std::map<int64_t, std::set<int64_t>> kv, channels;
};

RemovalSet validate(const ModelConfig& cfg, const std::vector<VariableGroupRef>& groups) {
  RemovalSet r;
  for (const auto& g : groups) {
    if (g.layer < 0 || g.layer >= cfg.n_layers())
      throw UsageError("variable group '" + g.id() + "': the model has " +
                       std::to_string(cfg.n_layers()) + " layers");
    const auto& d = cfg.layers[static_cast<size_t>(g.layer)];
    const bool attn = g.kind == VariableGroupRef::Kind::AttentionKv;
    const int64_t size = attn ? d.n_kv_heads : d.intermediate_size;
    if (g.index < 0 || g.index >= size)
      throw UsageError("variable group '" + g.id() + "': layer " + std::to_string(g.layer) +
                       " has " + std::to_string(size) + (attn ? " kv groups" : " MLP channels"));
    auto& set = attn ? r.kv[g.layer] : r.channels[g.layer];
    if (!set.insert(g.index).second)
      throw UsageError("variable group '" + g.id() + "' is listed twice");
  }
  for (const auto& [layer, set] : r.kv) {
    if (static_cast<int64_t>(set.size()) == cfg.layers[static_cast<size_t>(layer)].n_kv_heads)
      throw UsageError("removing every kv group of layer " + std::to_string(layer) +
                       " would delete its attention entirely; keep at least one");
  }
  return r;
}

std::vector<int64_t> kept(int64_t size, const std::set<int64_t>& removed) {
  std::vector<int64_t> out;
  for (int64_t i = 0; i < size; ++i)
    if (!removed.count(i)) out.push_back(i);
  return out;
}

// Row (or column) indices of heads `heads`, each `head_dim` wide, `per_head` heads per group index.
torch::Tensor head_rows(const std::vector<int64_t>& groups, int64_t per_group, int64_t head_dim) {
  std::vector<int64_t> rows;
  for (int64_t g : groups)
    for (int64_t r = g * per_group * head_dim; r < (g + 1) * per_group * head_dim; ++r)
      rows.push_back(r);
  return torch::tensor(rows, torch::kLong);
}

}  // namespace

void zero_groups(LlamaModelImpl& model, const std::vector<VariableGroupRef>& groups) {
  const auto& cfg = model.config();
  const auto r = validate(cfg, groups);
  torch::NoGradGuard no_grad;
  for (const auto& [layer, set] : r.kv) {
    auto& a = model.model->layers[static_cast<size_t>(layer)]->self_attn;
    const int64_t g = a->n_heads / a->n_kv_heads;
    const std::vector<int64_t> ids(set.begin(), set.end());
    auto q_rows = head_rows(ids, g, cfg.head_dim).to(a->q_proj->weight.device());
    auto kv_rows = head_rows(ids, 1, cfg.head_dim).to(a->q_proj->weight.device());
    a->q_proj->weight.index_fill_(0, q_rows, 0.0);
    a->k_proj->weight.index_fill_(0, kv_rows, 0.0);
    a->v_proj->weight.index_fill_(0, kv_rows, 0.0);
    if (a->q_proj->bias.defined()) {
      a->q_proj->bias.index_fill_(0, q_rows, 0.0);
      a->k_proj->bias.index_fill_(0, kv_rows, 0.0);
      a->v_proj->bias.index_fill_(0, kv_rows, 0.0);
    }
  }
  for (const auto& [layer, set] : r.channels) {
    auto& f = model.model->layers[static_cast<size_t>(layer)]->mlp;
    auto rows = torch::tensor(std::vector<int64_t>(set.begin(), set.end()), torch::kLong)
                    .to(f->gate_proj->weight.device());
    f->gate_proj->weight.index_fill_(0, rows, 0.0);
    f->up_proj->weight.index_fill_(0, rows, 0.0);
  }
}

int64_t subnet_parameters(const ModelConfig& cfg, const std::vector<VariableGroupRef>& remove) {
  const auto r = validate(cfg, remove);
  ModelConfig out = cfg;
  for (const auto& [layer, set] : r.kv) {
    auto& d = out.layers[static_cast<size_t>(layer)];
    const int64_t g = d.n_heads / d.n_kv_heads;
    d.n_kv_heads -= static_cast<int64_t>(set.size());
    d.n_heads = d.n_kv_heads * g;
  }
  for (const auto& [layer, set] : r.channels)
    out.layers[static_cast<size_t>(layer)].intermediate_size -= static_cast<int64_t>(set.size());
  return out.num_parameters();
}

LlamaModel construct_subnet(const LlamaModelImpl& model,
                            const std::vector<VariableGroupRef>& remove) {
  const auto& cfg = model.config();
  const auto r = validate(cfg, remove);
  ModelConfig out_cfg = cfg;
  // Index tensors of the kept slices, per layer: q rows / o columns, k and v rows, MLP channels.
  std::map<std::string, std::pair<int, torch::Tensor>> select;  // param name → (dim, indices)
  for (int64_t i = 0; i < cfg.n_layers(); ++i) {
    auto& d = out_cfg.layers[static_cast<size_t>(i)];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    if (auto it = r.kv.find(i); it != r.kv.end()) {
      const int64_t g = d.n_heads / d.n_kv_heads;
      const auto keep = kept(d.n_kv_heads, it->second);
      auto q_idx = head_rows(keep, g, cfg.head_dim), kv_idx = head_rows(keep, 1, cfg.head_dim);
      for (const char* n : {"q_proj.weight", "q_proj.bias"})
        select[p + "self_attn." + n] = {0, q_idx};
      for (const char* n : {"k_proj.weight", "k_proj.bias", "v_proj.weight", "v_proj.bias"})
        select[p + "self_attn." + n] = {0, kv_idx};
      select[p + "self_attn.o_proj.weight"] = {1, q_idx};
      d.n_kv_heads = static_cast<int64_t>(keep.size());
      d.n_heads = d.n_kv_heads * g;
    }
    if (auto it = r.channels.find(i); it != r.channels.end()) {
      const auto keep = kept(d.intermediate_size, it->second);
      auto idx = torch::tensor(keep, torch::kLong);
      select[p + "mlp.gate_proj.weight"] = {0, idx};
      select[p + "mlp.up_proj.weight"] = {0, idx};
      select[p + "mlp.down_proj.weight"] = {1, idx};
      d.intermediate_size = static_cast<int64_t>(keep.size());
    }
  }
  LlamaModel out(out_cfg, model.options());
  torch::NoGradGuard no_grad;
  const auto src = model.state_dict();
  for (auto& [name, dst] : out->state_dict()) {
    auto t = src.at(name);
    if (auto it = select.find(name); it != select.end())
      t = t.index_select(it->second.first, it->second.second.to(t.device()));
    dst.copy_(t);
  }
  return out;
}

}  // namespace lorashear
