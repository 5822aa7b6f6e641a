// save_hf → load_model keeps a model exactly (F32) or closely (F16/BF16), for every architecture
// variant the engine supports, single-file and sharded; the writer leaves no partial files behind.
#include <sys/wait.h>
#include <unistd.h>
#include <QTemporaryDir>
#include <QtTest>

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <filesystem>
#include <fstream>

#include "checkpoint_writers.h"
#include "lorashear/errors.h"
#include "lorashear/io/files.h"
#include "lorashear/io/loader.h"
#include "lorashear/io/safetensors.h"
#include "lorashear/model/llama.h"
#include "test_support.h"

using namespace lorashear;
namespace fs = std::filesystem;

namespace {

using lorashear::test::random_model;

torch::Tensor fixed_tokens(int64_t vocab) {
  torch::manual_seed(7);
  return torch::randint(vocab, {2, 11}, torch::kInt64);
}

torch::Tensor logits_of(LlamaModelImpl& m, const torch::Tensor& tokens) {
  torch::NoGradGuard ng;
  return m.forward(tokens);
}

nlohmann::json read_json(const fs::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

std::vector<std::string> leftover_temporaries(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".tmp") out.push_back(e.path().filename().string());
  return out;
}

}  // namespace

class TestCheckpointRoundtrip : public QObject {
  Q_OBJECT

 private slots:
  void exactRoundtrip_data();
  void exactRoundtrip();
  void halfPrecisionRoundtrip_data();
  void halfPrecisionRoundtrip();
  void shardedRoundtrip();
  void loadConvertsDtype();
  void savedLayout();
  void staleStagingIsSwept();
  void resaveReplacesStaleWeights();
  void safetensorsWriterFormat();
  void cancelledSaveLeavesNothing();
  void loadReportsProgressAndCancels();
};

void TestCheckpointRoundtrip::exactRoundtrip_data() {
  QTest::addColumn<int>("variant");
  QTest::newRow("mha, tied") << 0;
  QTest::newRow("gqa, untied head") << 1;
  QTest::newRow("qwen2 q/k/v biases") << 2;
  QTest::newRow("llama attention_bias") << 3;
  QTest::newRow("non-uniform pruned layers") << 4;
}

static ModelConfig variant_config(int variant) {
  ModelConfig cfg;
  switch (variant) {
    case 0:
      cfg = ModelConfig::uniform(61, 32, 2, 4, 4, 40);
      cfg.tie_word_embeddings = true;
      break;
    case 1:
      cfg = ModelConfig::uniform(61, 48, 3, 6, 2, 72, 8);
      cfg.tie_word_embeddings = false;
      break;
    case 2:
      cfg = ModelConfig::uniform(53, 32, 2, 4, 2, 56);
      cfg.model_type = "qwen2";
      cfg.attention_bias = true;
      cfg.rope_theta = 1e6;
      cfg.rms_norm_eps = 1e-6;
      break;
    case 3:
      cfg = ModelConfig::uniform(53, 32, 2, 4, 2, 56);
      cfg.attention_bias = true;
      cfg.tie_word_embeddings = true;
      break;
    default:
      cfg = ModelConfig::uniform(67, 48, 4, 6, 2, 80, 8);
      cfg.layers[1] = {4, 4, 33};
      cfg.layers[2] = {0, 0, 17};  // attention pruned away completely
      cfg.layers[3] = {2, 1, 0};   // MLP pruned away completely
      cfg.tie_word_embeddings = false;
      break;
  }
  return cfg;
}

void TestCheckpointRoundtrip::exactRoundtrip() {
  QFETCH(int, variant);
  const ModelConfig cfg = variant_config(variant);
  auto m = random_model(cfg, 100 + variant);
  QTemporaryDir tmp;
  QVERIFY(tmp.isValid());
  const std::string dir = tmp.filePath("model").toStdString();
  save_hf(*m, nullptr, dir);

  QCOMPARE(detect_format(dir), ModelFormat::HuggingFace);
  auto loaded = load_model(dir);
  QCOMPARE(loaded.format, ModelFormat::HuggingFace);
  QCOMPARE(loaded.source_dtype, std::string("F32"));
  QVERIFY(loaded.tokenizer == nullptr);
  const auto& c2 = loaded.model->config();
  QCOMPARE(c2.model_type, cfg.model_type);
  QVERIFY(c2.layers == cfg.layers);
  QCOMPARE(c2.tie_word_embeddings, cfg.tie_word_embeddings);
  QCOMPARE(c2.attention_bias, cfg.attention_bias);
  QCOMPARE(c2.rope_theta, cfg.rope_theta);

  const auto sd1 = m->state_dict(), sd2 = loaded.model->state_dict();
  QCOMPARE(sd2.size(), sd1.size());
  for (const auto& [name, t] : sd1) {
    QVERIFY2(sd2.count(name) == 1, name.c_str());
    QVERIFY2(torch::equal(t, sd2.at(name)), name.c_str());
  }
  const auto tokens = fixed_tokens(cfg.vocab_size);
  QVERIFY(torch::equal(logits_of(*m, tokens), logits_of(*loaded.model, tokens)));
}

