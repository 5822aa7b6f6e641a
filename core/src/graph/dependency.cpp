#include "lorashear/graph/dependency.h"

#include <algorithm>
#include <functional>
#include <numeric>
#include <regex>
#include <set>
#include <unordered_map>

#include "lorashear/errors.h"

namespace lorashear {

// ---- Slices
// ----------------------------------------------------------------------------------------------

int64_t GroupSlice::elements_per_group() const {
  int64_t other = 1;
  for (size_t i = 0; i < shape.size(); ++i)
    if (static_cast<int>(i) != dim) other *= shape[i];
  return indices_per_group() * other;
}

std::vector<int64_t> GroupSlice::indices(int64_t k) const {
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(indices_per_group()));
  for (int64_t r = 0; r < repeats; ++r)
    for (int64_t j = 0; j < block; ++j)
      out.push_back(k * block + r * step + j);
  return out;
}

const char* role_name(GroupSlice::Role role) {
  switch (role) {
    case GroupSlice::Role::Producing:
      return "producing";
    case GroupSlice::Role::Consuming:
      return "consuming";
    case GroupSlice::Role::Scaling:
      return "scaling";
  }
  return "?";
}

std::string NodeGroup::variable_group_id(int64_t current_index) const {
  const auto i = static_cast<size_t>(current_index);
  return group_prefix +
         std::to_string(i < original_index.size() ? original_index[i] : current_index);
}

namespace {

// ---- Channel axes
// ----------------------------------------------------------------------------------------
// Every dimension of every tensor and parameter is an axis. Operators unify axes (union-find) and
// factor them (an axis of heads·head_dim is the product of a head axis and a head_dim axis, in
// row-major order). The unfactored classes at the end — atoms — are the channel families: one
// index of an atom is one variable group.

enum AxisFlag : uint32_t {
  kToken = 1,       // batch or sequence position, not a channel
  kNormalised = 2,  // an RMSNorm normalises over it
  kVocabulary = 4,  // token ids or output logits
  kRope = 8,        // RoPE pairs channels inside a head
  kBroadcast = 16,  // created by repeating (GQA): not produced by any weight
  kLoraRank = 32,   // the inner width of a LoRA adapter
  kConflict = 64,   // reshaped or concatenated in a way the analysis cannot slice
};

class Axes {
 public:
  int64_t make(int64_t size, uint32_t flags = 0) {
    parent_.push_back(static_cast<int64_t>(parent_.size()));
    size_.push_back(size);
    flags_.push_back(flags);
    factors_.emplace_back();
    return parent_.back();
  }
  int64_t find(int64_t a) {
    while (parent_[static_cast<size_t>(a)] != a) {
      auto& p = parent_[static_cast<size_t>(a)];
      p = parent_[static_cast<size_t>(p)];
      a = p;
    }
    return a;
  }
  int64_t size(int64_t a) { return size_[static_cast<size_t>(find(a))]; }
  uint32_t& flags(int64_t a) { return flags_[static_cast<size_t>(find(a))]; }
  void flag(int64_t a, uint32_t f) { flags(a) |= f; }
  const std::vector<int64_t>& factors(int64_t a) { return factors_[static_cast<size_t>(find(a))]; }

  void unify(int64_t a, int64_t b, const std::string& where) {
    a = find(a);
    b = find(b);
    if (a == b) return;
    if (size_[static_cast<size_t>(a)] != size_[static_cast<size_t>(b)])
      throw Error("dependency analysis: " + where + " joins dimensions of sizes " +
                  std::to_string(size_[static_cast<size_t>(a)]) + " and " +
                  std::to_string(size_[static_cast<size_t>(b)]));
    parent_[static_cast<size_t>(b)] = a;
    flags_[static_cast<size_t>(a)] |= flags_[static_cast<size_t>(b)];
    auto fa = factors_[static_cast<size_t>(a)];
    auto fb = std::move(factors_[static_cast<size_t>(b)]);
    if (fb.empty()) return;
    if (fa.empty()) {
      factors_[static_cast<size_t>(a)] = std::move(fb);
      return;
    }
    bool same = fa.size() == fb.size();
    for (size_t i = 0; same && i < fa.size(); ++i)
      same = size(fa[i]) == size(fb[i]);
    if (same) {
      for (size_t i = 0; i < fa.size(); ++i)
        unify(fa[i], fb[i], where);
    } else {
      // Two different factorisations of the same channels: no consistent slicing exists.
      flag(a, kConflict);
      for (auto c : fb)
        flag(c, kConflict);
    }
  }

  /// a = parts[0] × parts[1] × … (row-major).
  void factor(int64_t a, const std::vector<int64_t>& parts, const std::string& where) {
    int64_t product = 1;
    for (auto p : parts)
      product *= size(p);
    if (product != size(a))
      throw Error("dependency analysis: " + where + " reshapes " + std::to_string(size(a)) +
                  " channels into " + std::to_string(product));
    const int64_t composite = make(size(a));
    factors_[static_cast<size_t>(composite)] = parts;
    unify(a, composite, where);
  }

