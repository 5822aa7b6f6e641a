// GGUF export of a ~1.1B-parameter random LLaMA (TinyLlama-1.1B's shapes: ../shared/configs, or
// the same numbers built in when ../shared is absent): wall time and the peak resident memory
// during the export (absolute, and above the RSS just before it, which holds the float32 model),
// f16 and q8_0 alternated, with file sizes. The export converts ≤ 16 MiB of rows at a time, so
// the figure above the model stays in the tens of MiB whatever the model's size.
//   bench_export_gguf [--reps N] [--dir TMPDIR]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "bench_common.h"
#include "lorashear/io/gguf.h"
#include "lorashear/io/loader.h"
#include "lorashear/runtime.h"
#include "lorashear/tokenizer/tokenizer.h"

using namespace lorashear;
namespace fs = std::filesystem;
using bench::status_kib;

namespace {

// Resets VmHWM to the current RSS (Linux ≥ 4.0).
void reset_peak() {
  std::ofstream("/proc/self/clear_refs") << "5";
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  init_runtime();
  int reps = 3;
  fs::path dir = fs::temp_directory_path();
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--reps")) reps = std::max(1, std::atoi(argv[i + 1]));
    if (!std::strcmp(argv[i], "--dir")) dir = argv[i + 1];
  }
  const fs::path src(LORASHEAR_SOURCE_DIR);
  const auto config = src.parent_path() / "shared/configs/tinyllama-1.1b/config.json";
  ModelConfig cfg;
  if (fs::exists(config)) {
    cfg = ModelConfig::from_file(config.string());
  } else {
    cfg = ModelConfig::uniform(32000, 2048, 22, 32, 4, 5632, 64);
    cfg.max_position_embeddings = 2048;
  }
  const auto tok = Tokenizer::from_sentencepiece_file(
      (src / "resources/demo-model/tokenizer.model").string());  // padded to 32000 on export
  auto t0 = std::chrono::steady_clock::now();
  LlamaModel model(cfg);
  model->init_random(1);
  std::printf(
      "model: TinyLlama-1.1B shapes, %.3fB parameters, float32 in memory (%.2f GiB), "
      "random weights in %.1f s\n",
      model->num_parameters() / 1e9, model->weight_bytes() / double(1 << 30),
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  std::printf("RSS with the model: %.0f MiB\n\n", status_kib("VmRSS:") / 1024.0);

  std::map<std::string, std::vector<double>> secs, extra, absolute;
  std::map<std::string, uint64_t> bytes;
  const auto out = dir / ("lorashear-bench-" + std::to_string(getpid()) + ".gguf");
  for (int r = 0; r < reps; ++r) {
    // Alternate which dtype goes first, so drift in the machine's speed hits both.
    std::vector<GgufDtype> order = {GgufDtype::F16, GgufDtype::Q8_0};
    if (r % 2) std::reverse(order.begin(), order.end());
    for (const auto dtype : order) {
      GgufSaveOptions o;
      o.dtype = dtype;
      reset_peak();
      const double before = status_kib("VmRSS:") / 1024.0;
      t0 = std::chrono::steady_clock::now();
      const auto report = save_gguf(*model, tok.get(), out.string(), o);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double peak = status_kib("VmHWM:") / 1024.0;
      const auto name = gguf_dtype_name(dtype);
      secs[name].push_back(s);
      extra[name].push_back(peak - before);
      absolute[name].push_back(peak);
      bytes[name] = report.bytes;
      std::printf("rep %d %-5s %6.2f s  peak RSS %.0f MiB (+%.0f MiB over the RSS before)  %s\n",
                  r + 1, name.c_str(), s, peak, peak - before, report.architecture.c_str());
      fs::remove(out);
    }
  }
  std::printf("\n%-5s %9s %8s %8s %13s %13s %10s\n", "dtype", "median s", "min s", "max s",
              "peak RSS MiB", "+MiB (med)", "file");
  for (const auto& [name, v] : secs) {
    std::printf("%-5s %9.2f %8.2f %8.2f %13.0f %13.0f %6.2f GiB\n", name.c_str(), median(v),
                *std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end()),
                median(absolute[name]), median(extra[name]), bytes[name] / double(1 << 30));
  }
  return 0;
}
