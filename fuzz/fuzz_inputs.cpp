// The per-parser entry points of the fuzz targets and their regression test (see fuzz_inputs.h).
// Most parsers take a path: the input is written to a file in a private folder (on /dev/shm when
// there is one, so each execution stays in memory) and the parser reads it from there.

#include "fuzz_inputs.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "lorashear/errors.h"
#include "lorashear/eval/tasks.h"
#include "lorashear/io/gguf.h"
#include "lorashear/io/loader.h"
#include "lorashear/io/safetensors.h"
#include "lorashear/model/config.h"
#include "lorashear/model/llama.h"
#include "lorashear/model/lora.h"
#include "lorashear/prune/plan.h"
#include "lorashear/run_log.h"
#include "lorashear/tokenizer/tokenizer.h"

namespace fs = std::filesystem;

namespace lorashear::fuzz {

namespace {

// Removes the private folder when the process ends normally (libFuzzer's -runs / -max_total_time
// end with exit()); a crashed run leaves it for inspection.
struct WorkDir {
  fs::path path;
  WorkDir() {
    std::error_code ec;
    const fs::path base =
        fs::is_directory("/dev/shm", ec) ? fs::path("/dev/shm") : fs::temp_directory_path();
    path = base / ("lorashear-fuzz-" + std::to_string(::getpid()));
    fs::create_directories(path);
  }
  ~WorkDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

const fs::path& work_dir() {
  static const WorkDir dir;
  return dir.path;
}

// An empty sub-folder of the work folder (emptied so that no file of an earlier input is found
// beside this one's).
fs::path fresh_dir(const std::string& name) {
  const fs::path d = work_dir() / name;
  std::error_code ec;
  fs::remove_all(d, ec);
  fs::create_directories(d);
  return d;
}

std::string write_file(const fs::path& path, const uint8_t* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) throw std::runtime_error("fuzz: cannot write " + path.string());
  return path.string();
}

// The engine's own errors are the expected way to refuse an input; anything else propagates.
void refusal_ok(const std::function<void()>& body) {
  try {
    body();
  } catch (const lorashear::Error&) {
  }
}

const char* const kSample = "Once upon a time, Lily saw  a big\tdog. \xC3\xA9\xE2\x82\xAC 123!";

void exercise(const Tokenizer& tok) {
  const auto ids = tok.encode(kSample, true, true);
  (void)tok.decode(ids);
  (void)tok.vocab_size();
}

// A LLaMA small enough to build on every execution (the fuzzed file describes the rest).
ModelConfig tiny_config() {
  ModelConfig c = ModelConfig::uniform(32, 8, 1, 2, 2, 16);
  c.model_type = "llama";
  c.max_position_embeddings = 64;
  return c;
}

const char* const kTinyConfigJson =
    R"({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 32,
        "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 2, "intermediate_size": 16, "max_position_embeddings": 64,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false})";

// ---- targets
// ---------------------------------------------------------------------------------------

void parse_safetensors(const uint8_t* data, size_t size) {
  const auto path = write_file(fresh_dir("safetensors") / "model.safetensors", data, size);
  refusal_ok([&] {
    SafetensorsFile f(path);
    for (const auto& e : f.entries()) {
      (void)f.find(e.name);
      refusal_ok([&] { (void)f.view(e).contiguous(); });  // reads every byte of the tensor
    }
  });
}

void parse_hf_index(const uint8_t* data, size_t size) {
  const auto dir = fresh_dir("hf");
  const std::string cfg = kTinyConfigJson;
  write_file(dir / "config.json", reinterpret_cast<const uint8_t*>(cfg.data()), cfg.size());
  write_file(dir / "model.safetensors.index.json", data, size);
  refusal_ok([&] { (void)load_model(dir.string()); });
}

// A whole Hugging Face folder, so that what one file declares is checked against the others
// (config.json's shapes against the weights, the index against its shards, the tokenizer files
// against each other). The input is a list of records: a byte naming the file
// (kHfFolderFiles[byte % count]), its length as 4 bytes little-endian, its bytes (cut at the end of
// the input); a later record of the same file replaces it. scripts/fuzz.sh packs real folders so.
const char* const kHfFolderFiles[] = {"config.json",
                                      "model.safetensors",
                                      "model.safetensors.index.json",
                                      "model-00001-of-00002.safetensors",
                                      "model-00002-of-00002.safetensors",
                                      "tokenizer.json",
                                      "tokenizer.model",
                                      "tokenizer_config.json",
                                      "generation_config.json"};

void parse_hf_folder(const uint8_t* data, size_t size) {
  const auto dir = fresh_dir("hf_folder");
  constexpr size_t kFiles = sizeof(kHfFolderFiles) / sizeof(kHfFolderFiles[0]);
  size_t at = 0;
  while (size - at >= 5) {
    const char* name = kHfFolderFiles[data[at] % kFiles];
    const uint32_t declared =
        static_cast<uint32_t>(data[at + 1]) | static_cast<uint32_t>(data[at + 2]) << 8 |
        static_cast<uint32_t>(data[at + 3]) << 16 | static_cast<uint32_t>(data[at + 4]) << 24;
    at += 5;
    const size_t n = std::min<size_t>(declared, size - at);
    write_file(dir / name, data + at, n);
    at += n;
  }
  refusal_ok([&] {
    auto loaded = load_model(dir.string());
    if (loaded.tokenizer) exercise(*loaded.tokenizer);
  });
}

void parse_gguf(const uint8_t* data, size_t size) {
  const auto path = write_file(fresh_dir("gguf") / "model.gguf", data, size);
  refusal_ok([&] { (void)gguf_metadata(path); });
  refusal_ok([&] {
    auto loaded = load_model(path);
    if (loaded.tokenizer) exercise(*loaded.tokenizer);
  });
}

void parse_llama2c(const uint8_t* data, size_t size) {
  const auto path = write_file(fresh_dir("llama2c") / "model.bin", data, size);
  refusal_ok([&] { (void)load_model(path); });
}

void parse_tokenizer_bin(const uint8_t* data, size_t size) {
  const auto path = write_file(fresh_dir("tokbin") / "tokenizer.bin", data, size);
  refusal_ok([&] { exercise(*Tokenizer::from_llama2c_file(path, 0)); });
}

void parse_spm(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  refusal_ok([&] { exercise(*Tokenizer::from_serialized_proto(bytes, "fuzz.model")); });
}

void parse_tokenizer_json(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  refusal_ok([&] { exercise(*Tokenizer::from_hf_json(text, "tokenizer.json")); });
}

void parse_config_json(const uint8_t* data, size_t size) {
  const auto path = write_file(fresh_dir("config") / "config.json", data, size);
  refusal_ok([&] {
    const auto cfg = ModelConfig::from_file(path);
    cfg.validate(path);
    (void)cfg.num_parameters();
    (void)cfg.to_hf_json().dump();
  });
}

void parse_plan(const uint8_t* data, size_t size) {
  const auto path = write_file(fresh_dir("plan") / "plan.json", data, size);
  refusal_ok([&] { (void)PruningPlan::load(path).to_json().dump(); });
}

// Input: adapter_config.json, then (after the first NUL byte, which JSON text never holds)
// adapter_model.safetensors.
void parse_lora_adapter(const uint8_t* data, size_t size) {
  const auto dir = fresh_dir("lora");
  const auto* nul = static_cast<const uint8_t*>(std::memchr(data, 0, size));
  const size_t json_size = nul ? static_cast<size_t>(nul - data) : size;
  write_file(dir / "adapter_config.json", data, json_size);
  if (nul) write_file(dir / "adapter_model.safetensors", nul + 1, size - json_size - 1);
  refusal_ok([&] {
    LlamaModel model(tiny_config());
    load_lora_adapter(*model, dir.string());
  });
}

// The task name (which chooses the context template) comes from the input's size, so that real
// task files stay valid seeds.
void parse_task(const uint8_t* data, size_t size) {
  static const char* const kNames[] = {"hellaswag",     "lambada",    "arc_easy",
                                       "arc_challenge", "piqa",       "winogrande",
                                       "boolq",         "openbookqa", "custom"};
  const char* name = kNames[size % (sizeof(kNames) / sizeof(kNames[0]))];
  const auto path = write_file(fresh_dir("task") / "task.jsonl", data, size);
  refusal_ok([&] { (void)load_task(name, path); });
}

void parse_metrics_jsonl(const uint8_t* data, size_t size) {
  const auto dir = fresh_dir("metrics");
  write_file(dir / "metrics.jsonl", data, size);
  refusal_ok([&] {
    RunFollower follower(dir.string());
    double sum = 0;
    follower.poll([&](const RunRecord& r) {
      sum += r.step + r.time + r.value("loss") + static_cast<double>(r.has("lr"));
      for (const auto& n : r.nested)
        sum += n.value + static_cast<double>(n.object.size() + n.key.size());
    });
    (void)follower.status();
  });
}

}  // namespace

const std::vector<Target>& targets() {
  static const std::vector<Target> all = {
      {"safetensors", parse_safetensors},
      {"hf_index", parse_hf_index},
      {"hf_folder", parse_hf_folder},
      {"gguf", parse_gguf},
      {"llama2c", parse_llama2c},
      {"tokenizer_bin", parse_tokenizer_bin},
      {"spm", parse_spm},
      {"tokenizer_json", parse_tokenizer_json},
      {"config_json", parse_config_json},
      {"plan", parse_plan},
      {"lora_adapter", parse_lora_adapter},
      {"task", parse_task},
      {"metrics_jsonl", parse_metrics_jsonl},
  };
  return all;
}

const Target* find_target(const std::string& name) {
  for (const auto& t : targets())
    if (name == t.name) return &t;
  return nullptr;
}

}  // namespace lorashear::fuzz
