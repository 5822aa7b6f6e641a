#include "lorashear/model/config.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <tuple>

#include "lorashear/errors.h"
#include "lorashear/io/json.h"

namespace lorashear {

namespace {

constexpr const char* kRopeTypes = "supported: linear, dynamic, llama3, yarn";

[[noreturn]] void fail(const std::string& source, const std::string& field,
                       const std::string& what) {
  throw InputError(source + ": field '" + field + "': " + what);
}

int64_t require_int(const nlohmann::json& j, const std::string& key, const std::string& source) {
  if (!j.contains(key)) fail(source, key, "missing");
  const auto& v = j.at(key);
  if (!v.is_number_integer()) fail(source, key, "expected an integer, found " + v.dump());
  return v.get<int64_t>();
}

int64_t optional_int(const nlohmann::json& j, const std::string& key, int64_t fallback,
                     const std::string& source) {
  if (!j.contains(key) || j.at(key).is_null()) return fallback;
  const auto& v = j.at(key);
  if (v.is_array() && !v.empty() && v.front().is_number_integer()) return v.front().get<int64_t>();
  if (!v.is_number_integer()) fail(source, key, "expected an integer, found " + v.dump());
  return v.get<int64_t>();
}

double optional_double(const nlohmann::json& j, const std::string& key, double fallback,
                       const std::string& source) {
  if (!j.contains(key) || j.at(key).is_null()) return fallback;
  const auto& v = j.at(key);
  if (!v.is_number()) fail(source, key, "expected a number, found " + v.dump());
  return v.get<double>();
}

std::vector<int64_t> optional_list(const nlohmann::json& j, const std::string& key, size_t n,
                                   const std::string& source) {
  if (!j.contains(key)) return {};
  const auto& v = j.at(key);
  if (!v.is_array() || v.size() != n)
    fail(source, key, "expected a list of " + std::to_string(n) + " integers");
  std::vector<int64_t> out;
  for (const auto& x : v) {
    if (!x.is_number_integer()) fail(source, key, "expected integers, found " + x.dump());
    out.push_back(x.get<int64_t>());
  }
  return out;
}

std::vector<int64_t> parse_ranges(const std::string& text, const std::string& source,
                                  const std::string& field) {
  std::vector<int64_t> out;
  size_t pos = 0;
  while (pos < text.size()) {
    auto comma = text.find(',', pos);
    if (comma == std::string::npos) comma = text.size();
    const auto item = text.substr(pos, comma - pos);
    const auto dash = item.find('-');
    try {
      size_t used = 0;
      const int64_t a = std::stoll(item.substr(0, dash), &used);
      if (used != (dash == std::string::npos ? item.size() : dash)) throw std::invalid_argument("");
      int64_t b = a;
      if (dash != std::string::npos) {
        b = std::stoll(item.substr(dash + 1), &used);
        if (used != item.size() - dash - 1) throw std::invalid_argument("");
      }
      if (a < 0 || b < a) throw std::invalid_argument("");
      for (int64_t x = a; x <= b; ++x)
        out.push_back(x);
    } catch (const std::exception&) {
      fail(source, field, "expected ranges like \"0-3,7\", found \"" + item + "\"");
    }
    pos = comma + 1;
  }
  for (size_t i = 1; i < out.size(); ++i)
    if (out[i] <= out[i - 1]) fail(source, field, "indices must be ascending: \"" + text + "\"");
  return out;
}

}  // namespace

RopeScaling parse_rope_scaling(const nlohmann::json& r, const std::string& source) {
  const std::string key = "rope_scaling";
  if (!r.is_object()) fail(source, key, "expected an object, found " + r.dump());
  RopeScaling out;
  const char* type_key = r.contains("rope_type") ? "rope_type" : "type";
  if (!r.contains(type_key) || !r[type_key].is_string())
    fail(source, key, "missing 'rope_type' (" + std::string(kRopeTypes) + ")");
  out.type = r[type_key].get<std::string>();
  if (out.type == "default") return {};
  if (out.type != "linear" && out.type != "dynamic" && out.type != "llama3" && out.type != "yarn")
    fail(source, key, "unsupported type '" + out.type + "' (" + kRopeTypes + ")");
  auto num = [&](const char* name, double fallback, bool required) {
    if (!r.contains(name) || r[name].is_null()) {
      if (required) fail(source, key + "." + name, "missing (needed by '" + out.type + "')");
      return fallback;
    }
    if (!r[name].is_number()) fail(source, key + "." + name, "expected a number");
    return r[name].get<double>();
  };
  // YaRN may give the factor only implicitly (max_position_embeddings / original); 0 = derive.
  out.factor = num("factor", 0.0, out.type != "yarn");
  out.original_max_position_embeddings =
      static_cast<int64_t>(num("original_max_position_embeddings", 0, out.type == "llama3"));
  if (out.type == "llama3") {
    out.low_freq_factor = num("low_freq_factor", 1.0, true);
    out.high_freq_factor = num("high_freq_factor", 4.0, true);
  }
  if (out.type == "yarn") {
    out.beta_fast = num("beta_fast", 32.0, false);
    out.beta_slow = num("beta_slow", 1.0, false);
    out.mscale = num("mscale", 0.0, false);
    out.mscale_all_dim = num("mscale_all_dim", 0.0, false);
    out.attention_factor = num("attention_factor", 0.0, false);
    if (r.contains("truncate") && r["truncate"].is_boolean()) out.truncate = r["truncate"];
  }
  return out;
}

std::vector<int64_t> parse_index_ranges(const std::string& text, const std::string& source,
                                        const std::string& field) {
  return parse_ranges(text, source, field);
}

std::string describe_rope_scaling(const RopeScaling& r) {
  if (!r.enabled()) return "none";
  auto num = [](double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return std::string(buf);
  };
  std::string out = r.type + " \u00d7" + num(r.factor);
  if (r.type == "llama3")
    out += ", low/high freq factor " + num(r.low_freq_factor) + "/" + num(r.high_freq_factor);
  if (r.original_max_position_embeddings > 0)
    out += ", pre-trained context " + std::to_string(r.original_max_position_embeddings);
  return out;
}

std::string ModelConfig::attention_features() const {
  std::vector<std::string> f;
  if (attention_bias) f.push_back(o_proj_bias() ? "q/k/v/o biases" : "q/k/v biases");
  if (qk_norm) f.push_back("per-head q/k RMSNorm");
  if (mlp_bias) f.push_back("MLP biases");
  if (sliding_window > 0) f.push_back("sliding window " + std::to_string(sliding_window));
  std::string out;
  for (const auto& s : f)
    out += (out.empty() ? "" : ", ") + s;
  return out;
}

std::string format_index_ranges(const std::vector<int64_t>& v) {
  std::string out;
  for (size_t i = 0; i < v.size();) {
    size_t j = i;
    while (j + 1 < v.size() && v[j + 1] == v[j] + 1)
      ++j;
    out +=
        (out.empty() ? "" : ",") + std::to_string(v[i]) + (j > i ? "-" + std::to_string(v[j]) : "");
    i = j + 1;
  }
  return out;
}

bool ModelConfig::uniform_layers() const {
  return std::all_of(layers.begin(), layers.end(),
                     [&](const LayerDims& d) { return d == layers.front(); });
}

ModelConfig ModelConfig::uniform(int64_t vocab, int64_t hidden, int64_t n_layers, int64_t n_heads,
                                 int64_t n_kv_heads, int64_t intermediate, int64_t head_dim) {
  ModelConfig c;
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.head_dim = head_dim > 0 ? head_dim : (n_heads > 0 ? hidden / n_heads : 0);
  c.layers.assign(static_cast<size_t>(n_layers), LayerDims{n_heads, n_kv_heads, intermediate});
  return c;
}

void ModelConfig::validate(const std::string& source) const {
  if (vocab_size <= 0) fail(source, "vocab_size", "must be positive");
  if (hidden_size <= 0) fail(source, "hidden_size", "must be positive");
  if (head_dim <= 0 || head_dim % 2 != 0)
    fail(source, "head_dim", "must be a positive even number, found " + std::to_string(head_dim));
  if (layers.empty()) fail(source, "num_hidden_layers", "must be positive");
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto& d = layers[i];
    const std::string where = " (layer " + std::to_string(i) + ")";
    // A fully pruned attention block (0 heads) is legal; kv heads then must be 0 too.
    if (d.n_heads < 0 || d.n_kv_heads < 0 || d.intermediate_size < 0)
      fail(source, "num_attention_heads", "negative dimension" + where);
    if ((d.n_heads == 0) != (d.n_kv_heads == 0))
      fail(source, "num_key_value_heads",
           "heads and kv heads must both be zero or positive" + where);
    if (!d.kv_origin.empty() && static_cast<int64_t>(d.kv_origin.size()) != d.n_kv_heads)
      fail(source, "lorashear_original_indices", "kv head indices do not match" + where);
    if (!d.channel_origin.empty() &&
        static_cast<int64_t>(d.channel_origin.size()) != d.intermediate_size)
      fail(source, "lorashear_original_indices", "MLP channel indices do not match" + where);
    if (d.n_kv_heads > 0 && d.n_heads % d.n_kv_heads != 0)
      fail(source, "num_key_value_heads",
           std::to_string(d.n_heads) + " query heads are not a multiple of " +
               std::to_string(d.n_kv_heads) + " kv heads" + where);
  }
  // Parameter counts are int64 (num_parameters, the memory plan multiplies them by bytes): a
  // generous bound in long double refuses dimensions whose products would overflow.
  {
    const long double h = static_cast<long double>(hidden_size);
    long double n = 2 * static_cast<long double>(vocab_size) * h + h;
    for (const auto& d : layers) {
      const long double q = static_cast<long double>(d.n_heads) * head_dim;
      const long double kv = static_cast<long double>(d.n_kv_heads) * head_dim;
      n += (h + 1) * (2 * q + 2 * kv + 1) + (3 * h + 2) * d.intermediate_size + 3 * h +
           2 * static_cast<long double>(head_dim);
    }
    if (n > static_cast<long double>(int64_t{1} << 56))
      fail(source, "hidden_size",
           "the dimensions give more than 2^56 parameters (vocab_size " +
               std::to_string(vocab_size) + ", hidden_size " + std::to_string(hidden_size) + ", " +
               std::to_string(layers.size()) + " layers)");
  }
  if (rms_norm_eps <= 0) fail(source, "rms_norm_eps", "must be positive");
  if (rope_theta <= 0) fail(source, "rope_theta", "must be positive");
  if (max_position_embeddings <= 0) fail(source, "max_position_embeddings", "must be positive");
  if (sliding_window < 0) fail(source, "sliding_window", "must not be negative");
  if (rope_scaling.enabled()) {
    const auto& r = rope_scaling;
    if (r.type != "linear" && r.type != "dynamic" && r.type != "llama3" && r.type != "yarn")
      fail(source, "rope_scaling", "unsupported type '" + r.type + "' (" + kRopeTypes + ")");
    if (!(r.factor > 0)) fail(source, "rope_scaling.factor", "must be positive");
    if (r.type == "llama3" && !(r.high_freq_factor > r.low_freq_factor && r.low_freq_factor > 0))
      fail(source, "rope_scaling", "llama3 needs 0 < low_freq_factor < high_freq_factor");
    if (r.original_max_position_embeddings < 0)
      fail(source, "rope_scaling.original_max_position_embeddings", "must not be negative");
  }
}

