// Hugging Face directory: config.json + model.safetensors (or shards listed by
// model.safetensors.index.json) + optional tokenizer.json or tokenizer.model.

#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include "io/io_internal.h"
#include "lorashear/errors.h"
#include "lorashear/io/json.h"

namespace fs = std::filesystem;

namespace lorashear::io {

namespace {

// Tensors some exporters write that carry no weights of their own.
bool ignorable(const std::string& name, const ModelConfig& cfg) {
  const std::string suffix = "rotary_emb.inv_freq";
  if (name.size() >= suffix.size() &&
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
    return true;
  // Tied checkpoints sometimes store the (identical) head anyway.
  return cfg.tie_word_embeddings && name == "lm_head.weight";
}

std::optional<SourceType> source_type(const std::string& dtype) {
  if (dtype == "F32") return SourceType::F32;
  if (dtype == "F16") return SourceType::F16;
  if (dtype == "BF16") return SourceType::BF16;
  return std::nullopt;
}

}  // namespace

LoadedModel load_hf(const std::string& dir, const LoadOptions& opts, const TaskContext* ctx) {
  const fs::path root(dir);
  const std::string config_path = (root / "config.json").string();
  ModelConfig cfg = ModelConfig::from_file(config_path);
  cfg.validate(config_path);

  // Weight files: one model.safetensors or shards named by the index.
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  std::map<std::string, std::pair<const SafetensorsFile*, const SafetensorsEntry*>> stored;
  const fs::path single = root / "model.safetensors";
  const fs::path index_path = root / "model.safetensors.index.json";
  if (fs::is_regular_file(single)) {
    files.push_back(std::make_unique<SafetensorsFile>(single.string()));
    for (const auto& e : files.back()->entries())
      stored[e.name] = {files.back().get(), &e};
  } else if (fs::is_regular_file(index_path)) {
    const std::string ip = index_path.string();
    const auto index = read_json_file(ip);
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
      throw InputError(ip + ": missing object 'weight_map'");
    std::map<std::string, std::string> weight_map;
    std::set<std::string> shard_names;
    for (const auto& [name, file] : index["weight_map"].items()) {
      if (!file.is_string())
        throw InputError(ip + ": weight_map entry '" + name + "' is not a file name");
      const auto f = file.get<std::string>();
      // Shards must sit inside the model directory.
      if (f.empty() || fs::path(f).filename().string() != f)
        throw InputError(ip + ": weight_map entry '" + name + "': invalid shard name '" + f + "'");
      weight_map[name] = f;
      shard_names.insert(f);
    }
    std::map<std::string, const SafetensorsFile*> shards;
    for (const auto& s : shard_names) {
      const auto sp = (root / s).string();
      std::error_code ec;  // a name the system refuses (longer than a file name can be) is no crash
      if (!fs::is_regular_file(sp, ec))
        throw InputError(ip + ": shard '" + s + "' listed in weight_map " +
                         (ec && ec != std::errc::no_such_file_or_directory
                              ? "cannot be opened: " + ec.message()
                              : std::string("does not exist")));
      files.push_back(std::make_unique<SafetensorsFile>(sp));
      shards[s] = files.back().get();
    }
    for (const auto& [name, shard] : weight_map) {
      const SafetensorsFile* f = shards.at(shard);
      const SafetensorsEntry* e = f->find(name);
      if (e == nullptr)
        throw InputError(f->path() + ": missing tensor '" + name + "' (listed in " + ip + ")");
      stored[name] = {f, e};
    }
    for (const auto& f : files)
      for (const auto& e : f->entries())
        if (weight_map.count(e.name) == 0 && !ignorable(e.name, cfg))
          throw InputError(f->path() + ": unexpected tensor '" + e.name + "' (not in " + ip + ")");
  } else if (fs::exists(root / "pytorch_model.bin") ||
             fs::exists(root / "pytorch_model.bin.index.json")) {
    throw InputError(dir + ": pytorch_model.bin is not supported; convert it to safetensors");
  } else {
    throw InputError(dir + ": no model.safetensors or model.safetensors.index.json");
  }
  const std::string weights_name =
      files.size() == 1 ? files[0]->path() : index_path.string();  // for whole-model messages

  // The model allocates its parameters uninitialised; everything is validated before any copy.
  std::vector<std::string> matrix_dtypes;
  for (const auto& [name, where] : stored)
    if (where.second->shape.size() == 2 && !ignorable(name, cfg))
      matrix_dtypes.push_back(where.second->dtype);
  uint64_t stored_bytes = 0;
  for (const auto& f : files)
    for (const auto& e : f->entries())
      stored_bytes += e.end - e.begin;
  check_model_fits_weights(cfg, stored_bytes, weights_name);
  LlamaModel model(cfg, model_options_for(opts, matrix_dtypes));
  const auto params = model->state_dict();
  std::vector<TensorSource> sources;
  std::string source_dtype;
  for (const auto& [name, param] : params) {
    const auto it = stored.find(name);
    if (it == stored.end()) {
      if (name == "lm_head.weight")
        throw InputError(weights_name + ": missing tensor 'lm_head.weight' (" + config_path +
                         " says tie_word_embeddings is false)");
      throw InputError(weights_name + ": missing tensor '" + name + "'");
    }
    const auto& [file, entry] = it->second;
    const auto type = source_type(entry->dtype);
    if (!type)
      throw InputError(file->path() + ": tensor '" + name + "': unsupported dtype " + entry->dtype +
                       " (expected F32, F16 or BF16)");
    if (source_dtype.empty())
      source_dtype = entry->dtype;
    else if (source_dtype != entry->dtype)
      source_dtype = "mixed";
    TensorSource s;
    s.param = name;
    s.origin = name;
    s.file = &file->mapped();
    s.owner = file->mapped_ptr();
    s.offset = entry->begin;
    s.nbytes = entry->end - entry->begin;
    s.type = *type;
    s.shape = entry->shape;
    check_source(*model, s);
    sources.push_back(std::move(s));
  }
  for (const auto& [name, where] : stored)
    if (params.count(name) == 0 && !ignorable(name, cfg))
      throw InputError(where.first->path() + ": unexpected tensor '" + name + "'");

  LoadedModel out;
  if (!opts.tokenizer_path.empty()) {
    out.tokenizer = load_tokenizer_file(opts.tokenizer_path, cfg.vocab_size);
  } else if (fs::is_regular_file(root / "tokenizer.json")) {
    // tokenizer.json first: it is what transformers' fast tokenizers (and so the model's ids) use.
    out.tokenizer = Tokenizer::from_hf_json_file((root / "tokenizer.json").string());
  } else if (fs::is_regular_file(root / "tokenizer.model")) {
    out.tokenizer = Tokenizer::from_sentencepiece_file((root / "tokenizer.model").string());
  } else if (opts.require_tokenizer) {
    throw InputError(dir + ": no tokenizer.json or tokenizer.model");
  }
  if (out.tokenizer) check_tokenizer_fits(*out.tokenizer, cfg, dir);

  copy_sources(*model, sources, opts, ctx);
  out.model = model;
  out.source_dtype = source_dtype;
  return out;
}

}  // namespace lorashear::io
