// Zero-shot scoring speed (`lorashear eval tasks`): items/s on a HellaSwag-sized task — 10,042
// items of llama.cpp's 6-line format (context, gold, 4 endings). Without --file, a stand-in is
// written from TinyStories sentences with HellaSwag's shape (a context of two sentences, endings of
// one; about 110 and 55 characters). Scored on stories260K, then on a random 50M-parameter model
// (hidden 768, 8 layers, 12 / 4 heads, MLP 2048) for the first --limit-50m items.
//   bench_tasks [--file hellaswag_val_full.txt] [--limit-50m 500] [--batch 64]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "lorashear/eval/tasks.h"
#include "lorashear/io/loader.h"
#include "lorashear/runtime.h"

using namespace lorashear;

namespace {

std::string make_standin(const std::string& text_path, const std::string& out) {
  std::ifstream in(text_path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::vector<std::string> sentences;
  std::string cur;
  for (char c : ss.str()) {
    if (c == '\n') c = ' ';
    cur += c;
    if (c == '.') {
      const auto b = cur.find_first_not_of(' ');
      if (b != std::string::npos && cur.size() - b > 20) sentences.push_back(cur.substr(b));
      cur.clear();
    }
  }
  std::ofstream f(out);
  uint64_t x = 88172645463325252ull;  // xorshift: the same file every time
  auto next = [&] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x % sentences.size();
  };
  for (int i = 0; i < 10042; ++i) {
    f << sentences[next()] << " " << sentences[next()] << "\n" << (i % 4) << "\n";
    for (int e = 0; e < 4; ++e)
      f << sentences[next()] << "\n";
  }
  return out;
}

void run(const char* label, LlamaModelImpl& model, const Tokenizer& tok, const TaskData& task,
         int64_t limit, int64_t batch) {
  TaskEvalOptions o;
  o.limit = limit;
  o.batch = batch;
  const auto r = evaluate_task(model, tok, task, o);
  std::printf("%-12s %6lld items  %.1f s  %.1f items/s  acc %.4f  acc_norm %.4f\n", label,
              static_cast<long long>(r.items), r.seconds, r.items_per_second(), r.acc, r.acc_norm);
}

}  // namespace

int main(int argc, char** argv) {
  init_runtime();
  std::string file;
  int64_t limit_50m = 500, batch = 64;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--file")) file = argv[i + 1];
    if (!std::strcmp(argv[i], "--limit-50m")) limit_50m = std::atoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--batch")) batch = std::atoll(argv[i + 1]);
  }
  const std::string shared = std::string(LORASHEAR_SOURCE_DIR) + "/../shared";
  if (file.empty())
    file =
        make_standin(shared + "/data/text/tinystories_val_subset.txt",
                     (std::filesystem::temp_directory_path() / "hellaswag-standin.txt").string());
  const auto task = load_task("hellaswag", file);
  std::printf("%s: %zu items; %s\n", file.c_str(), task.items.size(),
              runtime_description().c_str());
  auto small = load_model(shared + "/models/stories260K/stories260K.bin");
  const auto tok = Tokenizer::from_file(shared + "/models/stories260K/tok512.model");
  run("stories260K", *small.model, *tok, task, 0, batch);
  auto cfg = ModelConfig::uniform(512, 768, 8, 12, 4, 2048);
  cfg.max_position_embeddings = 1024;
  LlamaModel big(cfg);
  big->init_random(42);
  std::printf("random model: %lld parameters\n", static_cast<long long>(big->num_parameters()));
  run("50M random", *big, *tok, task, limit_50m, batch);
  return 0;
}
