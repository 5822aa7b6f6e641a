// `lorashear eval ppl MODEL --text FILE`: perplexity with the windows-L protocol (LORASHEAR.md §6).
#include <cstdio>
#include <iostream>

#include "cli_common.h"
#include "lorashear/eval/perplexity.h"
#include "lorashear/io/text.h"

namespace lorashear::cli {
namespace {

struct PplArgs : ModelArgs {
  std::string text, preset;
  int64_t seq_len = 0, max_windows = 0, batch = 8;
};

int run_ppl(const PplArgs& a, const GlobalOptions& global) {
  auto loaded = load_model_for_cli(a, global, true);
  PerplexityOptions opts;
  opts.batch = a.batch;
  opts.max_windows = a.max_windows;
  if (a.seq_len > 0) {
    opts.seq_len = a.seq_len;
  } else if (a.preset == "windows-ctx") {
    opts.seq_len = loaded.model->config().max_position_embeddings;
  } else {
    opts.seq_len = 128;  // "windows-128"
  }
  const std::string text = read_text_corpus(a.text);
  const auto tokens = loaded.tokenizer->encode(text);
  ProgressBar bar(global);
  auto ctx = bar.context();
  auto r = perplexity(*loaded.model, tokens, opts, &ctx);
  bar.finish();
  if (global.json) {
    print_json({{"model", a.model},
                {"text", a.text},
                {"ppl", r.ppl},
                {"mean_nll", r.mean_nll},
                {"seq_len", opts.seq_len},
                {"windows", r.windows},
                {"predictions", r.predictions},
                {"text_tokens", r.text_tokens},
                {"protocol", r.protocol()},
                {"seconds", r.seconds},
                {"tokens_per_second", r.tokens_per_second}});
  } else {
    std::printf("ppl %.4f  (mean NLL %.5f; %s; text %lld tokens)\n", r.ppl, r.mean_nll,
                r.protocol().c_str(), static_cast<long long>(r.text_tokens));
    std::printf("%.1f s, %.0f tokens/s\n", r.seconds, r.tokens_per_second);
  }
  return 0;
}

const Register reg([](CLI::App& parent, GlobalOptions& global) {
  auto* eval = parent.add_subcommand("eval", "Evaluate a model");
  eval->require_subcommand(1);
  auto* ppl = eval->add_subcommand(
      "ppl",
      "Perplexity: non-overlapping windows of L tokens (no BOS, last partial window dropped), "
      "PPL = exp(mean NLL of the L-1 predictions per window)");
  auto a = std::make_shared<PplArgs>();
  add_model_arguments(ppl, *a);
  ppl->add_option("--text", a->text, "Text file (.txt/.raw as is; .jsonl: the \"text\" field)")
      ->required()
      ->check(CLI::ExistingFile);
  ppl->add_option("--preset", a->preset,
                  "windows-128 (LLM-Pruner/LoRAShear tables) or windows-ctx (model context)")
      ->check(CLI::IsMember({"windows-128", "windows-ctx"}))
      ->default_str("windows-128");
  ppl->add_option("--seq-len", a->seq_len, "Window length L (overrides --preset)")
      ->check(CLI::Range(int64_t(2), int64_t(1) << 20));
  ppl->add_option("--max-windows", a->max_windows, "Score only the first N windows (0 = all)")
      ->check(CLI::NonNegativeNumber);
  ppl->add_option("--batch", a->batch, "Windows per forward pass")
      ->check(CLI::Range(int64_t(1), int64_t(4096)))
      ->capture_default_str();
  // `eval` itself does nothing; the chosen `ppl` runs. Report `eval` as the parsed command.
  return Command{eval, [a, &global] { return run_ppl(*a, global); }};
});

}  // namespace
}  // namespace lorashear::cli
