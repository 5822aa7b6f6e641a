// Peak resident memory while loading a ~50M-parameter LLaMA (dim 512, 8 layers, 8 heads, 4 kv
// heads, intermediate 1408, vocab 32000) from safetensors, as a multiple of its weight bytes.
//   bench_load_memory            writes the model to a temp dir, then measures a fresh process
//   bench_load_memory --measure DIR
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "bench_common.h"
#include "lorashear/io/loader.h"
#include "lorashear/runtime.h"

using namespace lorashear;

namespace {

using bench::status_kib;

}  // namespace

int main(int argc, char** argv) {
  init_runtime();
  if (argc == 3 && !std::strcmp(argv[1], "--measure")) {
    const double before = status_kib("VmRSS:") / 1024.0;
    auto t0 = std::chrono::steady_clock::now();
    auto loaded = load_model(argv[2]);
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double peak = status_kib("VmHWM:") / 1024.0;
    const double weights = loaded.model->weight_bytes() / (1024.0 * 1024.0);
    std::printf("model %.1fM parameters, weights %.1f MiB, loaded in %.2f s\n",
                loaded.model->num_parameters() / 1e6, weights, secs);
    std::printf("RSS before load %.1f MiB, peak %.1f MiB\n", before, peak);
    std::printf("peak / weights = %.2fx; (peak - before) / weights = %.2fx\n", peak / weights,
                (peak - before) / weights);
    return 0;
  }
  auto dir =
      std::filesystem::temp_directory_path() / ("lorashear-bench-" + std::to_string(getpid()));
  {
    auto cfg = ModelConfig::uniform(32000, 512, 8, 8, 4, 1408);
    LlamaModel m(cfg);
    m->init_random(1);
    save_hf(*m, nullptr, dir.string());
  }
  const std::string cmd = std::string("\"") + argv[0] + "\" --measure \"" + dir.string() + "\"";
  const int rc = std::system(cmd.c_str());
  std::filesystem::remove_all(dir);
  return rc == 0 ? 0 : 1;
}
