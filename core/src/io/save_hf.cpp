// Export to the Hugging Face layout: weights first, config.json last, so a directory that has a
// config.json is complete even when a save is interrupted.

#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <set>

#include "io/io_internal.h"
#include "lorashear/errors.h"

namespace fs = std::filesystem;

namespace lorashear {

namespace {

// Shard files named by an existing index, so a re-save can remove the ones it no longer uses.
std::set<std::string> previous_shards(const fs::path& index_path) {
  std::set<std::string> out;
  std::error_code ec;
  if (!fs::is_regular_file(index_path, ec)) return out;
  try {
    const auto j = nlohmann::json::parse(io::read_small_file(index_path.string()));
    for (const auto& [name, file] : j.at("weight_map").items())
      if (file.is_string()) {
        const auto f = file.get<std::string>();
        if (!f.empty() && fs::path(f).filename().string() == f) out.insert(f);
      }
  } catch (const std::exception&) {
    // A broken old index is simply replaced.
  }
  return out;
}

std::string shard_name(size_t i, size_t n) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "model-%05zu-of-%05zu.safetensors", i + 1, n);
  return buf;
}

}  // namespace

void save_hf(const LlamaModelImpl& model, const Tokenizer* tokenizer, const std::string& dir,
             const SaveOptions& opts, const TaskContext* ctx) {
  if (opts.dtype != torch::kFloat32 && opts.dtype != torch::kFloat16 &&
      opts.dtype != torch::kBFloat16)
    throw UsageError("save: dtype must be float32, float16 or bfloat16");
  const fs::path root(dir);
  std::error_code ec;
  // A staging folder deleted from outside is not made again: the run that staged it is told.
  if (io::shown_path(dir) != dir && !fs::is_directory(root, ec))
    throw Error(io::shown_path(dir) + ": the folder being written, " + dir + ", vanished");
  fs::create_directories(root, ec);
  if (ec || !fs::is_directory(root))
    throw Error(dir + ": cannot create directory: " + (ec ? ec.message() : "not a directory"));

  const ModelConfig& cfg = model.config();
  auto sd = model.state_dict();
  if (cfg.tie_word_embeddings) sd.erase("lm_head.weight");
  const std::map<std::string, std::string> meta = {{"format", "pt"}};
  const auto elem = static_cast<int64_t>(c10::elementSize(opts.dtype));
  const fs::path single = root / "model.safetensors";
  const fs::path index_path = root / "model.safetensors.index.json";
  const auto old_shards = previous_shards(index_path);

  std::set<std::string> written;
  if (opts.max_shard_bytes <= 0) {
    io::write_safetensors_as(single.string(), {sd.begin(), sd.end()}, opts.dtype, meta, ctx);
    written.insert(single.filename().string());
    fs::remove(index_path, ec);
  } else {
    // Greedy packing in name order; a tensor larger than the limit gets a shard of its own.
    std::vector<std::vector<std::pair<std::string, torch::Tensor>>> shards(1);
    int64_t bytes = 0, total = 0;
    for (const auto& [name, t] : sd) {
      const int64_t nb = t.numel() * elem;
      if (!shards.back().empty() && bytes + nb > opts.max_shard_bytes) {
        shards.emplace_back();
        bytes = 0;
      }
      shards.back().emplace_back(name, t);
      bytes += nb;
      total += nb;
    }
    nlohmann::json weight_map = nlohmann::json::object();
    for (size_t i = 0; i < shards.size(); ++i) {
      task_check(ctx);
      const std::string name = shard_name(i, shards.size());
      io::write_safetensors_as((root / name).string(), shards[i], opts.dtype, meta, ctx);
      written.insert(name);
      for (const auto& [tname, t] : shards[i])
        weight_map[tname] = name;
    }
    const nlohmann::json index = {{"metadata", {{"total_size", total}}},
                                  {"weight_map", weight_map}};
    io::write_file_atomic(index_path.string(), index.dump(2) + "\n");
    // load_model prefers model.safetensors over an index: a stale one must go.
    fs::remove(single, ec);
  }
  for (const auto& f : old_shards)
    if (written.count(f) == 0) fs::remove(root / f, ec);

  task_check(ctx);
  if (tokenizer != nullptr && tokenizer->backend() == Tokenizer::Backend::HfBpe) {
    // The original tokenizer.json and tokenizer_config.json; a stale tokenizer.model would
    // describe another tokenizer.
    for (const auto& [name, text] : tokenizer->hf_files())
      io::write_file_atomic((root / name).string(), text);
    fs::remove(root / "tokenizer.model", ec);
  } else if (tokenizer != nullptr) {
    // load_hf prefers tokenizer.json: one left from an earlier export would shadow this model.
    fs::remove(root / "tokenizer.json", ec);
    io::write_file_atomic((root / "tokenizer.model").string(), tokenizer->serialized_model_proto());
    // What transformers' AutoTokenizer reads beside tokenizer.model (as Llama 2's files say it).
    auto piece = [&](int64_t id) -> nlohmann::json {
      return id >= 0 && id < tokenizer->vocab_size() ? nlohmann::json(tokenizer->piece(id))
                                                     : nlohmann::json(nullptr);
    };
    const nlohmann::json tok = {{"tokenizer_class", "LlamaTokenizer"},
                                {"bos_token", piece(tokenizer->bos_id())},
                                {"eos_token", piece(tokenizer->eos_id())},
                                {"unk_token", piece(tokenizer->unk_id())},
                                {"pad_token", nullptr},
                                {"add_bos_token", true},
                                {"add_eos_token", false},
                                {"legacy", false},
                                {"clean_up_tokenization_spaces", false},
                                {"model_max_length", cfg.max_position_embeddings}};
    io::write_file_atomic((root / "tokenizer_config.json").string(), tok.dump(2) + "\n");
  }
  const nlohmann::json gen = {{"_from_model_config", true},
                              {"bos_token_id", cfg.bos_token_id},
                              {"eos_token_id", cfg.eos_token_id}};
  io::write_file_atomic((root / "generation_config.json").string(), gen.dump(2) + "\n");
  io::write_file_atomic((root / "config.json").string(),
                        cfg.to_hf_json(dtype_name(opts.dtype)).dump(2) + "\n");
}

}  // namespace lorashear
