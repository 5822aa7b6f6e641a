// Dynamic knowledge recovery (LORASHEAR.md §4), two figures:
//  A. stories260K pruned by LHSPG (200 steps) at 50% and 20%: held-out TinyStories perplexity with
//     no recovery, with uniform and with adaptive category sampling at the same budget. Data:
//     tinystories_val_subset.txt cut at the paragraph nearest 90% of its bytes — the first part
//     is the pruning text and the TinyStories recovery category, the rest is held out (never
//     trained on); WikiText-2 valid and C4 are the two other categories. Instruction stage: off
//     for the comparison (it does not target TinyStories), then one adaptive run with it.
//  B. LoRA recovery throughput on a ~57M random LLaMA (dim 512, 8 layers, vocab 32000) with the
//     three categories, and whether the data loader ever made the trainer wait.
//  C. Streaming: a 1 GiB text file read through one category stream — reader throughput and the
//     process's peak RSS growth (the file is never held in memory).
//   bench_recovery [--steps 300] [--ratios 0.5,0.2] [--skip-quality] [--skip-throughput]
//                  [--skip-stream]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "bench_common.h"
#include "lorashear/data/corpus.h"
#include "lorashear/eval/perplexity.h"
#include "lorashear/io/loader.h"
#include "lorashear/io/text.h"
#include "lorashear/model/llama.h"
#include "lorashear/prune/pipeline.h"
#include "lorashear/recover/recovery.h"
#include "lorashear/runtime.h"
#include "lorashear/tokenizer/tokenizer.h"

using namespace lorashear;
namespace fs = std::filesystem;

