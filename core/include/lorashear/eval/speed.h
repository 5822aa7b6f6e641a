#pragma once
// Inference speed that a user can trust (`lorashear bench`, the app's Compare tab): prefill
// tokens/s, decode tokens/s with the KV cache, time to first token, peak RSS, weight and KV-cache
// bytes; warm-up, several repetitions, median and spread; two models compared by alternating them
// in one run, the ratio taken per repetition.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "lorashear/model/llama.h"
#include "lorashear/task.h"

namespace lorashear {

struct SpeedOptions {
  int64_t prompt = 512;    ///< prompt tokens per sequence (cut to fit the context with `generate`)
  int64_t generate = 128;  ///< tokens decoded one at a time after the prompt
  int64_t batch = 1;       ///< sequences decoded together
  int64_t warmup = 1;      ///< untimed repetitions first
  int64_t reps = 5;        ///< timed repetitions
  uint64_t seed = 0;       ///< the random prompt's ids
  /// Throws UsageError naming the option.
  void validate() const;
};

/// Median and range of a set of figures.
struct Spread {
  double median = 0.0, min = 0.0, max = 0.0;
};
Spread spread_of(std::vector<double> values);

struct SpeedSample {
  double prefill_tokens_per_second = 0.0;
  double decode_tokens_per_second = 0.0;
  double time_to_first_token = 0.0;  ///< seconds: prefill and the first token chosen
  int64_t peak_rss_bytes = 0;        ///< the process's peak resident memory during this sample
};

struct SpeedReport {
  int64_t prompt = 0, generate = 0, batch = 0;  ///< as measured (prompt possibly cut)
  int64_t parameters = 0;
  int64_t weight_bytes = 0;
  int64_t kv_cache_bytes = 0;  ///< at prompt + generate positions for the whole batch
  std::vector<SpeedSample> samples;
  Spread prefill, decode, ttft;
  int64_t peak_rss_bytes = 0;  ///< the largest of the samples'
  std::string note;            ///< e.g. why the prompt was cut
  void summarise();
};

/// Measures `model` alone.
SpeedReport measure_speed(LlamaModelImpl& model, const SpeedOptions& options,
                          const TaskContext* ctx = nullptr);

struct SpeedComparison {
  SpeedReport a, b;
  /// b over a, per repetition (a and b alternate; the order flips every repetition).
  Spread prefill_ratio, decode_ratio, ttft_ratio;
};

/// Measures `a` and `b` alternately with the same prompt length (fitting both contexts).
SpeedComparison compare_speed(LlamaModelImpl& a, LlamaModelImpl& b, const SpeedOptions& options,
                              const TaskContext* ctx = nullptr);

nlohmann::json to_json(const Spread& s);
nlohmann::json to_json(const SpeedReport& r);
nlohmann::json to_json(const SpeedComparison& c);

}  // namespace lorashear