int64_t ModelConfig::layer_attention_parameters(int64_t i) const {
  const auto& d = layers.at(static_cast<size_t>(i));
  const int64_t q = d.n_heads * head_dim, kv = d.n_kv_heads * head_dim;
  int64_t n = hidden_size * (q + 2 * kv) + q * hidden_size;
  if (attention_bias) n += q + 2 * kv;
  if (o_proj_bias()) n += hidden_size;
  if (qk_norm) n += 2 * head_dim;
  return n;
}

int64_t ModelConfig::layer_mlp_parameters(int64_t i) const {
  const int64_t inter = layers.at(static_cast<size_t>(i)).intermediate_size;
  return 3 * hidden_size * inter + (mlp_bias ? 2 * inter + hidden_size : 0);
}

const char* ModelConfig::supported_model_types() {
  return "llama, mistral, qwen2, qwen3";
}

bool RopeScaling::operator==(const RopeScaling& o) const {
  return type == o.type && factor == o.factor && low_freq_factor == o.low_freq_factor &&
         high_freq_factor == o.high_freq_factor &&
         original_max_position_embeddings == o.original_max_position_embeddings &&
         beta_fast == o.beta_fast && beta_slow == o.beta_slow && mscale == o.mscale &&
         mscale_all_dim == o.mscale_all_dim && attention_factor == o.attention_factor &&
         truncate == o.truncate;
}

