// Held-out perplexity of stories260K pruned by LHSPG and by each baseline, at the same plan and
// step budget. Text: ../shared/data/text/tinystories_val_subset.txt; its last 10% of tokens are
// held out (windows-128 protocol), the rest is training data.
//   bench_prune [--steps N] [--ratios 0.2,0.5] [--methods lhspg,magnitude,...]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "bench_common.h"
#include "lorashear/io/loader.h"
#include "lorashear/prune/pipeline.h"
#include "lorashear/runtime.h"

using namespace lorashear;

int main(int argc, char** argv) {
  init_runtime();
  int64_t steps = 400;
  std::vector<std::string> ratios = {"0.2", "0.5"};
  std::vector<std::string> methods = {"lhspg", "magnitude", "random", "taylor", "loraprune"};
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--steps")) steps = std::atoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--ratios")) ratios = bench::split_list(argv[i + 1]);
    if (!std::strcmp(argv[i], "--methods")) methods = bench::split_list(argv[i + 1]);
  }
  const std::string shared = std::string(LORASHEAR_SOURCE_DIR) + "/../shared";
  const std::string model = shared + "/models/stories260K/stories260K.bin";
  const std::string text = shared + "/data/text/tinystories_val_subset.txt";
  const auto tmp = std::filesystem::temp_directory_path() / "lorashear-bench-prune";
  std::printf(
      "stories260K, %lld steps (LHSPG: 5%% warm-up, 35%% in 4 periods, 60%% recovery; "
      "baselines: pruned at once, then all steps LoRA), batch 8 x 128, LoRA r=8, lr 1e-3\n",
      static_cast<long long>(steps));
  for (const auto& ratio : ratios) {
    for (const auto& method : methods) {
      auto loaded = load_model(model);
      PruneOptions o;
      o.plan.target_ratio = std::stod(ratio);
      o.method = method;
      o.lhspg.split_budget(steps);
      o.out_dir = (tmp / (method + "-" + ratio)).string();
      o.overwrite = true;
      const auto t0 = std::chrono::steady_clock::now();
      const auto r = prune_model(loaded, text, o);
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf("ratio %s  %-10s removed %.1f%%  held-out ppl %.3f -> %.3f  (%s)  %.0f s\n",
                  ratio.c_str(), method.c_str(),
                  100 * r["parameters"]["removed_ratio"].get<double>(),
                  r["ppl"]["before"].get<double>(), r["ppl"]["after"].get<double>(),
                  r["ppl"]["protocol"].get<std::string>().c_str(), secs);
      std::fflush(stdout);
    }
  }
  std::filesystem::remove_all(tmp);
  return 0;
}
