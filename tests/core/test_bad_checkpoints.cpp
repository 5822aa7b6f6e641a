// Broken or inconsistent checkpoints are refused with an InputError whose one-line message names
// the file and the tensor or field at fault (the CLI shows it verbatim and exits with code 3).
#include <QTemporaryDir>
#include <QtTest>

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>

#include "checkpoint_writers.h"
#include "lorashear/errors.h"
#include "lorashear/io/loader.h"

using namespace lorashear;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const fs::path& p, const std::string& b) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(b.data(), static_cast<std::streamsize>(b.size()));
}

// Rewrites the JSON header of a safetensors file, keeping its data section.
void edit_header(const fs::path& p, const std::function<void(json&)>& edit) {
  const std::string b = read_bytes(p);
  uint64_t n = 0;
  std::memcpy(&n, b.data(), 8);
  json h = json::parse(b.substr(8, n));
  edit(h);
  std::string nh = h.dump();
  nh.append((8 - nh.size() % 8) % 8, ' ');
  const uint64_t nn = nh.size();
  write_bytes(p, std::string(reinterpret_cast<const char*>(&nn), 8) + nh + b.substr(8 + n));
}

void edit_json(const fs::path& p, const std::function<void(json&)>& edit) {
  json j = json::parse(read_bytes(p));
  edit(j);
  write_bytes(p, j.dump(2));
}

// The InputError message of loading `path`, or a marker saying what happened instead.
std::string load_error(const fs::path& path) {
  try {
    load_model(path.string());
  } catch (const InputError& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("<not an InputError: ") + e.what() + ">";
  }
  return "<loaded without error>";
}

bool mentions(const std::string& msg, std::initializer_list<std::string> needles) {
  if (msg.find('\n') != std::string::npos) return false;  // one line for the CLI
  for (const auto& n : needles)
    if (msg.find(n) == std::string::npos) return false;
  return true;
}

#define EXPECT_INPUT_ERROR(path, ...)                      \
  do {                                                     \
    const std::string msg_ = load_error(path);             \
    QVERIFY2(mentions(msg_, {__VA_ARGS__}), msg_.c_str()); \
  } while (0)

}  // namespace

class TestBadCheckpoints : public QObject {
  Q_OBJECT

 private slots:
  void init();
  void sanity();
  void missingPath();
  void truncatedSafetensors();
  void headerLengthBeyondFile();
  void headerNotJson();
  void offsetsOutOfRange();
  void overlappingOffsets();
  void unknownDtype();
  void unsupportedDtype();
  void sizeDisagreesWithShape();
  void badMetadata();
  void missingTensor();
  void missingUntiedHead();
  void unexpectedTensor();
  void ignorableTensor();
  void shapeDisagreesWithConfig();
  void badConfigJson();
  void shardIndexProblems();
  void notGguf();
  void ggufUnsupportedTensorType();
  void ggufTruncated();
  void ggufMissingTensor();
  void llama2cSizeMismatch();
  void llama2cBadHeader();

 private:
  QTemporaryDir tmp_;
  fs::path dir_;  // a valid saved model, fresh for every test
  fs::path st_;   // its model.safetensors
  ModelConfig cfg_;
};

void TestBadCheckpoints::init() {
  cfg_ = ModelConfig::uniform(61, 32, 2, 4, 2, 40);
  cfg_.tie_word_embeddings = true;
  LlamaModel m(cfg_);
  m->init_random(1);
  dir_ = fs::path(tmp_.path().toStdString()) / QTest::currentTestFunction();
  fs::remove_all(dir_);
  save_hf(*m, nullptr, dir_.string());
  st_ = dir_ / "model.safetensors";
}

void TestBadCheckpoints::sanity() {
  QCOMPARE(load_error(dir_), std::string("<loaded without error>"));
}

