// A billion-parameter model on this machine: a random model with TinyLlama-1.1B's shape, stored
// in bf16 as a Hugging Face directory, loaded as `prune` and `recover` load it (--dtype auto: the
// base weights stay bf16 and view the memory-mapped safetensors; LoRA factors and AdamW in fp32),
// LoRA r=8 on all seven projections, batch 1 × 256 tokens. For an LHSPG step (pruning period,
// 20% of the groups under projection) and a recovery step (LoRA fine-tuning), without and with
// activation checkpointing, each in a fresh process: seconds per step, peak RSS and what it is
// made of (anonymous memory vs mapped file pages), next to plan-memory's prediction.
//   bench_billion [--dir DIR] [--steps N]    DIR keeps the 2.2 GB model between runs
//                                            (default /tmp/lorashear-bench-billion)
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "bench_common.h"
#include "lorashear/io/loader.h"
#include "lorashear/plan/memory_plan.h"
#include "lorashear/prune/lhspg.h"
#include "lorashear/prune/subnet.h"
#include "lorashear/runtime.h"
#include "lorashear/train/trainer.h"
#include "lorashear/train/windows.h"

using namespace lorashear;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kSeqLen = 256;  // tokens per row; 255 predicted

std::string config_path() {
  return std::string(LORASHEAR_SOURCE_DIR) + "/../shared/configs/tinyllama-1.1b/config.json";
}

ModelConfig config() {
  auto c = ModelConfig::from_file(config_path());
  c.validate(config_path());
  return c;
}

// Random weights, written in bf16 (built in fp32 in this child process, then gone).
int make(const std::string& dir) {
  init_runtime();
  LlamaModel m(config());
  m->init_random(1);
  SaveOptions so;
  so.dtype = torch::kBFloat16;
  save_hf(*m, nullptr, dir, so);
  return 0;
}

WindowSampler data(int64_t vocab) {
  std::mt19937 rng(3);
  std::vector<int64_t> tokens(100000);
  for (auto& t : tokens)
    t = static_cast<int64_t>(rng() % static_cast<uint32_t>(vocab));
  return WindowSampler(std::move(tokens), kSeqLen - 1, 1);
}

// In a child: load, attach LoRA, run `steps` steps of `stage`; prints one line of figures.
int measure(const std::string& dir, const std::string& stage, bool ckpt, int64_t steps) {
  init_runtime();
  const auto t0 = std::chrono::steady_clock::now();
  LoadOptions lo;
  lo.keep_checkpoint_dtype = true;
  lo.map_weights = true;
  auto loaded = load_model(dir, lo);
  const double load_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto& model = *loaded.model;
  model.set_activation_checkpointing(ckpt);
  attach_lora(model, LoraConfig{});
  const auto sampler = data(model.config().vocab_size);
  std::vector<double> times;
  auto last = std::chrono::steady_clock::now();
  auto tick = [&] {
    const auto now = std::chrono::steady_clock::now();
    times.push_back(std::chrono::duration<double>(now - last).count());
    last = now;
  };
  if (stage == "lhspg") {
    const auto deps = analyze_model(model);
    PruningPlan plan;
    plan.target_ratio = 0.2;
    const auto resolved = resolve_plan(plan, deps);
    LhspgOptions o;
    o.warmup_steps = 1;
    o.periods = 1;
    o.period_steps = steps + 1;  // the first period step also selects the groups
    o.recovery_steps = 0;
    o.batch_size = 1;
    last = std::chrono::steady_clock::now();
    run_lhspg(model, deps, resolved, sampler, o, nullptr, [&](const LhspgMetrics&) { tick(); });
    times.erase(times.begin(), times.begin() + 2);  // warm-up, selection
  } else {
    TrainOptions to;
    to.steps = steps + 1;
    to.batch_size = 1;
    LoraTrainer trainer(model, to);
    for (int64_t s = 1; s <= steps + 1; ++s) {
      trainer.step(s, [&](int64_t) { return lm_loss(model, sampler.batch(s, 1)); });
      tick();
    }
    times.erase(times.begin());  // first step: allocations
  }
  std::sort(times.begin(), times.end());
  std::printf("%lld %lld %lld %.3f %.3f %.3f %.2f %s\n",
              static_cast<long long>(bench::status_kib("VmHWM:")),
              static_cast<long long>(bench::status_kib("RssAnon:")),
              static_cast<long long>(bench::status_kib("RssFile:")), times[times.size() / 2],
              times.front(), times.back(), load_s, dtype_name(model.options().dtype).c_str());
  return 0;
}

