// `lorashear make-demo OUTDIR --text FILE`: train the small demo LLaMA and its tokenizer from
// scratch.
#include <unistd.h>

#include <cmath>
#include <cstdio>

#include "cli_common.h"
#include "lorashear/runtime.h"
#include "lorashear/train/demo.h"

namespace lorashear::cli {
namespace {

struct MakeDemoArgs {
  std::string out, text;
  DemoOptions opts;
  int64_t log_every = 100;
};

int run_make_demo(const MakeDemoArgs& a, const GlobalOptions& global) {
  ProgressBar bar(global);
  auto ctx = bar.context();
  // When the bar cannot show (not a terminal), a line every `log_every` steps keeps logs useful.
  const bool log_lines = !global.quiet && !global.json && !isatty(STDERR_FILENO) && a.log_every > 0;
  auto on_step = [&](const DemoStep& s) {
    if (log_lines && (s.step % a.log_every == 0 || s.step == s.steps))
      std::fprintf(stderr, "step %lld/%lld  loss %.4f  lr %.2e  %.0fs\n",
                   static_cast<long long>(s.step), static_cast<long long>(s.steps), s.loss, s.lr,
                   s.seconds);
  };
  auto r = make_demo_model(a.text, a.out, a.opts, &ctx, on_step);
  bar.finish();
  if (global.json) {
    print_json({{"output", a.out},
                {"text", a.text},
                {"parameters", r.parameters},
                {"train_tokens", r.train_tokens},
                {"steps", a.opts.steps},
                {"seed", a.opts.seed},
                {"threads", runtime_threads()},
                {"initial_loss", r.initial_loss},
                {"final_loss", r.final_loss},
                {"eval_loss", std::isfinite(r.eval_loss) ? nlohmann::json(r.eval_loss) : nullptr},
                {"tokenizer_seconds", r.tokenizer_seconds},
                {"train_seconds", r.train_seconds}});
  } else {
    std::printf("wrote %s: %lld parameters, %lld training tokens\n", a.out.c_str(),
                static_cast<long long>(r.parameters), static_cast<long long>(r.train_tokens));
    std::printf("loss %.4f -> %.4f (mean of the last 50 steps), held-out %.4f\n", r.initial_loss,
                r.final_loss, r.eval_loss);
    std::printf("tokenizer %.1fs, training %.1fs on %d threads\n", r.tokenizer_seconds,
                r.train_seconds, runtime_threads());
  }
  return 0;
}

const Register register_make_demo([](CLI::App& parent, GlobalOptions& global) {
  auto* app = parent.add_subcommand(
      "make-demo",
      "Train the small demo model (SentencePiece BPE + LLaMA with GQA) from a text file");
  auto a = std::make_shared<MakeDemoArgs>();
  auto& o = a->opts;
  app->add_option("OUTDIR", a->out, "Output directory (Hugging Face layout)")->required();
  app->add_option("--text", a->text, "Training text, stories separated by blank lines")
      ->required()
      ->check(CLI::ExistingFile);
  app->add_option("--steps", o.steps, "Optimiser steps")->capture_default_str();
  app->add_option("--seed", o.seed, "Random seed (same seed and threads, same model)")
      ->capture_default_str();
  app->add_option("--batch-size", o.batch_size, "Sequences per step")->capture_default_str();
  app->add_option("--seq-len", o.seq_len, "Tokens per sequence")->capture_default_str();
  app->add_option("--lr", o.lr, "Peak learning rate (cosine decay after warmup)")
      ->capture_default_str();
  app->add_option("--warmup", o.warmup_steps, "Linear warmup steps")->capture_default_str();
  app->add_option("--vocab-size", o.vocab_size, "SentencePiece vocabulary size")
      ->capture_default_str();
  app->add_option("--hidden", o.hidden_size, "Hidden size")->capture_default_str();
  app->add_option("--layers", o.n_layers, "Decoder layers")->capture_default_str();
  app->add_option("--heads", o.n_heads, "Query heads")->capture_default_str();
  app->add_option("--kv-heads", o.n_kv_heads, "Key/value heads (GQA)")->capture_default_str();
  app->add_option("--head-dim", o.head_dim, "Head dimension")->capture_default_str();
  app->add_option("--intermediate", o.intermediate_size, "SwiGLU width")->capture_default_str();
  app->add_option("--log-every", a->log_every,
                  "Print a loss line every N steps when stderr is not a terminal (0 = never)")
      ->capture_default_str();
  app->add_flag("--force,--overwrite", o.overwrite,
                "Replace OUTDIR if it exists (once training succeeded)");
  return Command{app, [a, &global] { return run_make_demo(*a, global); }};
});

}  // namespace
}  // namespace lorashear::cli