void TestBadCheckpoints::missingPath() {
  EXPECT_INPUT_ERROR(dir_ / "nope", "nope", "no such file");
  fs::remove(dir_ / "config.json");
  EXPECT_INPUT_ERROR(dir_, dir_.string(), "config.json");
  fs::remove(st_);
  write_bytes(dir_ / "config.json", json(cfg_.to_hf_json()).dump());
  EXPECT_INPUT_ERROR(dir_, dir_.string(), "model.safetensors");
}

void TestBadCheckpoints::truncatedSafetensors() {
  // Names sort: the last tensor of the data section is the last name.
  const std::string last = "model.norm.weight";
  fs::resize_file(st_, fs::file_size(st_) - 10);
  EXPECT_INPUT_ERROR(dir_, "model.safetensors", "'" + last + "'", "beyond");
}

void TestBadCheckpoints::headerLengthBeyondFile() {
  std::string b = read_bytes(st_);
  const uint64_t n = b.size() + 100;
  std::memcpy(b.data(), &n, 8);
  write_bytes(st_, b);
  EXPECT_INPUT_ERROR(dir_, "model.safetensors", "header length");
  write_bytes(st_, "abc");
  EXPECT_INPUT_ERROR(dir_, "model.safetensors", "8-byte");
}

void TestBadCheckpoints::headerNotJson() {
  std::string b = read_bytes(st_);
  std::memcpy(b.data() + 8, "{not json", 9);
  write_bytes(st_, b);
  EXPECT_INPUT_ERROR(dir_, "model.safetensors", "JSON");
}

void TestBadCheckpoints::offsetsOutOfRange() {
  const std::string name = "model.layers.0.self_attn.q_proj.weight";
  edit_header(st_, [&](json& h) {
    auto& off = h[name]["data_offsets"];
    const uint64_t span = off[1].get<uint64_t>() - off[0].get<uint64_t>();
    off = {1u << 30, (1u << 30) + span};
  });
  EXPECT_INPUT_ERROR(dir_, "model.safetensors", "'" + name + "'", "beyond");
}

void TestBadCheckpoints::overlappingOffsets() {
  const std::string a = "model.layers.0.input_layernorm.weight";
  const std::string b = "model.layers.1.input_layernorm.weight";
  edit_header(st_, [&](json& h) { h[b]["data_offsets"] = h[a]["data_offsets"]; });
  EXPECT_INPUT_ERROR(dir_, "model.safetensors", "'" + a + "'", "'" + b + "'", "overlap");
}

void TestBadCheckpoints::unknownDtype() {
  const std::string name = "model.norm.weight";
  edit_header(st_, [&](json& h) { h[name]["dtype"] = "F17"; });
  EXPECT_INPUT_ERROR(dir_, "model.safetensors", "'" + name + "'", "F17");
}

void TestBadCheckpoints::unsupportedDtype() {
  // A valid safetensors dtype of the same width that a model cannot hold.
  const std::string name = "model.norm.weight";
  edit_header(st_, [&](json& h) { h[name]["dtype"] = "I32"; });
  EXPECT_INPUT_ERROR(dir_, "model.safetensors", "'" + name + "'", "I32");
}

void TestBadCheckpoints::sizeDisagreesWithShape() {
  const std::string name = "model.layers.1.mlp.up_proj.weight";
  edit_header(st_, [&](json& h) { h[name]["shape"] = {40, 31}; });
  EXPECT_INPUT_ERROR(dir_, "model.safetensors", "'" + name + "'", "[40, 31]", "bytes");
}

void TestBadCheckpoints::badMetadata() {
  edit_header(st_, [&](json& h) { h["__metadata__"] = {{"format", 3}}; });
  EXPECT_INPUT_ERROR(dir_, "model.safetensors", "__metadata__", "format");
}

void TestBadCheckpoints::missingTensor() {
  const std::string name = "model.layers.1.mlp.up_proj.weight";
  edit_header(st_, [&](json& h) { h.erase(name); });
  EXPECT_INPUT_ERROR(dir_, "model.safetensors", "missing tensor '" + name + "'");
}