  /// The atoms of `a` in row-major order.
  void expand(int64_t a, std::vector<int64_t>& out, int depth = 0) {
    if (depth > 64) throw Error("dependency analysis: axis factorisation does not terminate");
    a = find(a);
    const auto f = factors_[static_cast<size_t>(a)];
    if (f.empty()) {
      out.push_back(a);
      return;
    }
    for (auto c : f)
      expand(c, out, depth + 1);
  }

  /// Flags of composites apply to their atoms.
  void push_flags_down() {
    bool changed = true;
    while (changed) {
      changed = false;
      for (size_t i = 0; i < parent_.size(); ++i) {
        if (parent_[i] != static_cast<int64_t>(i)) continue;
        for (auto c : factors_[i]) {
          auto& fc = flags(c);
          const uint32_t inherited = flags_[i] & ~kToken;
          if ((fc | inherited) != fc) {
            fc |= inherited;
            changed = true;
          }
        }
      }
    }
  }

  size_t count() const { return parent_.size(); }

 private:
  std::vector<int64_t> parent_, size_;
  std::vector<uint32_t> flags_;
  std::vector<std::vector<int64_t>> factors_;
};

bool is_linear_kind(const std::string& kind) {
  return kind == "linear" || kind == "lora_A" || kind == "lora_B";
}

// `model.layers.3.self_attn.q_proj.lora_B` → `L3.attn.q_proj.lora_B`; `model.embed_tokens` →
// `embed_tokens`.
std::string short_module(const std::string& module) {
  static const std::regex layer_re(R"(^(model\.)?layers\.(\d+)(\.|$))");
  std::string s = module;
  std::smatch m;
  if (std::regex_search(s, m, layer_re)) {
    s = "L" + m[2].str() + (m[3].str().empty() ? "" : "." + m.suffix().str());
  } else if (s.rfind("model.", 0) == 0) {
    s = s.substr(6);
  }
  static const std::regex attn_re(R"(\bself_attn\b)");
  return std::regex_replace(s, attn_re, "attn");
}

std::vector<std::string> split_dots(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const auto dot = s.find('.', start);
    out.push_back(s.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return out;
}

std::string common_prefix(const std::vector<std::string>& names) {
  if (names.empty()) return {};
  auto parts = split_dots(names.front());
  for (const auto& n : names) {
    const auto p = split_dots(n);
    size_t k = 0;
    while (k < parts.size() && k < p.size() && parts[k] == p[k])
      ++k;
    parts.resize(k);
  }
  std::string out;
  for (const auto& p : parts)
    out += (out.empty() ? "" : ".") + p;
  return out;
}

int64_t layer_of_id(const std::string& id) {
  static const std::regex re(R"(^L(\d+)(\.|$))");
  std::smatch m;
  return std::regex_search(id, m, re) ? std::stoll(m[1]) : -1;
}

int64_t layer_of_param(const std::string& name) {
  static const std::regex re(R"((^|\.)layers\.(\d+)\.)");
  std::smatch m;
  return std::regex_search(name, m, re) ? std::stoll(m[2]) : -1;
}

// The module that owns a parameter: `…q_proj.lora_B.weight` → `…q_proj`.
std::string adapted_module(const std::string& param) {
  auto m = param.substr(0, param.rfind('.'));
  for (const char* suffix : {".lora_A", ".lora_B"}) {
    const std::string s(suffix);
    if (m.size() > s.size() && m.compare(m.size() - s.size(), s.size(), s) == 0)
      return m.substr(0, m.size() - s.size());
  }
  return m;
}

struct ParamInfo {
  std::vector<int64_t> shape;
  std::vector<int64_t> axes;
  std::vector<uint8_t> roles;  // per dim: bit (1 << Role)
  double flops_per_element = 0;
  std::vector<int64_t> nodes;
};

// A template slice before it is grouped by atom.
struct AtomSlice {
  std::string param;
  int dim;
  int64_t block, step, repeats;
};

class Analyzer {
 public:
  Analyzer(const TraceGraph& g, DependencyOptions o) : g_(g), o_(std::move(o)) {}

  DependencyGraph run();

 private:
  std::vector<int64_t>& tensor_axes(int64_t t) {
    auto& axes = tensors_[static_cast<size_t>(t)];
    if (axes.empty())
      for (auto s : g_.tensors[static_cast<size_t>(t)].shape)
        axes.push_back(axes_.make(s));
    return axes;
  }
  int64_t tdim(int64_t t, int64_t d) {
    auto& axes = tensor_axes(t);
    const auto n = static_cast<int64_t>(axes.size());
    return axes[static_cast<size_t>(d < 0 ? n + d : d)];
  }
  int64_t rank(int64_t t) { return static_cast<int64_t>(tensor_axes(t).size()); }
  ParamInfo& param(const TraceParam& p, int64_t node) {
    auto [it, fresh] = params_.try_emplace(p.name);
    auto& info = it->second;
    if (fresh) {
      info.shape = p.shape;
      for (auto s : p.shape)
        info.axes.push_back(axes_.make(s));
      info.roles.assign(p.shape.size(), 0);
    }
    if (info.nodes.empty() || info.nodes.back() != node) info.nodes.push_back(node);
    return info;
  }
  void role(ParamInfo& p, int dim, GroupSlice::Role r) {
    p.roles[static_cast<size_t>(dim)] |= static_cast<uint8_t>(1u << static_cast<int>(r));
  }
  // Unify the first `n` dims of a and b.
  void unify_leading(int64_t a, int64_t b, int64_t n, const std::string& where) {
    for (int64_t i = 0; i < n; ++i)
      axes_.unify(tdim(a, i), tdim(b, i), where);
  }
  // Numpy broadcasting, right-aligned: equal sizes are the same axis, size-1 dims broadcast.
  void unify_broadcast(int64_t a, int64_t b, const std::string& where) {
    const int64_t ra = rank(a), rb = rank(b);
    for (int64_t i = 1; i <= std::min(ra, rb); ++i) {
      const int64_t x = tdim(a, -i), y = tdim(b, -i);
      if (axes_.size(x) == axes_.size(y)) {
        axes_.unify(x, y, where);
      } else if (axes_.size(x) != 1 && axes_.size(y) != 1) {
        throw Error("dependency analysis: " + where + " broadcasts incompatible shapes");
      }
    }
  }
  void apply(size_t index);
  void apply_concat(const TraceNode& n, bool split);

  const TraceGraph& g_;
  DependencyOptions o_;  // context resolved by run()
  Axes axes_;
  std::vector<std::vector<int64_t>> tensors_;
  std::map<std::string, ParamInfo> params_;
  std::map<int64_t, std::string> conflict_reason_;  // axis → why (before roots settle)
  std::vector<double> node_flops_;
};

void Analyzer::apply_concat(const TraceNode& n, bool split) {
  // concat: inputs → one output; split: one input → outputs. The joined dimension is the one whose
  // sizes differ; every other dimension is shared. Channels joined this way are a sum of axes,
  // which the slicing model does not express: they are marked unprunable unless they are tokens.
  const auto& parts = split ? n.outputs : n.inputs;
  const int64_t whole = split ? n.inputs.at(0) : n.outputs.at(0);
  const int64_t r = rank(whole);
  int64_t joined = -1;
  for (auto p : parts) {
    if (rank(p) != r)
      throw Error("dependency analysis: " + n.name + " joins tensors of different rank");
    for (int64_t d = 0; d < r; ++d)
      if (axes_.size(tdim(p, d)) != axes_.size(tdim(whole, d))) joined = d;
  }
  if (joined < 0) joined = r - 1;
  for (auto p : parts) {
    for (int64_t d = 0; d < r; ++d) {
      if (d == joined) {
        axes_.flag(tdim(p, d), kConflict);
        conflict_reason_[tdim(p, d)] = "concatenated or split along channels at " + n.name;
      } else {
        axes_.unify(tdim(p, d), tdim(whole, d), n.name);
      }
    }
  }
  axes_.flag(tdim(whole, joined), kConflict);
  conflict_reason_[tdim(whole, joined)] = "concatenated or split along channels at " + n.name;
}

void Analyzer::apply(size_t index) {
  const auto& n = g_.nodes[index];
  const auto& k = n.kind;
  const auto node = static_cast<int64_t>(index);
  const std::string& where = n.name;
  auto in = [&](size_t i) { return n.inputs.at(i); };
  auto out = [&](size_t i) { return n.outputs.at(i); };
  double& flops = node_flops_[index];

  if (is_linear_kind(k)) {
    const int64_t x = in(0), y = out(0);
    unify_leading(x, y, rank(x) - 1, where);
    for (const auto& p : n.params) {
      auto& info = param(p, node);
      if (p.role == "weight") {
        axes_.unify(info.axes[0], tdim(y, -1), where);
        axes_.unify(info.axes[1], tdim(x, -1), where);
        role(info, 0, GroupSlice::Role::Producing);
        role(info, 1, GroupSlice::Role::Consuming);
        info.flops_per_element += 2;
        flops += 2.0 * static_cast<double>(info.shape[0] * info.shape[1]);
      } else {
        axes_.unify(info.axes[0], tdim(y, -1), where);
        role(info, 0, GroupSlice::Role::Producing);
        info.flops_per_element += 1;
        flops += static_cast<double>(info.shape[0]);
      }
    }
    if (k == "lora_A") axes_.flag(tdim(y, -1), kLoraRank);
  } else if (k == "embedding") {
    const int64_t ids = in(0), y = out(0);
    unify_leading(ids, y, rank(ids), where);
    for (int64_t d = 0; d < rank(ids); ++d)
      axes_.flag(tdim(ids, d), kToken);
    auto& info = param(n.params.at(0), node);
    axes_.flag(info.axes[0], kVocabulary);
    role(info, 0, GroupSlice::Role::Consuming);  // rows are looked up by the ids
    axes_.unify(info.axes[1], tdim(y, -1), where);
    role(info, 1, GroupSlice::Role::Producing);
  } else if (k == "rms_norm") {
    const int64_t x = in(0), y = out(0);
    unify_leading(x, y, rank(x), where);
    axes_.flag(tdim(x, -1), kNormalised);
    auto& info = param(n.params.at(0), node);
    axes_.unify(info.axes[0], tdim(x, -1), where);
    role(info, 0, GroupSlice::Role::Scaling);
  } else if (k == "add" || k == "mul" || k == "silu" || k == "scale" || k == "zeros") {
    for (auto t : n.inputs)
      unify_broadcast(t, out(0), where);
  } else if (k == "rotary") {
    unify_leading(out(0), out(1), rank(out(0)), where);
  } else if (k == "reshape_heads") {
    const int64_t x = in(0), y = out(0);
    unify_leading(x, y, rank(x) - 1, where);
    axes_.factor(tdim(x, -1), {tdim(y, -2), tdim(y, -1)}, where);
  } else if (k == "merge_heads") {
    const int64_t x = in(0), y = out(0);
    unify_leading(x, y, rank(y) - 1, where);
    axes_.factor(tdim(y, -1), {tdim(x, -2), tdim(x, -1)}, where);
  } else if (k == "rope") {
    // x [.., T, H, D] with tables [T, D]: channel i of a head is rotated with channel i + D/2.
    const int64_t x = in(0), y = out(0);
    unify_leading(x, y, rank(x), where);
    for (size_t t = 1; t < n.inputs.size(); ++t) {
      axes_.unify(tdim(in(t), 0), tdim(x, -3), where);
      axes_.unify(tdim(in(t), -1), tdim(x, -1), where);
    }
    axes_.flag(tdim(x, -1), kRope);
  } else if (k == "repeat_kv") {
    // [.., kv, D] → [.., kv·g, D]: output head h reads kv head h / g.
    const int64_t x = in(0), y = out(0);
    for (int64_t d = 0; d < rank(x); ++d)
      if (d != rank(x) - 2) axes_.unify(tdim(x, d), tdim(y, d), where);
    const int64_t g = axes_.size(tdim(y, -2)) / axes_.size(tdim(x, -2));
    const int64_t rep = axes_.make(g, kBroadcast);
    axes_.factor(tdim(y, -2), {tdim(x, -2), rep}, where);
  } else if (k == "attention") {
    // q [B, T, H, D], k/v [B, S, H, D] → [B, T, H, D]: head h of the output comes from head h of
    // q, k and v; scores contract q and k over D; one head_dim is shared by q, k and v.
    const int64_t q = in(0), kk = in(1), v = in(2), y = out(0);
    for (auto t : {kk, v, y}) {
      axes_.unify(tdim(q, 0), tdim(t, 0), where);
      axes_.unify(tdim(q, -2), tdim(t, -2), where);
      axes_.unify(tdim(q, -1), tdim(t, -1), where);
    }
    axes_.unify(tdim(q, 1), tdim(y, 1), where);
    axes_.unify(tdim(kk, 1), tdim(v, 1), where);
    const auto& qs = g_.tensors[static_cast<size_t>(q)].shape;
    const double heads = static_cast<double>(qs[qs.size() - 2]);
    const double hd = static_cast<double>(qs.back());
    flops += 4.0 * heads * hd * (static_cast<double>(o_.context) + 1.0) / 2.0;
  } else if (k == "concat") {
    apply_concat(n, false);
  } else if (k == "split") {
    apply_concat(n, true);
  } else {
    // No rule: keep every channel it touches out of the search space.
    for (auto t : n.inputs)
      for (int64_t d = 0; d < rank(t); ++d) {
        axes_.flag(tdim(t, d), kConflict);
        conflict_reason_[tdim(t, d)] =
            "passes through operator '" + k + "' (" + n.name + "), which has no coupling rule";
      }
    const std::string why =
        "passes through operator '" + k + "' (" + n.name + "), which has no coupling rule";
    for (auto t : n.outputs)
      for (int64_t d = 0; d < rank(t); ++d) {
        axes_.flag(tdim(t, d), kConflict);
        conflict_reason_[tdim(t, d)] = why;
      }
    for (const auto& p : n.params) {
      auto& info = param(p, node);
      for (auto a : info.axes) {
        axes_.flag(a, kConflict);
        conflict_reason_[a] = why;
      }
    }
  }
}

DependencyGraph Analyzer::run() {
  DependencyGraph out;
  out.context = o_.context > 0 ? o_.context : g_.config.max_position_embeddings;
  o_.context = out.context;  // the attention rule reads it
  tensors_.assign(g_.tensors.size(), {});
  node_flops_.assign(g_.nodes.size(), 0.0);
  for (size_t i = 0; i < g_.nodes.size(); ++i)
    apply(i);
  if (g_.input >= 0)
    for (int64_t d = 0; d < rank(g_.input); ++d)
      axes_.flag(tdim(g_.input, d), kToken);
  if (g_.output >= 0) axes_.flag(tdim(g_.output, -1), kVocabulary);
  axes_.push_flags_down();
  std::map<int64_t, std::string> conflict_reason;
  for (const auto& [a, why] : conflict_reason_)
    conflict_reason.emplace(axes_.find(a), why);

  // ---- Atoms and their slices
  struct AtomInfo {
    std::vector<AtomSlice> slices;
    std::set<int64_t> nodes;
  };
  std::map<int64_t, AtomInfo> atoms;
  std::vector<int64_t> expansion;
  for (const auto& [name, info] : params_) {
    for (size_t d = 0; d < info.axes.size(); ++d) {
      expansion.clear();
      axes_.expand(info.axes[d], expansion);
      for (size_t j = 0; j < expansion.size(); ++j) {
        const int64_t a = expansion[j];
        if (std::count(expansion.begin(), expansion.end(), a) > 1) axes_.flag(a, kConflict);
        int64_t inner = 1, outer = 1;
        for (size_t i = j + 1; i < expansion.size(); ++i)
          inner *= axes_.size(expansion[i]);
        for (size_t i = 0; i < j; ++i)
          outer *= axes_.size(expansion[i]);
        auto& atom = atoms[a];
        atom.slices.push_back({name, static_cast<int>(d), inner, inner * axes_.size(a), outer});
        atom.nodes.insert(info.nodes.begin(), info.nodes.end());
      }
    }
  }
  for (size_t i = 0; i < g_.nodes.size(); ++i) {
    const auto& n = g_.nodes[i];
    for (const auto* list : {&n.inputs, &n.outputs})
      for (auto t : *list)
        for (auto axis : tensor_axes(t)) {
          expansion.clear();
          axes_.expand(axis, expansion);
          for (auto a : expansion)
            if (auto it = atoms.find(a); it != atoms.end())
              it->second.nodes.insert(static_cast<int64_t>(i));
        }
  }

  // Which layers can be trained through LoRA: adapters in the trace, else the configured targets.
  std::set<std::string> adapted;
  for (const auto& [name, info] : params_)
    if (name.find(".lora_B.") != std::string::npos) adapted.insert(adapted_module(name));
  const bool has_adapters = !adapted.empty();
  auto trainable = [&](const std::string& param) {
    const auto module = adapted_module(param);
    if (has_adapters) return adapted.count(module) > 0;
    const auto leaf = module.substr(module.rfind('.') + 1);
    return std::find(o_.lora_targets.begin(), o_.lora_targets.end(), leaf) != o_.lora_targets.end();
  };

  // ---- Node groups
  struct Pending {
    int64_t atom;
    NodeGroup group;
    std::string label;      // for unprunable flagged groups
    std::string structure;  // common module prefix
  };
  std::vector<Pending> pending;
  for (auto& [a, info] : atoms) {
    const uint32_t flags = axes_.flags(a);
    if (flags & kToken) continue;
    NodeGroup ng;
    ng.size = axes_.size(a);
    // Merge the slices of one parameter dimension (a tied weight is used by two operators).
    std::map<std::pair<std::string, int>, AtomSlice> merged;
    for (const auto& s : info.slices)
      merged.emplace(std::make_pair(s.param, s.dim), s);
    std::vector<std::string> touching;
    bool has_trainable_producer = false, has_producer = false;
    for (const auto& [key, s] : merged) {
      const auto& p = params_.at(s.param);
      const uint8_t roles = p.roles[static_cast<size_t>(s.dim)];
      for (auto r :
           {GroupSlice::Role::Producing, GroupSlice::Role::Consuming, GroupSlice::Role::Scaling}) {
        if (!(roles & (1u << static_cast<int>(r)))) continue;
        GroupSlice gs;
        gs.param = s.param;
        gs.shape = p.shape;
        gs.dim = s.dim;
        gs.role = r;
        gs.block = s.block;
        gs.step = s.step;
        gs.repeats = s.repeats;
        gs.flops_per_element = p.flops_per_element;
        if (r == GroupSlice::Role::Producing) {
          has_producer = true;
          if (trainable(s.param)) has_trainable_producer = true;
        }
        touching.push_back(short_module(adapted_module(s.param)));
        ng.slices.push_back(std::move(gs));
        break;  // one slice per parameter dimension: the strongest role
      }
    }
    // Parameters: count each element once even when a group owns both a row and a column.
    std::map<std::string, std::vector<const GroupSlice*>> by_param;
    for (const auto& s : ng.slices)
      by_param[s.param].push_back(&s);
    for (const auto& [name, list] : by_param) {
      const auto& p = params_.at(name);
      int64_t numel = 1;
      for (auto s : p.shape)
        numel *= s;
      int64_t kept = numel;
      for (const auto* s : list)
        kept = kept / s->shape[static_cast<size_t>(s->dim)] *
               (s->shape[static_cast<size_t>(s->dim)] - s->indices_per_group());
      ng.per_group.params += numel - kept;
      ng.per_group.flops += p.flops_per_element * static_cast<double>(numel - kept);
    }
    ng.nodes.assign(info.nodes.begin(), info.nodes.end());

    Pending pd{a, std::move(ng), {}, {}};
    std::sort(touching.begin(), touching.end());
    // Named by the block of every layer that touches the channels: q, k, v and o make `L3.attn`,
    // gate, up and down `L3.mlp`; a GQA repeat (produced by q_proj alone) also lands in the
    // attention.
    pd.structure = common_prefix(touching);
    auto& grp = pd.group;
    // Unprunable families, strongest reason first.
    static const struct {
      uint32_t flag;
      const char* label;
      const char* reason;
    } kUnprunable[] = {
        {kVocabulary, "vocab", "vocabulary: token ids in, logits out"},
        // Before kNormalised: Qwen3's per-head q/k RMSNorm also normalises over head_dim.
        {kRope, "head_dim",
         "head_dim: RoPE rotates channel pairs inside each head, and q, k and v share it"},
        {kNormalised, "hidden",
         "hidden (residual) dimension: RMSNorm normalises over it, so removing a channel changes "
         "every norm"},
        {kLoraRank, "lora_rank", "LoRA rank: the adapter's inner width"},
        {kBroadcast, "kv_repeat",
         "query heads sharing a kv head: removed only with their kv head (zeroing query weights "
         "cannot zero a repeated kv head)"},
    };
    const auto* known = std::find_if(std::begin(kUnprunable), std::end(kUnprunable),
                                     [&](const auto& u) { return (flags & u.flag) != 0; });
    if (known != std::end(kUnprunable)) {
      pd.label = known->label;
      grp.reason = known->reason;
      if (known->flag == kRope && (flags & kNormalised))
        grp.reason += "; the per-head q/k RMSNorm normalises over it";
    } else if (flags & kConflict) {
      pd.label = "other";
      auto it = conflict_reason.find(a);
      grp.reason = it != conflict_reason.end()
                       ? it->second
                       : "reshaped in two incompatible ways; no consistent slicing exists";
    } else if (!has_producer) {
      pd.label = "other";
      grp.reason = "no parameter produces these channels";
    } else if (!has_trainable_producer) {
      grp.reason = "no layer producing these channels is a LoRA target";
    } else {
      grp.prunable = true;
    }
    pending.push_back(std::move(pd));
  }

  // Names: prunable (and target-excluded) groups by the block that produces them; the others by
  // what they are, qualified by their block when the label repeats.
  std::map<std::string, int> label_count;
  for (const auto& p : pending)
    if (!p.label.empty()) ++label_count[p.label];
  std::set<std::string> used;
  for (auto& p : pending) {
    auto& grp = p.group;
    std::string id;
    if (p.label.empty()) {
      id = p.structure.empty() ? "group" : p.structure;
      const auto parts = split_dots(id);
      const auto& last = parts.back();
      grp.kind = last == "attn" ? "attention" : last == "mlp" ? "mlp" : "channels";
    } else {
      grp.kind = p.label;
      id = label_count[p.label] == 1 || p.structure.empty() ? p.label : p.structure + "." + p.label;
    }
    if (used.count(id)) {
      int k = 2;
      while (used.count(id + "#" + std::to_string(k)))
        ++k;
      id += "#" + std::to_string(k);
    }
    used.insert(id);
    grp.id = id;
    grp.layer = layer_of_id(id);
    bool heads = false;
    for (const auto& s : grp.slices)
      if (s.role == GroupSlice::Role::Producing && s.block > 1) heads = true;
    grp.group_prefix = id + (heads ? ".kv" : ".c");
    // Stable ids: the configuration remembers which original groups a pruned layer kept.
    grp.original_index.resize(static_cast<size_t>(grp.size));
    std::iota(grp.original_index.begin(), grp.original_index.end(), 0);
    if (grp.layer >= 0 && grp.layer < g_.config.n_layers()) {
      const auto& d = g_.config.layers[static_cast<size_t>(grp.layer)];
      const auto& origin = grp.kind == "attention" ? d.kv_origin
                           : grp.kind == "mlp"     ? d.channel_origin
                                                   : std::vector<int64_t>{};
      if (static_cast<int64_t>(origin.size()) == grp.size) grp.original_index = origin;
    }
  }
  std::stable_sort(pending.begin(), pending.end(), [](const Pending& a, const Pending& b) {
    // Layers in order, attention before MLP, unprunable model-wide groups last.
    auto key = [](const NodeGroup& g) {
      static const std::vector<std::string> order = {"attention", "mlp", "channels", "kv_repeat",
                                                     "lora_rank"};
      const auto kind = std::find(order.begin(), order.end(), g.kind) - order.begin();
      return std::make_tuple(g.layer < 0 ? INT64_MAX : g.layer, !g.prunable, kind);
    };
    return key(a.group) < key(b.group);
  });
  std::map<int64_t, size_t> group_of_atom;
  for (auto& p : pending) {
    group_of_atom[p.atom] = out.node_groups.size();
    out.node_groups.push_back(std::move(p.group));
  }

  // Attention FLOPs shrink with the heads: each group of the head axis owns its share.
  for (size_t i = 0; i < g_.nodes.size(); ++i) {
    if (g_.nodes[i].kind != "attention") continue;
    expansion.clear();
    axes_.expand(tdim(g_.nodes[i].inputs[0], -2), expansion);
    DependencyGraph::AttentionCost ac{g_.nodes[i].layer, node_flops_[i], {}};
    for (auto a : expansion) {
      auto it = group_of_atom.find(a);
      if (it == group_of_atom.end()) continue;
      auto& grp = out.node_groups[it->second];
      grp.per_group.flops += node_flops_[i] / static_cast<double>(grp.size);
      ac.groups.push_back(it->second);
    }
    out.attention_costs.push_back(std::move(ac));
  }

  // ---- Home group of every node (for colouring): a prunable group it produces for, then any
  // prunable group, then the unprunable kinds in a fixed order.
  out.home_group.assign(g_.nodes.size(), -1);
  auto rank_kind = [](const NodeGroup& g) {
    static const std::vector<std::string> order = {"attention", "mlp",       "channels",
                                                   "lora_rank", "kv_repeat", "head_dim",
                                                   "vocab",     "hidden",    "other"};
    const auto it = std::find(order.begin(), order.end(), g.kind);
    return static_cast<int>(it - order.begin()) + (g.prunable ? 0 : 1);
  };
  std::vector<int> best(g_.nodes.size(), INT32_MAX);
  for (size_t gi = 0; gi < out.node_groups.size(); ++gi) {
    const auto& grp = out.node_groups[gi];
    for (auto n : grp.nodes) {
      const int r = rank_kind(grp);
      if (r < best[static_cast<size_t>(n)]) {
        best[static_cast<size_t>(n)] = r;
        out.home_group[static_cast<size_t>(n)] = static_cast<int64_t>(gi);
      }
    }
  }

  // ---- Model accounting
  out.layers.assign(static_cast<size_t>(g_.config.n_layers()), Cost{});
  for (const auto& [name, info] : params_) {
    int64_t numel = 1;
    for (auto s : info.shape)
      numel *= s;
    const int64_t layer = layer_of_param(name);
    auto& c = layer >= 0 && layer < g_.config.n_layers() ? out.layers[static_cast<size_t>(layer)]
                                                         : out.outside_layers;
    c.params += numel;
  }
  for (size_t i = 0; i < g_.nodes.size(); ++i) {
    const int64_t layer = g_.nodes[i].layer;
    auto& c = layer >= 0 && layer < g_.config.n_layers() ? out.layers[static_cast<size_t>(layer)]
                                                         : out.outside_layers;
    c.flops += node_flops_[i];
  }
  out.total = out.outside_layers;
  for (const auto& c : out.layers)
    out.total += c;
  return out;
}

}  // namespace

int64_t DependencyGraph::find_node_group(const std::string& id) const {
  for (size_t i = 0; i < node_groups.size(); ++i)
    if (node_groups[i].id == id) return static_cast<int64_t>(i);
  return -1;
}

int64_t DependencyGraph::prunable_variable_groups() const {
  int64_t n = 0;
  for (const auto& g : node_groups)
    if (g.prunable) n += g.size;
  return n;
}

std::pair<size_t, int64_t> DependencyGraph::resolve(const std::string& id) const {
  for (size_t i = 0; i < node_groups.size(); ++i) {
    const auto& g = node_groups[i];
    const auto& prefix = g.group_prefix;
    if (id.size() <= prefix.size() || id.compare(0, prefix.size(), prefix) != 0) continue;
    const auto rest = id.substr(prefix.size());
    if (!std::all_of(rest.begin(), rest.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
        rest.size() > 12)
      continue;
    const int64_t original = std::stoll(rest);
    const auto it = std::lower_bound(g.original_index.begin(), g.original_index.end(), original);
    if (it == g.original_index.end() || *it != original) {
      const bool pruned = static_cast<int64_t>(g.original_index.size()) != g.size ||
                          (!g.original_index.empty() && g.original_index.back() >= g.size);
      throw UsageError("variable group '" + id + "' is not in this model" +
                       (pruned ? ": node group " + g.id + " was pruned and no longer has it"
                               : ": node group " + g.id + " has " + prefix + "0 to " + prefix +
                                     std::to_string(g.size - 1)));
    }
    return {i, static_cast<int64_t>(it - g.original_index.begin())};
  }
  std::string known;
  int shown = 0;
  for (const auto& g : node_groups) {
    if (!g.prunable || shown == 3) continue;
    known += (shown++ ? ", " : "") + g.variable_group_id(0);
  }
  throw UsageError("unknown variable group '" + id + "' (ids look like " +
                   (known.empty() ? std::string("L3.attn.kv1 or L3.mlp.c117") : known) + ")");
}

RemovalPlan DependencyGraph::plan(const std::vector<std::string>& ids) const {
  RemovalPlan p;
  std::set<std::pair<size_t, int64_t>> seen;
  for (const auto& id : ids) {
    const auto [g, k] = resolve(id);
    const auto& grp = node_groups[g];
    if (!grp.prunable)
      throw UsageError("variable group '" + id + "' belongs to node group '" + grp.id +
                       "', which is not prunable: " + grp.reason);
    if (!seen.insert({g, k}).second)
      throw UsageError("variable group '" + id + "' is listed twice");
    p[g].push_back(k);
  }
  for (auto& [g, list] : p) {
    std::sort(list.begin(), list.end());
    const auto& grp = node_groups[g];
    if (grp.kind == "attention" && static_cast<int64_t>(list.size()) == grp.size)
      throw UsageError("removing every kv group of " + grp.id +
                       " would delete the layer's attention entirely; keep at least one");
  }
  return p;
}

RemovalCost DependencyGraph::removal_cost(const RemovalPlan& plan) const {
  RemovalCost out;
  out.layers.assign(layers.size(), Cost{});
  auto at_layer = [&](int64_t layer) -> Cost* {
    return layer >= 0 && layer < static_cast<int64_t>(out.layers.size())
               ? &out.layers[static_cast<size_t>(layer)]
               : nullptr;
  };
  struct Removed {
    const GroupSlice* slice;  // shape and cost per element
    std::vector<std::vector<char>> dims;
  };
  std::map<std::string, Removed> removed;
  for (const auto& [g, list] : plan) {
    for (const auto& s : node_groups[g].slices) {
      auto& r = removed[s.param];
      if (r.slice == nullptr) {
        r.slice = &s;
        r.dims.resize(s.shape.size());
      }
      auto& mask = r.dims[static_cast<size_t>(s.dim)];
      mask.resize(static_cast<size_t>(s.shape[static_cast<size_t>(s.dim)]), 0);
      for (auto k : list)
        for (int64_t r0 = 0; r0 < s.repeats; ++r0)
          std::fill_n(mask.begin() + k * s.block + r0 * s.step, s.block, char{1});
    }
  }
  for (const auto& [name, r] : removed) {
    int64_t numel = 1, kept = 1;
    for (size_t d = 0; d < r.slice->shape.size(); ++d) {
      const int64_t n = r.slice->shape[d];
      numel *= n;
      const auto& mask = r.dims[d];
      kept *= n - std::count(mask.begin(), mask.end(), char{1});
    }
    const Cost c{numel - kept, r.slice->flops_per_element * static_cast<double>(numel - kept)};
    out.total += c;
    if (auto* l = at_layer(layer_of_param(name))) *l += c;
  }
  for (const auto& ac : attention_costs) {
    double kept = 1.0;
    for (auto g : ac.groups) {
      const auto it = plan.find(g);
      const double n = static_cast<double>(node_groups[g].size);
      if (it != plan.end()) kept *= (n - static_cast<double>(it->second.size())) / n;
    }
    const Cost c{0, ac.flops * (1.0 - kept)};
    out.total += c;
    if (auto* l = at_layer(ac.layer)) *l += c;
  }
  return out;
}

DependencyGraph analyze_dependencies(const TraceGraph& graph, const DependencyOptions& options) {
  Analyzer a(graph, options);
  return a.run();
}

}  // namespace lorashear
