#include "lorashear/eval/generate.h"

#include <algorithm>
#include <chrono>
#include <limits>

#include "lorashear/errors.h"

namespace lorashear {

double GenerateResult::decode_tokens_per_second() const {
  return decode_seconds > 0 ? static_cast<double>(tokens.size()) / decode_seconds : 0.0;
}

namespace {

int64_t choose_token(const torch::Tensor& logits, const GenerateOptions& opts, at::Generator& gen) {
  if (opts.temperature <= 0.0) return logits.argmax().item<int64_t>();
  auto probs = torch::softmax(logits.to(torch::kFloat64) / opts.temperature, -1);
  if (opts.top_p < 1.0) {
    // Keep the smallest set of most likely tokens whose mass reaches top_p.
    auto [sorted, idx] = probs.sort(/*dim=*/-1, /*descending=*/true);
    auto before = sorted.cumsum(-1) - sorted;  // mass of strictly more likely tokens
    sorted.masked_fill_(before >= opts.top_p, 0.0);
    probs = torch::zeros_like(probs).scatter_(-1, idx, sorted);
  }
  return torch::multinomial(probs, 1, /*replacement=*/false, gen).item<int64_t>();
}

}  // namespace

GenerateResult generate(LlamaModelImpl& model, const std::vector<int64_t>& prompt,
                        const GenerateOptions& opts, const std::function<void(int64_t)>& on_token,
                        const TaskContext* ctx) {
  if (prompt.empty()) throw UsageError("generation needs a prompt of at least one token");
  if (opts.temperature < 0) throw UsageError("--temperature must not be negative");
  if (!(opts.top_p > 0.0 && opts.top_p <= 1.0)) throw UsageError("--top-p must be in (0, 1]");
  const auto& cfg = model.config();
  // Dynamic RoPE scaling exists to run past max_position_embeddings.
  const int64_t context = cfg.rope_scaling.type == "dynamic"
                              ? std::numeric_limits<int64_t>::max() / 4
                              : cfg.max_position_embeddings;
  const int64_t n_prompt = static_cast<int64_t>(prompt.size());
  if (n_prompt >= context)
    throw UsageError("the prompt has " + std::to_string(n_prompt) +
                     " tokens; the model's context is " + std::to_string(context));
  for (auto id : prompt)
    if (id < 0 || id >= cfg.vocab_size)
      throw UsageError("prompt token id " + std::to_string(id) + " is outside the vocabulary");

  const auto& stop = opts.eos_ids.empty() ? cfg.eos_token_ids : opts.eos_ids;
  auto is_eos = [&](int64_t id) {
    return (opts.eos_ids.empty() && id == cfg.eos_token_id) ||
           std::find(stop.begin(), stop.end(), id) != stop.end();
  };
  torch::InferenceMode guard;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(opts.seed);
  const int64_t capacity = std::min(context, n_prompt + std::max<int64_t>(0, opts.max_new_tokens));
  auto cache = model.make_cache(1, capacity);
  GenerateResult result;

  auto t0 = std::chrono::steady_clock::now();
  auto input = torch::tensor(prompt, torch::kLong).unsqueeze(0);
  auto hidden = model.hidden_states(input, &cache);
  auto logits = model.logits(hidden.select(1, n_prompt - 1).squeeze(0)).cpu();
  auto t1 = std::chrono::steady_clock::now();
  result.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();

  while (static_cast<int64_t>(result.tokens.size()) < opts.max_new_tokens) {
    task_check(ctx);
    const int64_t next = choose_token(logits, opts, gen);
    result.tokens.push_back(next);
    if (on_token) on_token(next);
    task_report(ctx, "generate", static_cast<int64_t>(result.tokens.size()), opts.max_new_tokens);
    if (opts.stop_at_eos && is_eos(next)) break;
    if (cache.length >= capacity) break;  // context full
    auto step = torch::full({1, 1}, next, torch::kLong);
    logits = model.forward(step, &cache).view({-1}).cpu();
  }
  result.decode_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  return result;
}

}  // namespace lorashear
