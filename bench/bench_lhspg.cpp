// LHSPG overhead and memory on a ~50M-parameter random LLaMA (dim 512, 8 layers, 8 heads, 4 kv
// heads, intermediate 1408, vocab 32000), LoRA r=8 on all seven projections, batch 4 x 128:
//   - time per step during the pruning period (trial point, projection, B resets) / time per step
//     of the warm-up (plain LoRA training) — goal <= 1.15;
//   - peak RSS of an LHSPG run vs one full-parameter AdamW fine-tuning step (separate processes).
//   bench_lhspg            both, each measurement in a fresh process
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>

#include "bench_common.h"
#include "lorashear/prune/lhspg.h"
#include "lorashear/prune/subnet.h"
#include "lorashear/runtime.h"

using namespace lorashear;

namespace {

using bench::status_kib;

LlamaModel make_model() {
  auto cfg = ModelConfig::uniform(32000, 512, 8, 8, 4, 1408, 64);
  cfg.max_position_embeddings = 512;
  LlamaModel m(cfg);
  m->init_random(1);
  return m;
}

WindowSampler data() {
  std::mt19937 rng(3);
  std::vector<int64_t> tokens(200000);
  for (auto& t : tokens)
    t = static_cast<int64_t>(rng() % 32000);
  return WindowSampler(std::move(tokens), 128, 1);
}

int lhspg(double epsilon) {
  init_runtime();
  auto m = make_model();
  LoraConfig lc;
  attach_lora(*m, lc);
  const auto deps = analyze_model(*m);
  PruningPlan plan;
  plan.target_ratio = 0.3;
  const auto resolved = resolve_plan(plan, deps);
  LhspgOptions o;
  o.warmup_steps = 12;
  o.periods = 1;
  o.period_steps = 12;
  o.batch_size = 4;
  o.epsilon = epsilon;
  std::vector<double> warm, period;
  auto last = std::chrono::steady_clock::now();
  run_lhspg(*m, deps, resolved, data(), o, nullptr, [&](const LhspgMetrics& x) {
    const auto now = std::chrono::steady_clock::now();
    const double dt = std::chrono::duration<double>(now - last).count();
    last = now;
    // Skip the first warm-up step (allocations) and the selection step.
    if (x.period == 0 && x.step > 2) warm.push_back(dt);
    if (x.period == 1 && x.step > o.warmup_steps + 1) period.push_back(dt);
  });
  auto mean = [](const std::vector<double>& v) {
    double s = 0;
    for (double x : v)
      s += x;
    return s / static_cast<double>(v.size());
  };
  std::printf(
      "LHSPG (epsilon %.1f) on %.1fM params, LoRA r=8, batch 4x128, %lld groups to remove: "
      "plain LoRA step %.3f s, LHSPG step %.3f s, ratio %.3f; peak RSS %.0f MiB\n",
      epsilon, static_cast<double>(deps.total.params) / 1e6,
      static_cast<long long>(resolved.total_groups), mean(warm), mean(period),
      mean(period) / mean(warm), status_kib("VmHWM:") / 1024.0);
  return 0;
}

int full_step() {
  init_runtime();
  auto m = make_model();
  m->train();
  std::vector<torch::Tensor> params;
  for (auto& [name, t] : m->all_parameters()) {
    t.set_requires_grad(true);
    params.push_back(t);
  }
  torch::optim::AdamW opt(params, torch::optim::AdamWOptions(1e-4));
  const auto d = data();
  const auto t0 = std::chrono::steady_clock::now();
  for (int step = 0; step < 2; ++step) {
    opt.zero_grad();
    lm_loss(*m, d.batch(step, 4)).backward();
    opt.step();
  }
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf(
      "full-parameter AdamW fine-tuning, same model and batch: %.3f s per step; peak RSS "
      "%.0f MiB\n",
      dt / 2, status_kib("VmHWM:") / 1024.0);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // epsilon 0.9 (default): groups reach the half-space boundary early in the period; epsilon 0:
  // every group keeps shrinking until the period's last step (the most projection work).
  if (argc == 2 && !std::strcmp(argv[1], "--lhspg")) return lhspg(0.9);
  if (argc == 2 && !std::strcmp(argv[1], "--lhspg-eps0")) return lhspg(0.0);
  if (argc == 2 && !std::strcmp(argv[1], "--full")) return full_step();
  for (const char* which : {"--lhspg", "--lhspg-eps0", "--full"}) {
    const pid_t pid = fork();
    if (pid == 0) {
      execl("/proc/self/exe", argv[0], which, nullptr);
      _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return 1;
  }
  return 0;
}
