// `lorashear bench MODEL [--compare OTHER]`: prefill and decode speed, time to first token, peak
// memory; with --compare the two models alternate in one run and the ratios are printed.
#include <cstdio>

#include "cli_common.h"
#include "lorashear/eval/speed.h"

namespace lorashear::cli {
namespace {

struct BenchArgs : ModelArgs {
  std::string compare;
  SpeedOptions speed;
};

std::string spread(const Spread& s, const char* fmt) {
  char buf[128];
  std::string out;
  std::snprintf(buf, sizeof buf, fmt, s.median);
  out = buf;
  std::snprintf(buf, sizeof buf, fmt, s.min);
  out += std::string(" (") + buf;
  std::snprintf(buf, sizeof buf, fmt, s.max);
  out += std::string("–") + buf + ")";
  return out;
}

void print_header(const char* tag, const std::string& path, const SpeedReport& r) {
  std::printf("%s %s: %s parameters, weights %s, KV cache %s (%lld positions x batch %lld)\n", tag,
              path.c_str(), human_count(r.parameters).c_str(),
              human_bytes(static_cast<double>(r.weight_bytes)).c_str(),
              human_bytes(static_cast<double>(r.kv_cache_bytes)).c_str(),
              static_cast<long long>(r.prompt + r.generate), static_cast<long long>(r.batch));
}

int run_bench(const BenchArgs& a, const GlobalOptions& global) {
  a.speed.validate();
  auto loaded = load_model_for_cli(a, global, false);
  LoadedModel other;
  if (!a.compare.empty()) {
    ModelArgs b;
    b.model = a.compare;
    other = load_model_for_cli(b, global, false);
  }
  ProgressBar bar(global);
  auto ctx = bar.context();
  auto protocol_of = [&](int64_t prompt) {
    return "prompt " + std::to_string(prompt) + " random ids, " + std::to_string(a.speed.generate) +
           " tokens decoded greedily with the KV "
           "cache, batch " +
           std::to_string(a.speed.batch) + ", " + std::to_string(a.speed.warmup) + " warm-up + " +
           std::to_string(a.speed.reps) + " timed repetitions; median (min–max)";
  };
  if (a.compare.empty()) {
    const auto r = measure_speed(*loaded.model, a.speed, &ctx);
    bar.finish();
    const auto protocol = protocol_of(r.prompt);
    if (global.json) {
      auto j = to_json(r);
      j["model"] = a.model;
      j["protocol"] = protocol;
      print_json(j);
      return 0;
    }
    print_header("model", a.model, r);
    std::printf("%-22s %s\n", "prefill tokens/s", spread(r.prefill, "%.0f").c_str());
    std::printf("%-22s %s\n", "decode tokens/s", spread(r.decode, "%.1f").c_str());
    std::printf("%-22s %s\n", "time to first token ms",
                spread({r.ttft.median * 1e3, r.ttft.min * 1e3, r.ttft.max * 1e3}, "%.2f").c_str());
    std::printf("%-22s %s\n", "peak RSS",
                human_bytes(static_cast<double>(r.peak_rss_bytes)).c_str());
    if (!r.note.empty()) std::printf("note: %s\n", r.note.c_str());
    std::printf("protocol: %s\n", protocol.c_str());
    return 0;
  }
  const auto c = compare_speed(*loaded.model, *other.model, a.speed, &ctx);
  bar.finish();
  const auto protocol = protocol_of(c.a.prompt);
  if (global.json) {
    auto j = to_json(c);
    j["a"]["model"] = a.model;
    j["b"]["model"] = a.compare;
    j["protocol"] = protocol + "; the two models alternate, ratio per repetition (B / A)";
    print_json(j);
    return 0;
  }
  print_header("A", a.model, c.a);
  print_header("B", a.compare, c.b);
  auto ms = [](const Spread& s) { return Spread{s.median * 1e3, s.min * 1e3, s.max * 1e3}; };
  std::printf("%-22s %-28s %-28s %s\n", "", "A", "B", "B / A");
  std::printf("%-22s %-28s %-28s %s\n", "prefill tokens/s", spread(c.a.prefill, "%.0f").c_str(),
              spread(c.b.prefill, "%.0f").c_str(), spread(c.prefill_ratio, "%.3f").c_str());
  std::printf("%-22s %-28s %-28s %s\n", "decode tokens/s", spread(c.a.decode, "%.1f").c_str(),
              spread(c.b.decode, "%.1f").c_str(), spread(c.decode_ratio, "%.3f").c_str());
  std::printf("%-22s %-28s %-28s %s\n", "time to first token ms",
              spread(ms(c.a.ttft), "%.2f").c_str(), spread(ms(c.b.ttft), "%.2f").c_str(),
              spread(c.ttft_ratio, "%.3f").c_str());
  std::printf("%-22s %-28s %-28s\n", "peak RSS",
              human_bytes(static_cast<double>(c.a.peak_rss_bytes)).c_str(),
              human_bytes(static_cast<double>(c.b.peak_rss_bytes)).c_str());
  if (!c.a.note.empty()) std::printf("note: %s\n", c.a.note.c_str());
  std::printf(
      "protocol: %s; A and B alternate, the ratio is taken per repetition; peak RSS "
      "includes both models' weights\n",
      protocol.c_str());
  return 0;
}

const Register register_bench([](CLI::App& parent, GlobalOptions& global) {
  auto* app = parent.add_subcommand(
      "bench",
      "Inference speed: prefill and decode tokens/s, time to first token, peak memory "
      "(median and spread of several repetitions); --compare measures two models alternately");
  auto a = std::make_shared<BenchArgs>();
  add_model_arguments(app, *a);
  app->add_option("--compare", a->compare,
                  "Another model (e.g. the pruned one) measured alternately with MODEL");
  app->add_option("--prompt", a->speed.prompt, "Prompt tokens (cut to fit the context)")
      ->capture_default_str();
  app->add_option("--generate", a->speed.generate, "Tokens decoded after the prompt")
      ->capture_default_str();
  app->add_option("--batch", a->speed.batch, "Sequences decoded together")->capture_default_str();
  app->add_option("--reps", a->speed.reps, "Timed repetitions")->capture_default_str();
  app->add_option("--warmup", a->speed.warmup, "Untimed repetitions first")->capture_default_str();
  app->add_option("--seed", a->speed.seed, "Seed of the random prompt")->capture_default_str();
  return Command{app, [a, &global] { return run_bench(*a, global); }};
});

}  // namespace
}  // namespace lorashear::cli