void TestCheckpointRoundtrip::halfPrecisionRoundtrip_data() {
  QTest::addColumn<int>("dtype");
  QTest::addColumn<QString>("name");
  QTest::addColumn<double>("tolerance");
  // Weights ~N(0, 0.02): rounding error of each weight ≈ 2^-11 (F16) / 2^-8 (BF16) relative.
  QTest::newRow("float16") << int(torch::kFloat16) << "F16" << 2e-3;
  QTest::newRow("bfloat16") << int(torch::kBFloat16) << "BF16" << 2e-2;
}

void TestCheckpointRoundtrip::halfPrecisionRoundtrip() {
  QFETCH(int, dtype);
  QFETCH(QString, name);
  QFETCH(double, tolerance);
  const ModelConfig cfg = variant_config(1);
  auto m = random_model(cfg, 5);
  QTemporaryDir tmp;
  const std::string dir = tmp.filePath("half").toStdString();
  SaveOptions so;
  so.dtype = static_cast<torch::Dtype>(dtype);
  save_hf(*m, nullptr, dir, so);
  QCOMPARE(read_json(fs::path(dir) / "config.json")["torch_dtype"].get<std::string>(),
           dtype_name(so.dtype));
  SafetensorsFile st(dir + "/model.safetensors");
  for (const auto& e : st.entries())
    QCOMPARE(e.dtype, name.toStdString());

  auto loaded = load_model(dir);  // default: float32 in memory
  QCOMPARE(loaded.source_dtype, name.toStdString());
  // Stored values are exactly the rounded weights.
  for (const auto& [pname, t] : m->state_dict())
    QVERIFY2(torch::equal(t.to(so.dtype).to(torch::kFloat32), loaded.model->parameter(pname)),
             pname.c_str());
  const auto tokens = fixed_tokens(cfg.vocab_size);
  const double diff =
      (logits_of(*m, tokens) - logits_of(*loaded.model, tokens)).abs().max().item<double>();
  QVERIFY2(diff < tolerance, qPrintable(QString("max |Δlogit| = %1").arg(diff)));
}

void TestCheckpointRoundtrip::shardedRoundtrip() {
  const ModelConfig cfg = variant_config(4);
  auto m = random_model(cfg, 11);
  QTemporaryDir tmp;
  const std::string dir = tmp.filePath("sharded").toStdString();
  SaveOptions so;
  so.max_shard_bytes = 20000;  // a few tensors per shard; the embedding gets one of its own
  save_hf(*m, nullptr, dir, so);

  QVERIFY(!fs::exists(fs::path(dir) / "model.safetensors"));
  const auto index = read_json(fs::path(dir) / "model.safetensors.index.json");
  std::set<std::string> shards;
  for (const auto& [tname, file] : index["weight_map"].items())
    shards.insert(file);
  QVERIFY2(shards.size() >= 3, qPrintable(QString::number(shards.size())));
  const std::string n = std::to_string(shards.size());
  const std::string first = "model-00001-of-" + std::string(5 - n.size(), '0') + n + ".safetensors";
  QVERIFY(shards.count(first) == 1);
  int64_t total = 0;
  for (const auto& s : shards) {
    SafetensorsFile st(dir + "/" + s);
    for (const auto& e : st.entries())
      total += e.end - e.begin;
  }
  QCOMPARE(index["metadata"]["total_size"].get<int64_t>(), total);
  QCOMPARE(index["weight_map"].size(), m->state_dict().size());

  auto loaded = load_model(dir);
  const auto tokens = fixed_tokens(cfg.vocab_size);
  QVERIFY(torch::equal(logits_of(*m, tokens), logits_of(*loaded.model, tokens)));
}

void TestCheckpointRoundtrip::loadConvertsDtype() {
  const ModelConfig cfg = variant_config(1);
  auto m = random_model(cfg, 3);
  QTemporaryDir tmp;
  const std::string dir = tmp.filePath("m").toStdString();
  save_hf(*m, nullptr, dir);
  LoadOptions lo;
  lo.model.dtype = torch::kBFloat16;
  auto loaded = load_model(dir, lo);
  for (const auto& [pname, t] : m->state_dict()) {
    const auto p = loaded.model->parameter(pname);
    QCOMPARE(p.scalar_type(), torch::kBFloat16);
    QVERIFY2(torch::equal(t.to(torch::kBFloat16), p), pname.c_str());
  }
}

