// `lorashear convert MODEL --to hf OUTDIR`: export to the Hugging Face layout other tools load.
#include <cstdio>
#include <iostream>

#include "cli_common.h"
#include "lorashear/model/lora.h"

namespace lorashear::cli {
namespace {

struct ConvertArgs : ModelArgs {
  std::string to = "hf", out, out_dtype = "fp32";
  double shard_mib = 0;
};

int run_convert(const ConvertArgs& a, const GlobalOptions& global) {
  auto loaded = load_model_for_cli(a, global, false);
  // An adapter is merged into the weights: the output is a plain model other tools load.
  if (!a.adapter.empty()) fold_lora(*loaded.model);
  SaveOptions opts;
  opts.dtype = parse_dtype(a.out_dtype);
  opts.max_shard_bytes = static_cast<int64_t>(a.shard_mib * 1024 * 1024);
  ProgressBar bar(global);
  auto ctx = bar.context();
  save_hf(*loaded.model, loaded.tokenizer.get(), a.out, opts, &ctx);
  bar.finish();
  if (global.json) {
    print_json({{"model", a.model},
                {"output", a.out},
                {"format", "hf"},
                {"dtype", dtype_name(opts.dtype)},
                {"tokenizer", loaded.tokenizer != nullptr}});
  } else {
    std::printf("wrote %s (Hugging Face layout, %s%s)\n", a.out.c_str(),
                dtype_name(opts.dtype).c_str(),
                loaded.tokenizer ? ", with tokenizer.model" : ", no tokenizer found");
  }
  return 0;
}

const Register reg([](CLI::App& parent, GlobalOptions& global) {
  auto* app = parent.add_subcommand("convert", "Convert a model to another format");
  auto a = std::make_shared<ConvertArgs>();
  add_model_arguments(app, *a);
  app->add_option("--to", a->to, "Target format")
      ->check(CLI::IsMember({"hf"}))
      ->capture_default_str();
  app->add_option("OUTDIR", a->out, "Output directory (created; files written atomically)")
      ->required();
  app->add_option("--out-dtype", a->out_dtype, "Stored dtype: fp32, fp16, bf16")
      ->check(CLI::IsMember({"fp32", "fp16", "bf16", "float32", "float16", "bfloat16"}))
      ->capture_default_str();
  app->add_option("--shard-size", a->shard_mib,
                  "Shard model files above this many MiB (0 = one file)")
      ->check(CLI::NonNegativeNumber);
  return Command{app, [a, &global] { return run_convert(*a, global); }};
});

}  // namespace
}  // namespace lorashear::cli