std::string run_child(char* self, const std::vector<std::string>& args) {
  int fds[2];
  if (pipe(fds) != 0) return {};
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    dup2(fds[1], 1);
    std::vector<char*> argv{self};
    for (const auto& a : args)
      argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv("/proc/self/exe", argv.data());
    _exit(127);
  }
  close(fds[1]);
  std::string out;
  char buf[256];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0)
    out.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? out : std::string();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && !std::strcmp(argv[1], "--make")) return make(argv[2]);
  if (argc == 6 && !std::strcmp(argv[1], "--measure"))
    return measure(argv[2], argv[3], !std::strcmp(argv[4], "1"), std::atoll(argv[5]));
  std::string dir = "/tmp/lorashear-bench-billion";
  int64_t steps = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--dir")) dir = argv[i + 1];
    if (!std::strcmp(argv[i], "--steps")) steps = std::max<int64_t>(1, std::atoll(argv[i + 1]));
  }
  if (!std::ifstream(config_path())) {
    std::printf("(no %s: nothing to measure)\n", config_path().c_str());
    return 0;
  }
  if (!fs::exists(fs::path(dir) / "model.safetensors")) {
    std::printf("writing a random TinyLlama-1.1B-shaped model in bf16 to %s …\n", dir.c_str());
    std::fflush(stdout);
    if (run_child(argv[0], {"--make", dir}).empty() && !fs::exists(fs::path(dir) / "config.json"))
      return 1;
  }
  const auto cfg = config();
  std::printf(
      "TinyLlama-1.1B shape (random, %.2fB parameters), bf16 base weights mapped from "
      "safetensors, LoRA r=8 (fp32) on 7 projections, batch 1 x %lld, %lld timed steps\n",
      static_cast<double>(cfg.num_parameters()) / 1e9, static_cast<long long>(kSeqLen),
      static_cast<long long>(steps));
  std::printf("%-26s %9s %11s %11s %11s %11s %9s %7s\n", "step", "predicted", "peak RSS", "anon",
              "file pages", "s/step", "(min-max)", "load s");
  for (const std::string stage : {"lhspg", "recovery"})
    for (const bool ckpt : {false, true}) {
      const auto out =
          run_child(argv[0], {"--measure", dir, stage, ckpt ? "1" : "0", std::to_string(steps)});
      long long peak = 0, anon = 0, file = 0;
      double med = 0, lo = 0, hi = 0, load_s = 0;
      char dtype[32] = {};
      const std::string name = stage + (ckpt ? " + checkpointing" : "");
      if (std::sscanf(out.c_str(), "%lld %lld %lld %lf %lf %lf %lf %31s", &peak, &anon, &file, &med,
                      &lo, &hi, &load_s, dtype) != 8) {
        std::printf("%-26s failed\n", name.c_str());
        continue;
      }
      MemoryPlanOptions o;
      o.batch = 1;
      o.seq_len = kSeqLen;
      o.weight_bytes = 2;
      o.lhspg = stage == "lhspg";
      o.checkpoint_activations = ckpt;
      o.prune_ratio = 0.2;
      o.periods = 1;
      o.mapped_weights = true;
      const auto plan = plan_memory(cfg, o);
      std::printf("%-26s %5.0f MiB %7.0f MiB %7.0f MiB %7.0f MiB %9.2f s  (%.2f-%.2f) %6.2f  %s\n",
                  name.c_str(), plan.per_rank_bytes / 1048576.0, peak / 1024.0, anon / 1024.0,
                  file / 1024.0, med, lo, hi, load_s, dtype);
      std::fflush(stdout);
    }
  std::printf(
      "(peak RSS counts the model file's pages read through the mapping; anon and file pages are "
      "at the end of the run)\n");
  return 0;
}