void TestCheckpointRoundtrip::savedLayout() {
  ModelConfig cfg = variant_config(0);
  cfg.bos_token_id = 5;
  cfg.eos_token_id = 6;
  auto m = random_model(cfg, 1);
  QTemporaryDir tmp;
  const fs::path dir = tmp.filePath("nested/dirs/out").toStdString();  // created on demand
  save_hf(*m, nullptr, dir.string());
  QVERIFY(fs::is_regular_file(dir / "config.json"));
  QVERIFY(!fs::exists(dir / "tokenizer.model"));  // none given
  QVERIFY(leftover_temporaries(dir).empty());
  const auto gen = read_json(dir / "generation_config.json");
  QCOMPARE(gen["bos_token_id"].get<int64_t>(), 5);
  QCOMPARE(gen["eos_token_id"].get<int64_t>(), 6);
  const auto config = read_json(dir / "config.json");
  QCOMPARE(config["tie_word_embeddings"].get<bool>(), true);
  SafetensorsFile st((dir / "model.safetensors").string());
  QVERIFY(st.find("lm_head.weight") == nullptr);  // tied: the head is the embedding
  QVERIFY(st.find("model.embed_tokens.weight") != nullptr);
  QCOMPARE(st.metadata().at("format"), std::string("pt"));
}

void TestCheckpointRoundtrip::resaveReplacesStaleWeights() {
  const ModelConfig cfg = variant_config(1);
  auto a = random_model(cfg, 21), b = random_model(cfg, 22);
  QTemporaryDir tmp;
  const std::string dir = tmp.filePath("m").toStdString();
  save_hf(*a, nullptr, dir);
  SaveOptions sharded;
  sharded.max_shard_bytes = 16000;
  save_hf(*b, nullptr, dir, sharded);  // a stale model.safetensors would shadow the shards
  const auto tokens = fixed_tokens(cfg.vocab_size);
  QVERIFY(torch::equal(logits_of(*b, tokens), logits_of(*load_model(dir).model, tokens)));
  save_hf(*a, nullptr, dir);  // and back: the index and its shards go
  QVERIFY(!fs::exists(fs::path(dir) / "model.safetensors.index.json"));
  QVERIFY(!fs::exists(fs::path(dir) / "model-00001-of-00002.safetensors") &&
          !fs::exists(fs::path(dir) / "model-00001-of-00003.safetensors"));
  QVERIFY(torch::equal(logits_of(*a, tokens), logits_of(*load_model(dir).model, tokens)));
}

void TestCheckpointRoundtrip::safetensorsWriterFormat() {
  QTemporaryDir tmp;
  const std::string path = tmp.filePath("t.safetensors").toStdString();
  auto x = torch::arange(12, torch::kFloat32).view({3, 4});
  auto y = torch::tensor({1, 2, 3}, torch::kInt64);
  auto z = torch::randn({5, 2}).to(torch::kBFloat16).t();  // non-contiguous
  write_safetensors(path, {{"zeta", z}, {"alpha", x}, {"mid", y}}, {{"note", "hello"}});
  QVERIFY(!fs::exists(path + ".tmp"));

  std::ifstream in(path, std::ios::binary);
  uint64_t header_len = 0;
  in.read(reinterpret_cast<char*>(&header_len), 8);
  QCOMPARE(header_len % 8, uint64_t(0));  // data section 8-byte aligned
  std::string header(header_len, '\0');
  in.read(header.data(), header_len);
  // Keys sorted, data in the same order.
  QVERIFY(header.find("\"alpha\"") < header.find("\"mid\""));
  QVERIFY(header.find("\"mid\"") < header.find("\"zeta\""));

  SafetensorsFile st(path);
  QCOMPARE(st.metadata().at("note"), std::string("hello"));
  QCOMPARE(int(st.entries().size()), 3);
  QCOMPARE(st.entries()[0].name, std::string("alpha"));
  QVERIFY(torch::equal(st.view(*st.find("alpha")), x));
  QVERIFY(torch::equal(st.view(*st.find("mid")), y));
  QCOMPARE(st.find("zeta")->dtype, std::string("BF16"));
  QCOMPARE(st.find("zeta")->shape, (std::vector<int64_t>{2, 5}));
  QVERIFY(torch::equal(st.view(*st.find("zeta")), z));
  QVERIFY(st.find("nope") == nullptr);

  // Unwritable destination: an Error naming the path, no temporary left.
  const std::string bad = tmp.filePath("no/such/dir/t.safetensors").toStdString();
  try {
    write_safetensors(bad, {{"x", x}});
    QFAIL("expected Error");
  } catch (const Error& e) {
    QVERIFY2(std::string(e.what()).find(bad) != std::string::npos, e.what());
  }
}