void TestBadCheckpoints::missingUntiedHead() {
  edit_json(dir_ / "config.json", [](json& j) { j["tie_word_embeddings"] = false; });
  EXPECT_INPUT_ERROR(dir_, "model.safetensors", "'lm_head.weight'", "tie_word_embeddings");
}

void TestBadCheckpoints::unexpectedTensor() {
  edit_header(st_, [&](json& h) {
    h["model.layers.0.mlp.extra.weight"] = {
        {"dtype", "F32"}, {"shape", {0}}, {"data_offsets", {0, 0}}};
  });
  EXPECT_INPUT_ERROR(dir_, "model.safetensors",
                     "unexpected tensor 'model.layers.0.mlp.extra.weight'");
}

void TestBadCheckpoints::ignorableTensor() {
  // Older exporters store RoPE tables; tied checkpoints may repeat the head.
  edit_header(st_, [&](json& h) {
    h["model.layers.0.self_attn.rotary_emb.inv_freq"] = {
        {"dtype", "F32"}, {"shape", {0}}, {"data_offsets", {0, 0}}};
  });
  QCOMPARE(load_error(dir_), std::string("<loaded without error>"));
}

void TestBadCheckpoints::shapeDisagreesWithConfig() {
  edit_json(dir_ / "config.json", [](json& j) { j["intermediate_size"] = 48; });
  // Parameters are checked in name order: down_proj of layer 0 comes first.
  EXPECT_INPUT_ERROR(dir_, "model.safetensors", "'model.layers.0.mlp.down_proj.weight'",
                     "expected shape [32, 48], found [32, 40]");
}

void TestBadCheckpoints::badConfigJson() {
  write_bytes(dir_ / "config.json", "{\"vocab_size\": 61,");
  EXPECT_INPUT_ERROR(dir_, "config.json", "JSON");
  write_bytes(dir_ / "config.json", R"({"vocab_size": 61})");
  EXPECT_INPUT_ERROR(dir_, "config.json", "hidden_size");
}

void TestBadCheckpoints::shardIndexProblems() {
  LlamaModel m(cfg_);
  m->init_random(2);
  SaveOptions so;
  so.max_shard_bytes = 4000;
  fs::remove_all(dir_);
  save_hf(*m, nullptr, dir_.string(), so);
  QCOMPARE(load_error(dir_), std::string("<loaded without error>"));
  const auto index = dir_ / "model.safetensors.index.json";
  json saved = json::parse(read_bytes(index));
  // A tensor the index places in a shard that lacks it.
  edit_json(index, [](json& j) {
    j["weight_map"]["model.norm.weight"] = j["weight_map"]["model.embed_tokens.weight"];
  });
  EXPECT_INPUT_ERROR(dir_, "model.safetensors.index.json", "'model.norm.weight'");
  // A shard that does not exist.
  write_bytes(index, saved.dump());
  edit_json(index,
            [](json& j) { j["weight_map"]["model.norm.weight"] = "model-gone.safetensors"; });
  EXPECT_INPUT_ERROR(dir_, "model-gone.safetensors");
  // A shard path escaping the directory.
  write_bytes(index, saved.dump());
  edit_json(index, [](json& j) { j["weight_map"]["model.norm.weight"] = "../x.safetensors"; });
  EXPECT_INPUT_ERROR(dir_, "model.safetensors.index.json", "../x.safetensors");
}

void TestBadCheckpoints::notGguf() {
  const auto p = dir_ / "x.gguf";
  torch::manual_seed(3);
  const auto noise = torch::randint(256, {4096}, torch::kUInt8);
  write_bytes(p, std::string(static_cast<const char*>(noise.data_ptr()), 4096));
  QCOMPARE(detect_format(p.string()), ModelFormat::Gguf);
  EXPECT_INPUT_ERROR(p, "x.gguf", "GGUF");
}