// Follows transformers' modeling_rope_utils (_compute_{default,linear,dynamic_ntk,llama3,yarn}
// _parameters); angles in float64.
RopeFrequencies rope_frequencies(int64_t head_dim, double theta, const RopeScaling& r,
                                 int64_t max_position_embeddings, int64_t seq_len) {
  const int64_t half = head_dim / 2;
  const double dim = static_cast<double>(head_dim);
  double base = theta;
  if (r.type == "dynamic" && seq_len > max_position_embeddings) {
    const double ratio =
        r.factor * static_cast<double>(seq_len) / static_cast<double>(max_position_embeddings) -
        (r.factor - 1.0);
    base = theta * std::pow(ratio, dim / (dim - 2.0));
  }
  RopeFrequencies out;
  out.inv_freq.resize(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i)
    out.inv_freq[static_cast<size_t>(i)] = 1.0 / std::pow(base, static_cast<double>(2 * i) / dim);
  const double original = static_cast<double>(r.original_max_position_embeddings > 0
                                                  ? r.original_max_position_embeddings
                                                  : max_position_embeddings);
  if (r.type == "linear") {
    for (auto& f : out.inv_freq)
      f /= r.factor;
  } else if (r.type == "llama3") {
    const double low_wavelen = original / r.low_freq_factor;
    const double high_wavelen = original / r.high_freq_factor;
    for (auto& f : out.inv_freq) {
      const double wavelen = 2.0 * M_PI / f;
      if (wavelen > low_wavelen) {
        f /= r.factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth =
            (original / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
        f = (1.0 - smooth) * f / r.factor + smooth * f;
      }
    }
  } else if (r.type == "yarn") {
    auto get_mscale = [](double scale, double m) {
      return scale <= 1.0 ? 1.0 : 0.1 * m * std::log(scale) + 1.0;
    };
    if (r.attention_factor > 0) {
      out.attention_factor = r.attention_factor;
    } else if (r.mscale > 0 && r.mscale_all_dim > 0) {
      out.attention_factor =
          get_mscale(r.factor, r.mscale) / get_mscale(r.factor, r.mscale_all_dim);
    } else {
      out.attention_factor = get_mscale(r.factor, 1.0);
    }
    auto correction_dim = [&](double rotations) {
      return dim * std::log(original / (rotations * 2.0 * M_PI)) / (2.0 * std::log(theta));
    };
    double low = correction_dim(r.beta_fast), high = correction_dim(r.beta_slow);
    if (r.truncate) {
      low = std::floor(low);
      high = std::ceil(high);
    }
    low = std::max(low, 0.0);
    high = std::min(high, dim - 1.0);
    if (low == high) high += 0.001;
    for (int64_t i = 0; i < half; ++i) {
      auto& f = out.inv_freq[static_cast<size_t>(i)];
      const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
      const double extrapolation = 1.0 - ramp;  // share of the unscaled frequency
      f = (f / r.factor) * (1.0 - extrapolation) + f * extrapolation;
    }
  }
  return out;
}

int64_t ModelConfig::num_parameters() const {
  int64_t n = vocab_size * hidden_size * (tie_word_embeddings ? 1 : 2) + hidden_size;
  for (int64_t i = 0; i < n_layers(); ++i)
    n += layer_attention_parameters(i) + layer_mlp_parameters(i) + 2 * hidden_size;
  return n;
}

nlohmann::json ModelConfig::to_hf_json(const std::string& torch_dtype) const {
  nlohmann::json j;
  const bool qwen2 = model_type == "qwen2";
  const char* arch = model_type == "qwen2"     ? "Qwen2ForCausalLM"
                     : model_type == "qwen3"   ? "Qwen3ForCausalLM"
                     : model_type == "mistral" ? "MistralForCausalLM"
                                               : "LlamaForCausalLM";
  j["architectures"] = {arch};
  j["model_type"] = model_type;
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["head_dim"] = head_dim;
  j["num_hidden_layers"] = n_layers();
  int64_t max_heads = 0, max_kv = 0, max_inter = 0;
  for (const auto& d : layers) {
    max_heads = std::max(max_heads, d.n_heads);
    max_kv = std::max(max_kv, d.n_kv_heads);
    max_inter = std::max(max_inter, d.intermediate_size);
  }
  j["num_attention_heads"] = max_heads;
  j["num_key_value_heads"] = max_kv;
  j["intermediate_size"] = max_inter;
  if (!uniform_layers()) {
    std::vector<int64_t> h, kv, inter;
    for (const auto& d : layers) {
      h.push_back(d.n_heads);
      kv.push_back(d.n_kv_heads);
      inter.push_back(d.intermediate_size);
    }
    j["num_attention_heads_per_layer"] = h;
    j["num_key_value_heads_per_layer"] = kv;
    j["intermediate_size_per_layer"] = inter;
  }
  bool pruned = false;
  for (const auto& d : layers)
    pruned = pruned || !d.kv_origin.empty() || !d.channel_origin.empty();
  if (pruned) {
    auto list = nlohmann::json::array();
    for (const auto& d : layers) {
      nlohmann::json e = nlohmann::json::object();
      if (!d.kv_origin.empty()) e["kv_heads"] = format_index_ranges(d.kv_origin);
      if (!d.channel_origin.empty()) e["mlp_channels"] = format_index_ranges(d.channel_origin);
      list.push_back(e);
    }
    j["lorashear_original_indices"] = list;
  }
  j["hidden_act"] = "silu";
  j["rms_norm_eps"] = rms_norm_eps;
  j["rope_theta"] = rope_theta;
  j["max_position_embeddings"] = max_position_embeddings;
  j["tie_word_embeddings"] = tie_word_embeddings;
  if (!qwen2) j["attention_bias"] = attention_bias;
  if (model_type == "llama") j["mlp_bias"] = mlp_bias;
  if (model_type == "mistral")
    j["sliding_window"] = sliding_window > 0 ? nlohmann::json(sliding_window) : nlohmann::json();
  if (model_type == "qwen2" || model_type == "qwen3") j["use_sliding_window"] = false;
  if (rope_scaling.enabled()) {
    const auto& r = rope_scaling;
    nlohmann::json rs = {{"rope_type", r.type}, {"factor", r.factor}};
    if (r.type == "llama3") {
      rs["low_freq_factor"] = r.low_freq_factor;
      rs["high_freq_factor"] = r.high_freq_factor;
    }
    if (r.original_max_position_embeddings > 0)
      rs["original_max_position_embeddings"] = r.original_max_position_embeddings;
    if (r.type == "yarn") {
      rs["beta_fast"] = r.beta_fast;
      rs["beta_slow"] = r.beta_slow;
      if (r.mscale > 0) rs["mscale"] = r.mscale;
      if (r.mscale_all_dim > 0) rs["mscale_all_dim"] = r.mscale_all_dim;
      if (r.attention_factor > 0) rs["attention_factor"] = r.attention_factor;
      if (!r.truncate) rs["truncate"] = false;
    }
    j["rope_scaling"] = rs;
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["bos_token_id"] = bos_token_id;
  if (eos_token_ids.size() > 1)
    j["eos_token_id"] = eos_token_ids;
  else
    j["eos_token_id"] = eos_token_id;
  j["torch_dtype"] = torch_dtype;
  return j;
}

ModelConfig ModelConfig::from_hf_json(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) throw InputError(source + ": expected a JSON object");
  ModelConfig c;
  if (j.contains("model_type") && !j["model_type"].is_string())
    fail(source, "model_type", "expected a string, found " + j["model_type"].dump());
  c.model_type = j.value("model_type", std::string("llama"));
  if (c.model_type != "llama" && c.model_type != "qwen2" && c.model_type != "qwen3" &&
      c.model_type != "mistral")
    fail(source, "model_type",
         "unsupported architecture '" + c.model_type + "' (supported: " + supported_model_types() +
             ")");
  if (j.contains("hidden_act") && j["hidden_act"] != "silu")
    fail(source, "hidden_act", "only silu (SwiGLU) is supported, found " + j["hidden_act"].dump());
  c.vocab_size = require_int(j, "vocab_size", source);
  c.hidden_size = require_int(j, "hidden_size", source);
  const int64_t n_layers = require_int(j, "num_hidden_layers", source);
  // The per-layer table is allocated from this count: bound it before (the largest real models
  // have ~100 layers; GGUF's reader uses the same limit).
  if (n_layers <= 0 || n_layers > 100000)
    fail(source, "num_hidden_layers", "must be 1..100000, found " + std::to_string(n_layers));
  const int64_t n_heads = require_int(j, "num_attention_heads", source);
  const int64_t n_kv = optional_int(j, "num_key_value_heads", n_heads, source);
  const int64_t inter = require_int(j, "intermediate_size", source);
  if (n_heads <= 0) fail(source, "num_attention_heads", "must be positive");
  c.head_dim = optional_int(j, "head_dim", c.hidden_size / n_heads, source);
  const auto n = static_cast<size_t>(n_layers);
  auto heads = optional_list(j, "num_attention_heads_per_layer", n, source);
  auto kvs = optional_list(j, "num_key_value_heads_per_layer", n, source);
  auto inters = optional_list(j, "intermediate_size_per_layer", n, source);
  c.layers.resize(n);
  for (size_t i = 0; i < n; ++i) {
    c.layers[i].n_heads = heads.empty() ? n_heads : heads[i];
    c.layers[i].n_kv_heads = kvs.empty() ? n_kv : kvs[i];
    c.layers[i].intermediate_size = inters.empty() ? inter : inters[i];
  }
  if (j.contains("lorashear_original_indices")) {
    const std::string key = "lorashear_original_indices";
    const auto& list = j.at(key);
    if (!list.is_array() || list.size() != n)
      fail(source, key, "expected a list of " + std::to_string(n) + " objects");
    for (size_t i = 0; i < n; ++i) {
      const auto& e = list[i];
      auto& d = c.layers[i];
      const std::string where = key + "[" + std::to_string(i) + "]";
      for (const auto& [name, dst, size] :
           {std::tuple{"kv_heads", &d.kv_origin, d.n_kv_heads},
            std::tuple{"mlp_channels", &d.channel_origin, d.intermediate_size}}) {
        if (!e.is_object() || !e.contains(name)) continue;
        if (!e[name].is_string()) fail(source, where + "." + name, "expected a string of ranges");
        *dst = parse_ranges(e[name].get<std::string>(), source, where + "." + name);
        if (static_cast<int64_t>(dst->size()) != size)
          fail(source, where + "." + name,
               "lists " + std::to_string(dst->size()) + " indices for " + std::to_string(size) +
                   (std::string(name) == "kv_heads" ? " kv heads" : " channels"));
      }
    }
  }
  c.rms_norm_eps = optional_double(j, "rms_norm_eps", 1e-6, source);
  c.rope_theta = optional_double(j, "rope_theta", 10000.0, source);
  c.max_position_embeddings = optional_int(j, "max_position_embeddings", 2048, source);
  if (j.contains("tie_word_embeddings") && !j["tie_word_embeddings"].is_boolean())
    fail(source, "tie_word_embeddings", "expected true or false");
  c.tie_word_embeddings = j.value("tie_word_embeddings", false);
  for (const char* key : {"attention_bias", "mlp_bias", "use_sliding_window"})
    if (j.contains(key) && !j[key].is_boolean() && !j[key].is_null())
      fail(source, key, "expected true or false, found " + j[key].dump());
  auto flag = [&](const char* key) {
    return j.contains(key) && j[key].is_boolean() && j[key].get<bool>();
  };
  // transformers' Qwen2 always has q/k/v biases (and none on o_proj); the others follow the flag.
  c.attention_bias = c.model_type == "qwen2" || flag("attention_bias");
  c.mlp_bias = c.model_type == "llama" && flag("mlp_bias");
  c.qk_norm = c.model_type == "qwen3";
  if (c.model_type == "mistral") {
    c.sliding_window = optional_int(j, "sliding_window", 0, source);
  } else if ((c.model_type == "qwen2" || c.model_type == "qwen3") && flag("use_sliding_window")) {
    fail(source, "use_sliding_window",
         "sliding-window attention in some layers (max_window_layers) is not supported");
  }
  c.bos_token_id = optional_int(j, "bos_token_id", 1, source);
  c.eos_token_id = optional_int(j, "eos_token_id", 2, source);
  if (j.contains("eos_token_id") && j["eos_token_id"].is_array()) {
    for (const auto& x : j["eos_token_id"]) {
      if (!x.is_number_integer()) fail(source, "eos_token_id", "expected integers");
      c.eos_token_ids.push_back(x.get<int64_t>());
    }
  } else {
    c.eos_token_ids = {c.eos_token_id};
  }
  for (const char* key : {"torch_dtype", "dtype"})
    if (j.contains(key) && j[key].is_string() && c.stored_dtype.empty())
      c.stored_dtype = j[key].get<std::string>();
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null())
    c.rope_scaling = parse_rope_scaling(j["rope_scaling"], source);
  if (c.rope_scaling.type == "yarn" && c.rope_scaling.factor == 0.0) {
    if (c.rope_scaling.original_max_position_embeddings <= 0)
      fail(source, "rope_scaling.factor",
           "missing (yarn needs a factor or original_max_position_embeddings)");
    c.rope_scaling.factor = static_cast<double>(c.max_position_embeddings) /
                            static_cast<double>(c.rope_scaling.original_max_position_embeddings);
  }
  c.validate(source);
  return c;
}

ModelConfig ModelConfig::from_file(const std::string& path) {
  auto cfg = from_hf_json(io::read_json_file(path), path);
  // generation_config.json beside it may list more ids that end generation (Llama 3.x instruct
  // models list several).
  const auto gen = std::filesystem::path(path).parent_path() / "generation_config.json";
  std::error_code ec;
  if (std::filesystem::is_regular_file(gen, ec)) {
    const auto g = io::read_json_file(gen.string());
    if (g.is_object() && g.contains("eos_token_id")) {
      const auto& e = g["eos_token_id"];
      for (const auto& x : e.is_array() ? e : nlohmann::json::array({e}))
        if (x.is_number_integer() && std::find(cfg.eos_token_ids.begin(), cfg.eos_token_ids.end(),
                                               x.get<int64_t>()) == cfg.eos_token_ids.end())
          cfg.eos_token_ids.push_back(x.get<int64_t>());
    }
  }
  return cfg;
}

}  // namespace lorashear
