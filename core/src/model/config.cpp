#include "lorashear/model/config.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <stdexcept>
#include <tuple>

#include "lorashear/errors.h"
#include "lorashear/io/json.h"

namespace lorashear {

namespace {

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

std::vector<int64_t> parse_index_ranges(const std::string& text, const std::string& source,
                                        const std::string& field) {
  return parse_ranges(text, source, field);
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
  if (rms_norm_eps <= 0) fail(source, "rms_norm_eps", "must be positive");
  if (rope_theta <= 0) fail(source, "rope_theta", "must be positive");
  if (max_position_embeddings <= 0) fail(source, "max_position_embeddings", "must be positive");
}

int64_t ModelConfig::layer_attention_parameters(int64_t i) const {
  const auto& d = layers.at(static_cast<size_t>(i));
  const int64_t q = d.n_heads * head_dim, kv = d.n_kv_heads * head_dim;
  int64_t n = hidden_size * (q + 2 * kv) + q * hidden_size;
  if (attention_bias) n += q + 2 * kv;
  return n;
}

int64_t ModelConfig::layer_mlp_parameters(int64_t i) const {
  return 3 * hidden_size * layers.at(static_cast<size_t>(i)).intermediate_size;
}

int64_t ModelConfig::num_parameters() const {
  int64_t n = vocab_size * hidden_size * (tie_word_embeddings ? 1 : 2) + hidden_size;
  for (int64_t i = 0; i < n_layers(); ++i)
    n += layer_attention_parameters(i) + layer_mlp_parameters(i) + 2 * hidden_size;
  return n;
}

nlohmann::json ModelConfig::to_hf_json(const std::string& torch_dtype) const {
  nlohmann::json j;
  const bool qwen = model_type == "qwen2";
  j["architectures"] = {qwen ? "Qwen2ForCausalLM" : "LlamaForCausalLM"};
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
  if (!qwen) j["attention_bias"] = attention_bias;
  j["bos_token_id"] = bos_token_id;
  j["eos_token_id"] = eos_token_id;
  j["torch_dtype"] = torch_dtype;
  return j;
}

ModelConfig ModelConfig::from_hf_json(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) throw InputError(source + ": expected a JSON object");
  ModelConfig c;
  c.model_type = j.value("model_type", std::string("llama"));
  if (c.model_type != "llama" && c.model_type != "qwen2" && c.model_type != "mistral")
    fail(source, "model_type",
         "unsupported architecture '" + c.model_type + "' (supported: llama, mistral, qwen2)");
  if (c.model_type == "mistral") c.model_type = "llama";
  c.vocab_size = require_int(j, "vocab_size", source);
  c.hidden_size = require_int(j, "hidden_size", source);
  const int64_t n_layers = require_int(j, "num_hidden_layers", source);
  if (n_layers <= 0) fail(source, "num_hidden_layers", "must be positive");
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
  c.attention_bias = c.model_type == "qwen2" ? true : j.value("attention_bias", false);
  c.bos_token_id = optional_int(j, "bos_token_id", 1, source);
  c.eos_token_id = optional_int(j, "eos_token_id", 2, source);
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null())
    fail(source, "rope_scaling", "RoPE scaling is not supported yet");
  c.validate(source);
  return c;
}

ModelConfig ModelConfig::from_file(const std::string& path) {
  return from_hf_json(io::read_json_file(path), path);
}

}  // namespace lorashear