void TestBadCheckpoints::ggufUnsupportedTensorType() {
  test::GgufWriter w;
  w.add_llama_config(cfg_);
  w.add_tensor("token_embd.weight", torch::zeros({61, 32}), test::GgufWriter::F32);
  // Q4_K super-blocks: 144 bytes per 256 values; the bytes do not matter.
  w.add_tensor_bytes("blk.0.attn_q.weight", {256, 32}, test::GgufWriter::Q4_K,
                     std::string(32 * 144, '\0'));
  const auto p = dir_ / "quant.gguf";
  w.write(p.string());
  EXPECT_INPUT_ERROR(p, "quant.gguf", "'blk.0.attn_q.weight'", "Q4_K");
}

void TestBadCheckpoints::ggufTruncated() {
  LlamaModel m(cfg_);
  m->init_random(4);
  test::GgufWriter w;
  w.add_llama_config(cfg_);
  w.add_llama_tensors(*m, test::GgufWriter::F32, false);
  const auto p = dir_ / "m.gguf";
  const std::string full = w.bytes();
  write_bytes(p, full);
  QCOMPARE(load_error(p), std::string("<loaded without error>"));
  write_bytes(p, full.substr(0, full.size() - 64));  // data of the last tensor cut short
  EXPECT_INPUT_ERROR(p, "m.gguf", "'blk.1.ffn_down.weight'", "beyond");
  write_bytes(p, full.substr(0, 200));  // inside the metadata
  EXPECT_INPUT_ERROR(p, "m.gguf", "truncated");
}

void TestBadCheckpoints::ggufMissingTensor() {
  LlamaModel m(cfg_);
  m->init_random(5);
  test::GgufWriter w;
  w.add_llama_config(cfg_);
  w.add_llama_tensors(*m, test::GgufWriter::F32, false);
  w.add_tensor("blk.0.extra.weight", torch::zeros({32}), test::GgufWriter::F32);
  const auto p = dir_ / "extra.gguf";
  w.write(p.string());
  EXPECT_INPUT_ERROR(p, "extra.gguf", "unexpected tensor 'blk.0.extra.weight'");

  ModelConfig three = cfg_;  // metadata says 3 blocks, tensors hold 2
  three.layers.push_back(three.layers[0]);
  test::GgufWriter w3;
  w3.add_llama_config(three);
  w3.add_llama_tensors(*m, test::GgufWriter::F32, false);
  const auto p3 = dir_ / "missing.gguf";
  w3.write(p3.string());
  EXPECT_INPUT_ERROR(p3, "missing.gguf", "missing tensor 'blk.2.");
}

void TestBadCheckpoints::llama2cSizeMismatch() {
  LlamaModel m(cfg_);
  m->init_random(6);
  const auto p = dir_ / "model.bin";
  test::write_llama2c(p.string(), *m, 16, true);
  QCOMPARE(load_error(p), std::string("<loaded without error>"));
  fs::resize_file(p, fs::file_size(p) - 4);
  EXPECT_INPUT_ERROR(p, "model.bin", "does not match its header", "dim 32");
  fs::resize_file(p, fs::file_size(p) + 8);
  EXPECT_INPUT_ERROR(p, "model.bin", "does not match its header");
}

void TestBadCheckpoints::llama2cBadHeader() {
  const auto p = dir_ / "bad.bin";
  write_bytes(p, "short");
  EXPECT_INPUT_ERROR(p, "bad.bin", "28-byte");
  const int32_t h[7] = {30, 64, 2, 4, 2, 61, 16};  // dim 30 is not a multiple of 4 heads
  write_bytes(p, std::string(reinterpret_cast<const char*>(h), sizeof(h)) + std::string(400, '\0'));
  EXPECT_INPUT_ERROR(p, "bad.bin", "n_heads");
}

QTEST_GUILESS_MAIN(TestBadCheckpoints)
#include "test_bad_checkpoints.moc"
