// What `lorashear plan-memory` predicts against what a training step really takes: for random
// LLaMA models of growing size (LoRA r=8 on all seven projections, AdamW), the peak RSS of two
// LoRA training steps (forward, backward, optimiser) in a fresh process, next to plan_memory's
// total for the same settings, and the seconds per step — without and with activation
// checkpointing (each in its own process). Prints figures only.
//   bench_memory_plan            the 50M and 250M models, and TinyLlama-1.1B's shape in fp32
//   bench_memory_plan --quick    the 50M model only
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "bench_common.h"
#include "lorashear/model/llama.h"
#include "lorashear/model/lora.h"
#include "lorashear/plan/memory_plan.h"
#include "lorashear/runtime.h"
#include "lorashear/train/trainer.h"
#include "lorashear/train/windows.h"

using namespace lorashear;

namespace {

struct Case {
  const char* name;
  ModelConfig config;
  int64_t batch, seq_len;
};

void reset_peak() {
  std::ofstream("/proc/self/clear_refs") << "5";
}

// In a child process: the model, LoRA and AdamW, then two steps; writes "peak_kib
// seconds_per_step".
void measure(const Case& c, bool checkpointing, int fd) {
  init_runtime();
  LlamaModel model(c.config);
  model->init_random(1);
  model->set_activation_checkpointing(checkpointing);
  LoraConfig lora;
  attach_lora(*model, lora);
  TrainOptions to;
  to.steps = 2;
  to.batch_size = c.batch;
  LoraTrainer trainer(*model, to);
  auto batch = torch::randint(0, c.config.vocab_size, {c.batch, c.seq_len}, torch::kLong);
  const int64_t before_kib = bench::status_kib("VmRSS:");
  reset_peak();
  double seconds = 0;
  for (int64_t s = 1; s <= 2; ++s) {
    const auto t0 = std::chrono::steady_clock::now();
    trainer.step(s, [&](int64_t) { return lm_loss(*model, batch); });
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  const std::string out = std::to_string(bench::status_kib("VmHWM:")) + " " +
                          std::to_string(seconds) + " " + std::to_string(before_kib) + "\n";
  (void)!write(fd, out.data(), out.size());
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  std::vector<Case> cases = {{"random 56M (h512, 8 layers, GQA 8/4)",
                              ModelConfig::uniform(32000, 512, 8, 8, 4, 1408, 64), 4, 128},
                             {"random 201M (h1024, 12 layers, GQA 16/4)",
                              ModelConfig::uniform(32000, 1024, 12, 16, 4, 2816, 64), 2, 256}};
  if (!quick) {
    const std::string tiny =
        std::string(LORASHEAR_SOURCE_DIR) + "/../shared/configs/tinyllama-1.1b/config.json";
    if (std::ifstream(tiny))
      cases.push_back({"TinyLlama-1.1B shape (random)", ModelConfig::from_file(tiny), 1, 256});
    else
      std::printf("(no %s: TinyLlama's shape skipped)\n", tiny.c_str());
  } else {
    cases.resize(1);
  }
  std::printf("%-57s %7s %13s %12s %8s %10s\n", "model, batch x seq", "params", "predicted",
              "measured", "ratio", "s/step");
  for (auto& c : cases) {
    c.config.max_position_embeddings = std::max<int64_t>(c.config.max_position_embeddings, 512);
    for (const bool checkpointing : {false, true}) {
      MemoryPlanOptions o;
      o.batch = c.batch;
      o.seq_len = c.seq_len + 1;  // the bench feeds seq_len tokens to the forward
      o.lhspg = false;
      o.checkpoint_activations = checkpointing;
      const auto plan = plan_memory(c.config, o);
      int fds[2];
      if (pipe(fds) != 0) return 1;
      const pid_t pid = fork();
      if (pid == 0) {
        close(fds[0]);
        measure(c, checkpointing, fds[1]);
        _exit(0);
      }
      close(fds[1]);
      char buf[128] = {};
      const auto n = read(fds[0], buf, sizeof(buf) - 1);
      close(fds[0]);
      int status = 0;
      waitpid(pid, &status, 0);
      long long peak_kib = 0, before_kib = 0;
      double seconds = 0;
      const std::string name = std::string(c.name) + (checkpointing ? " +ckpt" : "");
      if (n <= 0 || std::sscanf(buf, "%lld %lf %lld", &peak_kib, &seconds, &before_kib) != 3) {
        std::printf("%-46s failed (status %d)\n", name.c_str(), status);
        continue;
      }
      const double predicted = plan.per_rank_bytes / 1048576.0;
      const double measured = peak_kib / 1024.0;
      std::printf("%-46s %3lld x %4lld %6.0fM %9.0f MiB %8.0f MiB %8.2f %10.2f\n", name.c_str(),
                  static_cast<long long>(c.batch), static_cast<long long>(c.seq_len),
                  plan.parameters / 1e6, predicted, measured, measured / predicted, seconds);
      int64_t during = 0;  // what exists only while a step runs
      for (const auto& it : plan.items)
        if (it.name != "base weights" && it.name.rfind("LoRA", 0) != 0 && it.name != "runtime")
          during += it.bytes;
      std::printf(
          "    measured: %.0f MiB before the first step (weights, LoRA, runtime), +%.0f MiB "
          "during the steps (predicted +%.0f MiB)\n",
          before_kib / 1024.0, (peak_kib - before_kib) / 1024.0, during / 1048576.0);
      for (const auto& it : plan.items)
        std::printf("    %-36s %9.0f MiB  %s\n", it.name.c_str(), it.bytes / 1048576.0,
                    it.detail.c_str());
    }
  }
  return 0;
}