void TestCheckpointRoundtrip::cancelledSaveLeavesNothing() {
  auto m = random_model(variant_config(1), 2);
  QTemporaryDir tmp;
  const fs::path dir = tmp.filePath("c").toStdString();
  std::atomic<bool> cancel{false};
  TaskContext ctx;
  ctx.cancel = &cancel;
  int reports = 0;
  ctx.on_progress = [&](const Progress&) {
    if (++reports == 3) cancel = true;  // in the middle of model.safetensors
  };
  QVERIFY_THROWS_EXCEPTION(CancelledError, save_hf(*m, nullptr, dir.string(), {}, &ctx));
  QVERIFY(!fs::exists(dir / "model.safetensors"));
  QVERIFY(!fs::exists(dir / "config.json"));
  QVERIFY(leftover_temporaries(dir).empty());
}

void TestCheckpointRoundtrip::loadReportsProgressAndCancels() {
  const ModelConfig cfg = variant_config(1);
  auto m = random_model(cfg, 4);
  QTemporaryDir tmp;
  const std::string dir = tmp.filePath("p").toStdString();
  save_hf(*m, nullptr, dir);

  std::vector<Progress> seen;
  TaskContext ctx;
  ctx.on_progress = [&](const Progress& p) { seen.push_back(p); };
  load_model(dir, {}, &ctx);
  const auto n = static_cast<int64_t>(m->state_dict().size());
  QCOMPARE(int64_t(seen.size()), n + 1);  // one per tensor, then done
  QCOMPARE(seen.front().stage, std::string("load"));
  QCOMPARE(seen.back().done, n);
  QCOMPARE(seen.back().total, n);

  std::atomic<bool> cancel{true};
  TaskContext cancelled;
  cancelled.cancel = &cancel;
  QVERIFY_THROWS_EXCEPTION(CancelledError, load_model(dir, {}, &cancelled));
}

// A run killed while writing its output leaves `.NAME.tmp-HOST-PID` behind, or — killed between
// the two renames of commit() — its previous output moved aside as `.NAME.old-HOST-PID`. The next
// output to the same place removes the first and puts the second back; folders of live processes
// or of other hosts are left alone.
void TestCheckpointRoundtrip::staleStagingIsSwept() {
  namespace fs = std::filesystem;
  QTemporaryDir tmp;
  const fs::path root = tmp.path().toStdString();
  char buf[256] = {};
  ::gethostname(buf, sizeof buf - 1);
  std::string host = buf;
  for (auto& c : host)
    if (c == '/' || c == '.') c = '_';
  const pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ::waitpid(dead, nullptr, 0);
  const std::string d = std::to_string(dead), live = std::to_string(::getpid());
  auto make = [&](const std::string& name) {
    fs::create_directories(root / name);
    std::ofstream(root / name / "marker") << name;
  };
  make(".out.old-" + host + "-" + d);     // the previous output, moved aside by a killed run
  make(".out.tmp-" + host + "-" + d);     // the killed run's unfinished output
  make(".out.tmp-" + d);                  // the same, named by an older version
  make(".out.tmp-otherhost-" + d);        // another host's run on a shared filesystem
  make(".out.tmp-" + host + "-" + live);  // a live process's
  {
    io::StagedDirectory staged((root / "out").string(), /*overwrite=*/true);
    QVERIFY(fs::exists(root / "out" / "marker"));  // put back before anything else
    QCOMPARE(test::read_all(root / "out" / "marker"), ".out.old-" + host + "-" + d);
    QVERIFY(!fs::exists(root / (".out.old-" + host + "-" + d)));
    QVERIFY(!fs::exists(root / (".out.tmp-" + host + "-" + d)));
    QVERIFY(!fs::exists(root / (".out.tmp-" + d)));
    QVERIFY(fs::exists(root / (".out.tmp-otherhost-" + d)));
    QVERIFY(fs::exists(root / (".out.tmp-" + host + "-" + live)));
    std::ofstream(fs::path(staged.path()) / "new") << "new";
    staged.commit();
  }
  QVERIFY(fs::exists(root / "out" / "new"));
  QVERIFY(!fs::exists(root / "out" / "marker"));
  // Refusing to overwrite still sees the restored output.
  make(".out.old-" + host + "-" + d);
  fs::remove_all(root / "out");
  QVERIFY_THROWS_EXCEPTION(UsageError,
                           io::StagedDirectory((root / "out").string(), /*overwrite=*/false));
  QVERIFY(fs::exists(root / "out" / "marker"));
}

QTEST_GUILESS_MAIN(TestCheckpointRoundtrip)
#include "test_checkpoint_roundtrip.moc"
