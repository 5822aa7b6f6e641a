// Real speed-up of pruning: a random 50M-parameter LLaMA (hidden 768, 8 layers, 12 heads / 4 kv
// heads, MLP 2048, stories260K's 512-piece tokenizer) is pruned by 50% through the pipeline
// (`magnitude`, uniform: every layer the same size, a short LoRA budget), then the dense and the
// pruned model are measured alternately (lorashear/eval/speed.h, what `lorashear bench --compare`
// runs). Both models stay in DIR so the CLI can repeat the measurement:
//   bench_speedup [--dir DIR] [--ratio 0.5] [--reps 5] [--prompt 512] [--generate 128]
//   lorashear bench DIR/dense --compare DIR/pruned
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "bench_common.h"
#include "lorashear/eval/speed.h"
#include "lorashear/io/loader.h"
#include "lorashear/prune/pipeline.h"
#include "lorashear/runtime.h"

using namespace lorashear;

int main(int argc, char** argv) {
  init_runtime();
  std::string dir = (std::filesystem::temp_directory_path() / "lorashear-bench-speedup").string();
  double ratio = 0.5;
  SpeedOptions speed;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--dir")) dir = argv[i + 1];
    if (!std::strcmp(argv[i], "--ratio")) ratio = std::atof(argv[i + 1]);
    if (!std::strcmp(argv[i], "--reps")) speed.reps = std::atoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--prompt")) speed.prompt = std::atoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--generate")) speed.generate = std::atoll(argv[i + 1]);
  }
  const std::string shared = std::string(LORASHEAR_SOURCE_DIR) + "/../shared";
  const std::string text = shared + "/data/text/tinystories_val_subset.txt";
  const auto tok = Tokenizer::from_file(shared + "/models/stories260K/tok512.model");
  std::filesystem::create_directories(dir);
  const std::string dense_dir = dir + "/dense", pruned_dir = dir + "/pruned";
  if (!std::filesystem::exists(dense_dir + "/config.json")) {
    auto cfg = ModelConfig::uniform(512, 768, 8, 12, 4, 2048);
    cfg.max_position_embeddings = 1024;
    LlamaModel m(cfg);
    m->init_random(42);
    save_hf(*m, tok.get(), dense_dir);
  }
  if (!std::filesystem::exists(pruned_dir + "/config.json")) {
    auto loaded = load_model(dense_dir);
    PruneOptions o;
    o.plan.target_ratio = ratio;
    o.plan.uniform = true;
    o.method = "magnitude";
    o.analyze = false;
    o.lhspg.split_budget(20);
    o.lhspg.batch_size = 2;
    o.eval_windows = 4;
    o.out_dir = pruned_dir;
    const auto r = prune_model(loaded, text, o);
    std::printf("pruned %.1f%% of the parameters (%lld -> %lld)\n",
                100 * r["parameters"]["removed_ratio"].get<double>(),
                r["parameters"]["before"].get<long long>(),
                r["parameters"]["after"].get<long long>());
  }
  auto a = load_model(dense_dir);
  auto b = load_model(pruned_dir);
  const auto c = compare_speed(*a.model, *b.model, speed);
  std::printf("%s\n", runtime_description().c_str());
  std::printf("dense  %lld params, weights %.1f MiB; pruned %lld params, weights %.1f MiB\n",
              static_cast<long long>(c.a.parameters), c.a.weight_bytes / 1048576.0,
              static_cast<long long>(c.b.parameters), c.b.weight_bytes / 1048576.0);
  std::printf("prompt %lld, generate %lld, batch %lld, %zu alternating repetitions\n",
              static_cast<long long>(c.a.prompt), static_cast<long long>(c.a.generate),
              static_cast<long long>(c.a.batch), c.a.samples.size());
  auto line = [](const char* what, const Spread& a, const Spread& b, const Spread& r) {
    std::printf(
        "%-16s dense %10.1f (%.1f-%.1f)  pruned %10.1f (%.1f-%.1f)  speed-up %.3f "
        "(%.3f-%.3f)\n",
        what, a.median, a.min, a.max, b.median, b.min, b.max, r.median, r.min, r.max);
  };
  line("prefill tok/s", c.a.prefill, c.b.prefill, c.prefill_ratio);
  line("decode tok/s", c.a.decode, c.b.decode, c.decode_ratio);
  std::printf("time to first token: dense %.1f ms, pruned %.1f ms (ratio %.3f)\n",
              c.a.ttft.median * 1e3, c.b.ttft.median * 1e3, c.ttft_ratio.median);
  std::printf("again from the CLI: lorashear bench %s --compare %s\n", dense_dir.c_str(),
              pruned_dir.c_str());
  return 0;
}