int main(int argc, char** argv) {
  init_runtime();
  int64_t steps = 300;
  std::vector<std::string> ratios = {"0.5", "0.2"};
  bool quality = true, throughput = true, stream = true;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--steps") && i + 1 < argc) steps = std::atoll(argv[++i]);
    if (!std::strcmp(argv[i], "--ratios") && i + 1 < argc) ratios = bench::split_list(argv[++i]);
    if (!std::strcmp(argv[i], "--skip-quality")) quality = false;
    if (!std::strcmp(argv[i], "--skip-throughput")) throughput = false;
    if (!std::strcmp(argv[i], "--skip-stream")) stream = false;
  }
  const std::string shared = std::string(LORASHEAR_SOURCE_DIR) + "/../shared";
  const std::string model_path = shared + "/models/stories260K/stories260K.bin";
  const std::string stories = shared + "/data/text/tinystories_val_subset.txt";
  const std::string wiki = shared + "/data/text/wikitext2_valid.raw";
  const std::string c4 = shared + "/data/text/c4_300docs.jsonl";
  const std::string instruct = shared + "/data/instruct/instruction-data.json";
  const auto tmp = fs::temp_directory_path() / "lorashear-bench-recovery";
  fs::create_directories(tmp);

  // The held-out cut: the first blank line after 90% of the bytes.
  const std::string text = read_text_corpus(stories);
  const auto cut = text.find("\n\n", text.size() * 9 / 10);
  const std::string train_path = (tmp / "tinystories.txt").string();
  std::ofstream(train_path) << text.substr(0, cut + 2);
  const std::string heldout_text = text.substr(cut + 2);

  if (quality) {
    auto dense = load_model(model_path);
    std::shared_ptr<const Tokenizer> tok = dense.tokenizer;
    const auto heldout = tok->encode(heldout_text);
    PerplexityOptions popt;
    popt.seq_len = 128;
    auto ppl = [&](LlamaModelImpl& m) { return perplexity(m, heldout, popt).ppl; };
    std::printf(
        "A. stories260K, held-out TinyStories (last %.0f KiB of %s, %zu tokens, windows-128)\n"
        "   categories: tinystories (the first 90%%), wikitext2_valid, c4_300docs; recovery "
        "%lld steps, batch 8 x 128, LoRA r=8, lr 1e-3 cosine\n",
        heldout_text.size() / 1024.0, fs::path(stories).filename().c_str(), heldout.size(),
        static_cast<long long>(steps));
    std::printf("   dense ppl %.3f\n", ppl(*dense.model));
    RecoveryOptions base;
    base.domains = {train_path, wiki, c4};
    base.stage1.steps = steps;
    base.stage2.steps = 0;
    base.seq_len = 128;
    const auto dense_losses = RecoveryData(base, tok).losses(*dense.model, 8);
    for (const auto& ratio : ratios) {
      auto loaded = load_model(model_path);
      PruneOptions po;
      po.plan.target_ratio = std::stod(ratio);
      po.lhspg.split_budget(200);
      po.out_dir = (tmp / ("pruned-" + ratio)).string();
      po.overwrite = true;
      prune_model(loaded, train_path, po);
      std::printf("   ratio %s: pruned, no recovery: ppl %.3f\n", ratio.c_str(),
                  ppl(*load_model(po.out_dir).model));
      struct Variant {
        const char* name;
        const char* sampling;
        int64_t stage2;
      };
      for (const Variant v : {Variant{"uniform", "uniform", 0}, Variant{"adaptive", "adaptive", 0},
                              Variant{"adaptive + instruct", "adaptive", steps / 3}}) {
        auto m = load_model(po.out_dir);
        auto o = base;
        o.sampling = v.sampling;
        o.stage2.steps = v.stage2;
        o.instruct = v.stage2 ? instruct : "";
        const auto t0 = std::chrono::steady_clock::now();
        const auto rep = recover_model(*m.model, tok, o, dense_losses);
        const double secs =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::string weights;
        for (const auto& [c, w] : rep["stage1"]["history"].back()["weights"].items())
          weights += " " + c.substr(0, 10) + "=" + std::to_string(w.get<double>()).substr(0, 5);
        std::printf("   ratio %s: %-20s ppl %.3f   (final weights:%s; %.0f s)\n", ratio.c_str(),
                    v.name, ppl(*m.model), weights.c_str(), secs);
        std::fflush(stdout);
      }
    }
  }

  if (throughput) {
    auto tok_model = load_model(model_path);
    std::shared_ptr<const Tokenizer> tok = tok_model.tokenizer;
    auto cfg = ModelConfig::uniform(32000, 512, 8, 8, 4, 1408, 64);
    cfg.max_position_embeddings = 512;
    LlamaModel m(cfg);
    m->init_random(1);
    RecoveryOptions o;
    o.domains = {train_path, wiki, c4};
    o.sampling = "uniform";
    o.stage1.steps = 30;
    o.stage1.batch_size = 4;
    o.stage2.steps = 0;
    o.reestimate_every = 1000;  // throughput only
    o.val_sequences = 2;
    double tps = 0;
    int64_t n = 0;
    const auto rep = recover_model(*m, tok, o, {}, nullptr, [&](const RecoveryMetrics& x) {
      if (x.step > 5) tps += x.tokens_per_second, ++n;  // after the first steps
    });
    const auto& ld = rep["stage1"]["loader"];
    std::printf(
        "B. %.1fM-parameter random LLaMA, LoRA r=8 on all projections, batch 4 x 128: %.0f "
        "tokens/s (mean of steps 6-30); data loader: %lld stalls, %.3f s waited, start-up %.3f s\n",
        static_cast<double>(m->num_parameters()) / 1e6, n ? tps / static_cast<double>(n) : 0.0,
        ld["stalls"].get<long long>(), ld["waited_seconds"].get<double>(),
        ld["startup_seconds"].get<double>());
  }
  if (stream) {
    auto tok_model = load_model(model_path);
    std::shared_ptr<const Tokenizer> tok = tok_model.tokenizer;
    const auto big = (tmp / "big.txt").string();
    {
      std::ofstream out(big);
      int64_t written = 0;
      for (int copy = 0; written < (int64_t{1} << 30); ++copy) {
        out << "Story " << copy << ".\n\n" << text;
        written += static_cast<int64_t>(text.size()) + 16;
      }
    }
    const auto rss0 = bench::status_kib("VmRSS:"), hwm0 = bench::status_kib("VmHWM:");
    PackingOptions p;
    p.seq_len = 128;
    CategoryStream s(Category{"big", {big}, {}}, tok, p);
    const auto t0 = std::chrono::steady_clock::now();
    const int64_t n = 40000;
    for (int64_t i = 0; i < n; ++i)
      s.next();
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf(
        "C. streaming a %.2f GiB text file: %lld sequences of 129 tokens in %.1f s (%.0f tokens/s "
        "from one reader thread); RSS %.0f MiB before, %.0f MiB after; peak %.0f -> %.0f MiB\n",
        static_cast<double>(fs::file_size(big)) / (1 << 30), static_cast<long long>(n), secs,
        static_cast<double>(n * 129) / secs, rss0 / 1024.0, bench::status_kib("VmRSS:") / 1024.0,
        hwm0 / 1024.0, bench::status_kib("VmHWM:") / 1024.0);
  }
  fs::remove_all(tmp);
  return 0;
}
