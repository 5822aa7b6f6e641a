// Tokenizer speed on one core: MB/s of a text with a tokenizer.json (default Qwen3's on the
// TinyStories subset from ../shared), as the median and spread of several repetitions:
//   cold    — a freshly loaded tokenizer each time (empty word cache);
//   warm    — the same tokenizer again (every word cached);
//   stream  — encode_stream in 1 MiB windows on a fresh tokenizer.
// With Node.js and @lenml/tokenizers installed (BUILD_DIR/interop, scripts/bootstrap.sh test), it
// also runs bench/tokenize_reference.mjs and prints that implementation's figure.
//   bench_tokenize [--tokenizer FILE] [--text FILE] [--repeat N] [--node-modules DIR]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "lorashear/tokenizer/tokenizer.h"

using lorashear::Tokenizer;
namespace fs = std::filesystem;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Stats {
  double median, min, max;
};

Stats stats(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.front(), v.back()};
}

void print(const char* what, const std::vector<double>& mbps) {
  const Stats s = stats(mbps);
  std::printf("%-8s median %7.2f MB/s  (min %.2f, max %.2f, %zu runs)\n", what, s.median, s.min,
              s.max, mbps.size());
}

std::string run_capture(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0)
    out.append(buf, n);
  pclose(p);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const fs::path source(LORASHEAR_SOURCE_DIR);
  const fs::path shared = source.parent_path() / "shared";
  std::string tokenizer = (shared / "tokenizers/qwen3/tokenizer.json").string();
  std::string text_path = (shared / "data/text/tinystories_val_subset.txt").string();
  std::string node_modules = (source / "build/interop").string();
  int repeat = 7;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--tokenizer"))
      tokenizer = argv[i + 1];
    else if (!std::strcmp(argv[i], "--text"))
      text_path = argv[i + 1];
    else if (!std::strcmp(argv[i], "--repeat"))
      repeat = std::max(1, std::atoi(argv[i + 1]));
    else if (!std::strcmp(argv[i], "--node-modules"))
      node_modules = argv[i + 1];
  }
  std::ifstream in(text_path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "cannot read %s\n", text_path.c_str());
    return 1;
  }
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const double mb = text.size() / 1e6;

  double t0 = now_s();
  auto tok = Tokenizer::from_file(tokenizer);
  std::printf("tokenizer %s (%s), load %.2f s\ntext %s, %.3f MB\n", tokenizer.c_str(),
              tok->kind().c_str(), now_s() - t0, text_path.c_str(), mb);

  std::vector<double> cold, warm, stream;
  size_t count = 0;
  for (int r = 0; r < repeat; ++r) {
    auto fresh = Tokenizer::from_file(tokenizer);
    t0 = now_s();
    count = fresh->encode(text).size();
    cold.push_back(mb / (now_s() - t0));
    t0 = now_s();
    fresh->encode(text);
    warm.push_back(mb / (now_s() - t0));
  }
  for (int r = 0; r < repeat; ++r) {
    auto fresh = Tokenizer::from_file(tokenizer);
    std::istringstream s(text);
    t0 = now_s();
    fresh->encode_stream(s, [](const std::vector<int64_t>&) {});
    stream.push_back(mb / (now_s() - t0));
  }
  std::printf("%zu tokens\n", count);
  print("cold", cold);
  print("warm", warm);
  print("stream", stream);

  const fs::path script = source / "bench/tokenize_reference.mjs";
  if (!fs::exists(fs::path(node_modules) / "node_modules/@lenml/tokenizers")) {
    std::printf("reference: @lenml/tokenizers not installed in %s (skipped)\n",
                node_modules.c_str());
    return 0;
  }
  const std::string cmd = "node '" + script.string() + "' --modules '" + node_modules + "' '" +
                          tokenizer + "' '" + text_path + "' --repeat " + std::to_string(repeat) +
                          " 2>&1";
  const std::string out = run_capture(cmd);
  // {"count":…, "bytes":…, "seconds":[…], "mb_per_second_median":…}
  const auto key = out.find("\"seconds\":[");
  if (key == std::string::npos) {
    std::printf("reference: node failed: %s\n", out.c_str());
    return 0;
  }
  std::vector<double> ref;
  std::stringstream secs(out.substr(key + 11, out.find(']', key) - key - 11));
  std::string item;
  while (std::getline(secs, item, ','))
    ref.push_back(mb / std::stod(item));
  const auto cpos = out.find("\"count\":");
  std::printf("reference (@lenml/tokenizers 3.7.2 on node %s): %s tokens\n",
              run_capture("node --version | tr -d '\\n'").c_str(),
              out.substr(cpos + 8, out.find(',', cpos) - cpos - 8).c_str());
  print("node", ref);
  return 0;
}
