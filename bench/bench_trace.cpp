// Time and peak memory to trace a model from its configuration alone (meta device, no weights)
// and run the dependency analysis. Each configuration is measured in a fresh process.
//   bench_trace                     Llama-2-7B and Llama-2-70B shapes, each in a child process
//   bench_trace --measure 7b|70b|CONFIG.json [--lora-rank R]
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "bench_common.h"
#include "lorashear/graph/dependency.h"
#include "lorashear/runtime.h"

using namespace lorashear;

namespace {

using bench::status_kib;

ModelConfig preset(const std::string& name) {
  if (name == "7b") {
    auto c = ModelConfig::uniform(32000, 4096, 32, 32, 32, 11008, 128);
    c.max_position_embeddings = 4096;
    return c;
  }
  if (name == "70b") {
    auto c = ModelConfig::uniform(32000, 8192, 80, 64, 8, 28672, 128);
    c.max_position_embeddings = 4096;
    return c;
  }
  std::ifstream in(name);
  if (!in) throw std::runtime_error(name + ": not 7b, 70b or a readable config.json");
  nlohmann::json j;
  in >> j;
  return ModelConfig::from_hf_json(j, name);
}

double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int measure(const std::string& name, int64_t lora_rank) {
  init_runtime();
  const auto cfg = preset(name);
  const double before = status_kib("VmRSS:") / 1024.0;
  LoraConfig lora;
  lora.rank = lora_rank;
  auto t0 = std::chrono::steady_clock::now();
  const auto trace = trace_config(cfg, lora_rank > 0 ? &lora : nullptr);
  const double trace_s = since(t0);
  t0 = std::chrono::steady_clock::now();
  const auto deps = analyze_dependencies(trace);
  const double analyze_s = since(t0);
  const double peak = status_kib("VmHWM:") / 1024.0;
  std::printf(
      "%-5s %3lld layers, %.2fB params%s: %zu operators, %zu node groups, %lld prunable variable "
      "groups; trace %.2f s + analysis %.2f s = %.2f s; peak RSS %.0f MiB (%.0f MiB before "
      "tracing: LibTorch and the process)\n",
      name.c_str(), static_cast<long long>(cfg.n_layers()), deps.total.params / 1e9,
      lora_rank > 0 ? (", LoRA r=" + std::to_string(lora_rank)).c_str() : "", trace.nodes.size(),
      deps.node_groups.size(), static_cast<long long>(deps.prunable_variable_groups()), trace_s,
      analyze_s, trace_s + analyze_s, peak, before);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc >= 3 && !std::strcmp(argv[1], "--measure")) {
      const int64_t rank =
          argc >= 5 && !std::strcmp(argv[3], "--lora-rank") ? std::atoll(argv[4]) : 0;
      return measure(argv[2], rank);
    }
    for (const char* name : {"7b", "70b"}) {
      for (const char* rank : {"0", "8"}) {
        const pid_t pid = fork();
        if (pid == 0) {
          execl("/proc/self/exe", argv[0], "--measure", name, "--lora-rank", rank, nullptr);
          _exit(127);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return 1;
      }
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_trace: %s\n", e.what());
    return 1;
  }
}
