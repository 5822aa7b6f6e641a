#include "lorashear/eval/speed.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>

#include "lorashear/errors.h"

namespace lorashear {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

/// Resets the kernel's record of the peak resident set (Linux ≥ 4.0). Where it cannot, VmHWM stays
/// the process's peak so far: still an upper bound.
void reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  if (out) out << "5";
}

int64_t peak_rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::atoll(line.c_str() + 6) * 1024;
  return 0;
}

int64_t context_of(const LlamaModelImpl& m) {
  return m.config().rope_scaling.type == "dynamic" ? std::numeric_limits<int64_t>::max() / 4
                                                   : m.config().max_position_embeddings;
}

/// The prompt length both models can take with `generate` tokens after it.
int64_t fitted_prompt(const SpeedOptions& o, int64_t context, std::string* note) {
  if (o.generate >= context)
    throw UsageError("--generate " + std::to_string(o.generate) + " does not fit the context of " +
                     std::to_string(context) + " positions");
  if (o.prompt + o.generate <= context) return o.prompt;
  const int64_t p = context - o.generate;
  *note = "prompt cut from " + std::to_string(o.prompt) + " to " + std::to_string(p) +
          " tokens: with " + std::to_string(o.generate) +
          " generated tokens it fills the context of " + std::to_string(context);
  return p;
}

SpeedSample run_once(LlamaModelImpl& model, const torch::Tensor& prompt, int64_t generate,
                     const TaskContext* ctx) {
  torch::InferenceMode guard;
  const int64_t B = prompt.size(0), P = prompt.size(1);
  reset_peak_rss();
  SpeedSample s;
  auto cache = model.make_cache(B, P + generate);
  const auto device = model.options().device;
  auto sync = [&] {
    if (device.is_cuda()) torch::cuda::synchronize();
  };
  sync();
  auto t0 = Clock::now();
  auto hidden = model.hidden_states(prompt.to(device), &cache);
  auto next = model.logits(hidden.select(1, P - 1)).argmax(-1).view({B, 1});
  (void)next.cpu();  // the first token is known on the host
  s.time_to_first_token = seconds_since(t0);
  s.prefill_tokens_per_second = static_cast<double>(B * P) / s.time_to_first_token;
  task_check(ctx);
  auto t1 = Clock::now();
  for (int64_t i = 0; i < generate; ++i) {
    task_check(ctx);
    next = model.forward(next, &cache).select(1, 0).argmax(-1).view({B, 1});
    (void)next.cpu();  // each token reaches the host, as a chat front end needs it
  }
  const double decode = seconds_since(t1);
  s.decode_tokens_per_second = decode > 0 ? static_cast<double>(B * generate) / decode : 0.0;
  s.peak_rss_bytes = peak_rss_bytes();
  return s;
}

SpeedReport prepare(const LlamaModelImpl& model, const SpeedOptions& o, int64_t prompt,
                    const std::string& note) {
  SpeedReport r;
  r.prompt = prompt;
  r.generate = o.generate;
  r.batch = o.batch;
  r.parameters = model.num_parameters();
  r.weight_bytes = model.weight_bytes();
  const auto& cfg = model.config();
  const int64_t elem = torch::elementSize(model.options().dtype);
  int64_t per_position = 0;
  for (const auto& l : cfg.layers)
    per_position += 2 * l.n_kv_heads * cfg.head_dim * elem;
  r.kv_cache_bytes = per_position * (prompt + o.generate) * o.batch;
  r.note = note;
  return r;
}

torch::Tensor random_prompt(const SpeedOptions& o, int64_t prompt, int64_t vocab) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  return torch::randint(0, vocab, {o.batch, prompt}, gen, torch::kLong);
}

}  // namespace

void SpeedOptions::validate() const {
  if (prompt < 1) throw UsageError("--prompt must be at least 1 token");
  if (generate < 1) throw UsageError("--generate must be at least 1 token");
  if (batch < 1) throw UsageError("--batch must be at least 1");
  if (warmup < 0) throw UsageError("--warmup must not be negative");
  if (reps < 1) throw UsageError("--reps must be at least 1");
}

Spread spread_of(std::vector<double> v) {
  Spread s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  s.median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  s.min = v.front();
  s.max = v.back();
  return s;
}

