// Perplexity throughput (tokens/s) of `eval ppl`: stories260K on TinyStories (windows-512, 200
// windows, batch 8) and a random-weight LLaMA of about 50M parameters on random tokens.
//   bench_ppl [--shared DIR] [--threads N] [--windows N] [--only stories|random]
//             [--profile TRACE.json]
// --profile writes a Chrome trace of the stories260K run (LibTorch's autograd profiler).
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include <torch/csrc/autograd/profiler_legacy.h>

#include "lorashear/eval/perplexity.h"
#include "lorashear/io/loader.h"
#include "lorashear/io/text.h"
#include "lorashear/runtime.h"

using namespace lorashear;

int main(int argc, char** argv) {
  std::string shared = std::string(LORASHEAR_SOURCE_DIR) + "/../shared";
  int threads = 0;
  int64_t windows = 200;
  std::string profile, only;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--shared")) shared = argv[i + 1];
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--windows")) windows = std::atoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--profile")) profile = argv[i + 1];
    if (!std::strcmp(argv[i], "--only")) only = argv[i + 1];
  }
  init_runtime(threads);
  std::printf("%s\n", runtime_description().c_str());

  const auto model_path = shared + "/models/stories260K/stories260K.bin";
  const auto text_path = shared + "/data/text/tinystories_val_subset.txt";
  if (only == "random") {
  } else if (std::filesystem::exists(model_path) && std::filesystem::exists(text_path)) {
    auto loaded = load_model(model_path);
    auto tokens = loaded.tokenizer->encode(read_text_corpus(text_path));
    PerplexityOptions o;
    o.seq_len = 512;
    o.max_windows = windows;
    o.batch = 8;
    perplexity(*loaded.model, tokens, PerplexityOptions{512, 8, 8});  // warm-up: 8 windows
    std::unique_ptr<torch::autograd::profiler::RecordProfile> trace;
    if (!profile.empty())
      trace = std::make_unique<torch::autograd::profiler::RecordProfile>(profile);
    auto r = perplexity(*loaded.model, tokens, o);
    trace.reset();
    std::printf("stories260K  %s: ppl %.4f, %.2f s, %.0f tokens/s\n", r.protocol().c_str(), r.ppl,
                r.seconds, r.tokens_per_second);
  } else {
    std::printf("stories260K  skipped: %s not found\n", model_path.c_str());
  }

  if (only == "stories") return 0;
  auto cfg = ModelConfig::uniform(32000, 512, 8, 8, 4, 1408);
  cfg.max_position_embeddings = 2048;
  LlamaModel m(cfg);
  m->init_random(1);
  auto t = torch::randint(0, cfg.vocab_size, {512 * 16}, torch::kLong);
  std::vector<int64_t> tokens(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
  PerplexityOptions o;
  o.seq_len = 512;
  o.batch = 8;
  perplexity(*m, tokens, PerplexityOptions{512, 8, 8});  // warm-up
  auto r = perplexity(*m, tokens, o);
  std::printf("random %.1fM  %s: %.2f s, %.0f tokens/s\n", m->num_parameters() / 1e6,
              r.protocol().c_str(), r.seconds, r.tokens_per_second);
  return 0;
}
