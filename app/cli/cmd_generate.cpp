// `lorashear generate MODEL`: text generation (greedy, temperature, top-p) with a KV cache.
#include <algorithm>
#include <cstdio>
#include <iostream>

#include "cli_common.h"
#include "lorashear/eval/generate.h"

namespace lorashear::cli {
namespace {

struct GenArgs : ModelArgs {
  std::string prompt;
  GenerateOptions opts;
  bool no_bos = false;
};

int run_generate(const GenArgs& a, const GlobalOptions& global) {
  auto loaded = load_model_for_cli(a, global, true);
  auto& tok = *loaded.tokenizer;
  // BOS as the tokenizer's policy says (Qwen adds none); --no-bos drops it anyway.
  const bool bos = !a.no_bos && tok.add_bos() && tok.bos_id() >= 0;
  auto prompt = tok.encode(a.prompt, bos);
  if (prompt.empty())
    throw UsageError(a.no_bos || tok.bos_id() < 0
                         ? "empty prompt: give --prompt TEXT"
                         : "empty prompt: give --prompt TEXT or drop --no-bos");
  // Every id that ends the text: the model's (config.json, generation_config.json) and the
  // tokenizer's.
  auto opts = a.opts;
  opts.eos_ids = loaded.model->config().eos_token_ids;
  for (auto id : tok.eos_ids())
    if (std::find(opts.eos_ids.begin(), opts.eos_ids.end(), id) == opts.eos_ids.end())
      opts.eos_ids.push_back(id);
  const auto is_eos = [&](int64_t id) {
    return std::find(opts.eos_ids.begin(), opts.eos_ids.end(), id) != opts.eos_ids.end();
  };
  // Stream: print the decoded text's new suffix after every token (pieces may merge bytes).
  std::vector<int64_t> all(prompt.begin() + (bos ? 1 : 0), prompt.end());
  std::string shown = tok.decode(all);
  if (!global.json) std::cout << shown << std::flush;
  auto on_token = [&](int64_t id) {
    if (is_eos(id)) return;
    all.push_back(id);
    if (global.json) return;
    std::string text = tok.decode(all);
    if (text.size() > shown.size() && text.compare(0, shown.size(), shown) == 0) {
      std::cout << text.substr(shown.size()) << std::flush;
      shown = std::move(text);
    }
  };
  // Ctrl-C cancels; no bar: the streamed text itself shows the progress.
  ProgressBar bar(global);
  auto ctx = bar.context();
  ctx.on_progress = nullptr;
  auto r = generate(*loaded.model, prompt, opts, on_token, &ctx);
  const std::string text = tok.decode(all);
  if (global.json) {
    print_json({{"prompt", a.prompt},
                {"text", text},
                {"tokens", r.tokens},
                {"prefill_seconds", r.prefill_seconds},
                {"decode_tokens_per_second", r.decode_tokens_per_second()}});
  } else {
    std::cout << std::endl;
    std::fprintf(stderr, "[%zu tokens, %.1f tokens/s]\n", r.tokens.size(),
                 r.decode_tokens_per_second());
  }
  return 0;
}

const Register register_generate([](CLI::App& parent, GlobalOptions& global) {
  auto* app = parent.add_subcommand("generate", "Generate text (greedy unless --temperature > 0)");
  auto a = std::make_shared<GenArgs>();
  add_model_arguments(app, *a);
  app->add_option("-p,--prompt", a->prompt, "Prompt text (default: start from BOS)");
  app->add_option("-n,--max-tokens", a->opts.max_new_tokens, "New tokens at most")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20))
      ->capture_default_str();
  app->add_option("-t,--temperature", a->opts.temperature, "0 = greedy; e.g. 0.8 to sample")
      ->check(CLI::Range(0.0, 100.0))
      ->capture_default_str();
  app->add_option("--top-p", a->opts.top_p, "Nucleus sampling threshold in (0, 1]")
      ->check(CLI::Range(1e-9, 1.0))
      ->capture_default_str();
  app->add_option("--seed", a->opts.seed, "Sampling seed")->capture_default_str();
  app->add_flag("--no-bos", a->no_bos, "Do not prepend the BOS token");
  app->add_flag_function(
      "--ignore-eos", [a](int64_t) { a->opts.stop_at_eos = false; },
      "Keep going after the end-of-sequence token");
  return Command{app, [a, &global] { return run_generate(*a, global); }};
});

}  // namespace
}  // namespace lorashear::cli
