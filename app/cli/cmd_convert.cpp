// `lorashear convert MODEL --to hf OUTDIR` / `--to gguf OUT.gguf`: export to the layouts other
// tools load (transformers / vLLM; llama.cpp and what is built on it).
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "cli_common.h"
#include "lorashear/io/files.h"
#include "lorashear/io/gguf.h"
#include "lorashear/model/lora.h"

namespace lorashear::cli {
namespace {

struct ConvertArgs : ModelArgs {
  std::string to = "hf", out, out_dtype;
  double shard_mib = 0;
};

int run_gguf(const ConvertArgs& a, const GlobalOptions& global) {
  GgufSaveOptions opts;
  opts.dtype = parse_gguf_dtype(a.out_dtype.empty() ? "f32" : a.out_dtype);
  if (a.shard_mib > 0) throw UsageError("--shard-size applies to --to hf only");
  auto loaded = load_model_for_cli(a, global, false);
  // An attached adapter is merged while writing: the file is a plain model llama.cpp runs.
  ProgressBar bar(global);
  auto ctx = bar.context();
  const auto report = save_gguf(*loaded.model, loaded.tokenizer.get(), a.out, opts, &ctx);
  bar.finish();
  if (global.json) {
    print_json({{"model", a.model},
                {"output", a.out},
                {"format", "gguf"},
                {"architecture", report.architecture},
                {"dtype", gguf_dtype_name(report.dtype)},
                {"bytes", report.bytes},
                {"tensors", report.tensors},
                {"as_f16", report.as_f16},
                {"notes", report.notes}});
    return 0;
  }
  std::printf("wrote %s (GGUF for llama.cpp, architecture %s, %s, %s)\n", a.out.c_str(),
              report.architecture.c_str(), gguf_dtype_name(report.dtype).c_str(),
              human_bytes(double(report.bytes)).c_str());
  if (!report.as_f16.empty())
    std::printf("  %zu matrices written F16: their rows are not whole Q8_0 blocks of 32 (%s%s)\n",
                report.as_f16.size(), report.as_f16.front().c_str(),
                report.as_f16.size() > 1 ? ", …" : "");
  for (const auto& n : report.notes)
    std::printf("  %s\n", n.c_str());
  return 0;
}

// OUT is replaced whole: refuse a folder that holds something other than a model.
void check_hf_target(const std::string& out) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(out, ec)) return;
  if (!fs::is_directory(out, ec)) throw UsageError(out + " exists and is not a folder");
  if (fs::is_empty(out, ec) || fs::exists(fs::path(out) / "config.json", ec)) return;
  throw UsageError(out + " is a folder without a model (no config.json); it would be replaced " +
                   "whole: give a new folder or a model folder");
}

int run_convert(const ConvertArgs& a, const GlobalOptions& global) {
  if (a.to == "gguf") return run_gguf(a, global);
  check_hf_target(a.out);
  // Built beside OUT and renamed into place: a failure (a full disk) leaves a previous OUT as it
  // was, and no mix of old and new files. Made first, so an unwritable OUT fails at once.
  io::StagedDirectory staged(a.out, /*overwrite=*/true);
  auto loaded = load_model_for_cli(a, global, false);
  // An adapter is merged into the weights: the output is a plain model other tools load.
  if (!a.adapter.empty()) fold_lora(*loaded.model);
  SaveOptions opts;
  opts.dtype = parse_dtype(a.out_dtype.empty() ? "fp32" : a.out_dtype);
  opts.max_shard_bytes = static_cast<int64_t>(a.shard_mib * 1024 * 1024);
  ProgressBar bar(global);
  auto ctx = bar.context();
  save_hf(*loaded.model, loaded.tokenizer.get(), staged.path(), opts, &ctx);
  staged.commit();
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
  for (const auto& t : load_targets(loaded.model->config()))
    if (t.tool != "llama.cpp" && !t.ok && !global.json)
      std::printf("  note: %s (use --to gguf for llama.cpp)\n", t.text().c_str());
  return 0;
}

const Register register_convert([](CLI::App& parent, GlobalOptions& global) {
  auto* app = parent.add_subcommand("convert", "Convert a model to another format");
  auto a = std::make_shared<ConvertArgs>();
  add_model_arguments(app, *a);
  app->add_option("--to", a->to,
                  "Target format: hf (Hugging Face directory) or gguf (one file for llama.cpp)")
      ->check(CLI::IsMember({"hf", "gguf"}))
      ->capture_default_str();
  app->add_option("OUT", a->out,
                  "Output directory (hf; a model folder there is replaced) or file (gguf); written "
                  "beside and renamed into place")
      ->required();
  app->add_option("--out-dtype", a->out_dtype,
                  "Stored dtype: hf fp32 (default), fp16, bf16; gguf f32 (default), f16, bf16, "
                  "q8_0")
      ->check(CLI::IsMember(
          {"fp32", "fp16", "bf16", "float32", "float16", "bfloat16", "f32", "f16", "q8_0"}));
  app->add_option("--shard-size", a->shard_mib,
                  "hf: shard model files above this many MiB (0 = one file)")
      ->check(CLI::NonNegativeNumber);
  app->footer(
      "Examples:\n"
      "  lorashear convert pruned-20 --to gguf pruned-20.gguf --out-dtype q8_0\n"
      "  lorashear convert model.gguf --to hf model-hf --out-dtype bf16");
  return Command{app, [a, &global] { return run_convert(*a, global); }};
});

}  // namespace
}  // namespace lorashear::cli
