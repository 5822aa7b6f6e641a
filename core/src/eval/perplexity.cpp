#include "lorashear/eval/perplexity.h"

#include <chrono>
#include <cmath>
#include <sstream>

#include "lorashear/dist/distributed.h"
#include "lorashear/errors.h"

namespace lorashear {

std::string PerplexityResult::protocol() const {
  std::ostringstream s;
  s << "windows-" << (windows > 0 ? predictions / windows + 1 : 0) << ", " << windows
    << " windows, " << predictions << " predictions, no BOS";
  return s.str();
}

PerplexityResult perplexity(LlamaModelImpl& model, const std::vector<int64_t>& tokens,
                            const PerplexityOptions& opts, const TaskContext* ctx) {
  const int64_t L = opts.seq_len;
  if (L < 2) throw UsageError("--seq-len must be at least 2, got " + std::to_string(L));
  if (opts.batch < 1)
    throw UsageError("--batch must be at least 1, got " + std::to_string(opts.batch));
  if (opts.max_windows < 0) throw UsageError("--max-windows must not be negative");
  if (L > model.config().max_position_embeddings)
    throw UsageError("--seq-len " + std::to_string(L) + " exceeds the model's context of " +
                     std::to_string(model.config().max_position_embeddings) + " positions");
  int64_t windows = static_cast<int64_t>(tokens.size()) / L;
  if (windows == 0)
    throw UsageError("the text has " + std::to_string(tokens.size()) +
                     " tokens, fewer than one window of " + std::to_string(L));
  if (opts.max_windows > 0) windows = std::min(windows, opts.max_windows);

  const auto vocab = model.config().vocab_size;
  for (int64_t i = 0; i < windows * L; ++i) {
    if (tokens[i] < 0 || tokens[i] >= vocab)
      throw InputError("token id " + std::to_string(tokens[i]) + " at position " +
                       std::to_string(i) + " is outside the model's vocabulary of " +
                       std::to_string(vocab));
  }

  torch::InferenceMode guard;
  const auto t0 = std::chrono::steady_clock::now();
  auto all = torch::from_blob(const_cast<int64_t*>(tokens.data()), {windows, L}, torch::kLong);
  // The head is applied in row chunks so the [rows, vocab] logits stay small (a 32K vocabulary at
  // batch 8 × 512 would otherwise need half a gigabyte).
  const int64_t chunk_rows =
      std::max<int64_t>(64, (int64_t(4) << 20) / std::max<int64_t>(1, vocab));
  // One partial sum per (batch, head chunk), added up in order at the end: with ranks, each
  // fills the entries of its batches (zeros elsewhere), an all-reduce joins them exactly, and the
  // total is the one of one process.
  const int64_t chunks_per_batch = (opts.batch * (L - 1) + chunk_rows - 1) / chunk_rows;
  const int64_t batches = (windows + opts.batch - 1) / opts.batch;
  std::vector<double> partial(static_cast<size_t>(batches * chunks_per_batch), 0.0);
  const bool split = opts.ranks != nullptr && opts.ranks->active();
  const int64_t stride = split ? opts.ranks->world_size() : 1;
  const int64_t first = split ? opts.ranks->rank() : 0;
  task_report(ctx, "perplexity", 0, windows);
  for (int64_t bi = first; bi < batches; bi += stride) {
    task_check(ctx);
    const int64_t w0 = bi * opts.batch;
    const int64_t b = std::min(opts.batch, windows - w0);
    auto batch = all.narrow(0, w0, b).to(model.options().device);
    auto hidden = model.hidden_states(batch).narrow(1, 0, L - 1).reshape({b * (L - 1), -1});
    auto targets = batch.narrow(1, 1, L - 1).reshape({b * (L - 1)});
    for (int64_t r0 = 0, c = 0; r0 < hidden.size(0); r0 += chunk_rows, ++c) {
      const int64_t n = std::min(chunk_rows, hidden.size(0) - r0);
      auto logits = model.logits(hidden.narrow(0, r0, n));
      auto lse = torch::logsumexp(logits, -1);
      auto tgt = logits.gather(1, targets.narrow(0, r0, n).unsqueeze(1)).squeeze(1);
      partial[static_cast<size_t>(bi * chunks_per_batch + c)] =
          (lse - tgt).to(torch::kFloat64).sum().item<double>();
    }
    task_report(ctx, "perplexity", std::min(windows, w0 + b * stride), windows);
  }
  if (split) {
    auto joined =
        torch::from_blob(partial.data(), {static_cast<int64_t>(partial.size())}, torch::kFloat64);
    opts.ranks->allreduce_sum(joined);
  }
  double nll_sum = 0.0;
  for (const double v : partial)
    nll_sum += v;
  PerplexityResult r;
  r.windows = windows;
  r.predictions = windows * (L - 1);
  r.text_tokens = static_cast<int64_t>(tokens.size());
  r.mean_nll = nll_sum / static_cast<double>(r.predictions);
  r.ppl = std::exp(r.mean_nll);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.tokens_per_second = r.seconds > 0 ? static_cast<double>(windows * L) / r.seconds : 0.0;
  return r;
}

}  // namespace lorashear