void SpeedReport::summarise() {
  std::vector<double> p, d, t;
  peak_rss_bytes = 0;
  for (const auto& s : samples) {
    p.push_back(s.prefill_tokens_per_second);
    d.push_back(s.decode_tokens_per_second);
    t.push_back(s.time_to_first_token);
    peak_rss_bytes = std::max(peak_rss_bytes, s.peak_rss_bytes);
  }
  prefill = spread_of(p);
  decode = spread_of(d);
  ttft = spread_of(t);
}

SpeedReport measure_speed(LlamaModelImpl& model, const SpeedOptions& o, const TaskContext* ctx) {
  o.validate();
  std::string note;
  const int64_t prompt = fitted_prompt(o, context_of(model), &note);
  auto r = prepare(model, o, prompt, note);
  const auto ids = random_prompt(o, prompt, model.config().vocab_size);
  const int64_t total = o.warmup + o.reps;
  for (int64_t i = 0; i < total; ++i) {
    task_check(ctx);
    task_report(ctx, "bench", i, total, i < o.warmup ? "warm-up" : "");
    auto s = run_once(model, ids, o.generate, ctx);
    if (i >= o.warmup) r.samples.push_back(s);
  }
  task_report(ctx, "bench", total, total);
  r.summarise();
  return r;
}

SpeedComparison compare_speed(LlamaModelImpl& a, LlamaModelImpl& b, const SpeedOptions& o,
                              const TaskContext* ctx) {
  o.validate();
  std::string note;
  const int64_t prompt = fitted_prompt(o, std::min(context_of(a), context_of(b)), &note);
  SpeedComparison c;
  c.a = prepare(a, o, prompt, note);
  c.b = prepare(b, o, prompt, note);
  // Each model reads ids of its own vocabulary (a pruned model keeps its vocabulary; another
  // model may not), from the same seed.
  const auto ids_a = random_prompt(o, prompt, a.config().vocab_size);
  const auto ids_b = random_prompt(o, prompt, b.config().vocab_size);
  const int64_t total = 2 * (o.warmup + o.reps);
  int64_t done = 0;
  std::vector<double> rp, rd, rt;
  for (int64_t i = 0; i < o.warmup + o.reps; ++i) {
    // a, b then b, a: a drift of the machine's speed touches both sides alike.
    SpeedSample sa, sb;
    for (int side = 0; side < 2; ++side) {
      task_check(ctx);
      task_report(ctx, "bench", done++, total, i < o.warmup ? "warm-up" : "");
      const bool first_a = (i % 2 == 0) == (side == 0);
      if (first_a)
        sa = run_once(a, ids_a, o.generate, ctx);
      else
        sb = run_once(b, ids_b, o.generate, ctx);
    }
    if (i < o.warmup) continue;
    c.a.samples.push_back(sa);
    c.b.samples.push_back(sb);
    rp.push_back(sb.prefill_tokens_per_second / sa.prefill_tokens_per_second);
    rd.push_back(sb.decode_tokens_per_second / sa.decode_tokens_per_second);
    rt.push_back(sb.time_to_first_token / sa.time_to_first_token);
  }
  task_report(ctx, "bench", total, total);
  c.a.summarise();
  c.b.summarise();
  c.prefill_ratio = spread_of(rp);
  c.decode_ratio = spread_of(rd);
  c.ttft_ratio = spread_of(rt);
  return c;
}

nlohmann::json to_json(const Spread& s) {
  return {{"median", s.median}, {"min", s.min}, {"max", s.max}};
}

nlohmann::json to_json(const SpeedReport& r) {
  return {{"prompt", r.prompt},
          {"generate", r.generate},
          {"batch", r.batch},
          {"parameters", r.parameters},
          {"weight_bytes", r.weight_bytes},
          {"kv_cache_bytes", r.kv_cache_bytes},
          {"repetitions", r.samples.size()},
          {"prefill_tokens_per_second", to_json(r.prefill)},
          {"decode_tokens_per_second", to_json(r.decode)},
          {"time_to_first_token_seconds", to_json(r.ttft)},
          {"peak_rss_bytes", r.peak_rss_bytes},
          {"note", r.note}};
}

nlohmann::json to_json(const SpeedComparison& c) {
  return {{"a", to_json(c.a)},
          {"b", to_json(c.b)},
          {"prefill_speedup", to_json(c.prefill_ratio)},
          {"decode_speedup", to_json(c.decode_ratio)},
          {"ttft_ratio", to_json(c.ttft_ratio)}};
}

}  // namespace lorashear
