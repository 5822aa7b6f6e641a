// `lorashear`: command-line twin of LoRAShear Studio. Subcommands live in cmd_*.cpp and register
// themselves; this file parses, sets up the runtime and maps errors to exit codes.
#include <c10/util/Exception.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <iostream>
#include <string>

#include "cli_common.h"
#include "lorashear/build_info.h"
#include "lorashear/errors.h"
#include "lorashear/runtime.h"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitInternal = 1;
constexpr int kExitUsage = 2;
constexpr int kExitBadInput = 3;
constexpr int kExitCancelled = 130;

std::string first_line(const std::string& s) {
  const auto nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace lorashear;
  CLI::App app{
      "lorashear " + version() +
          ": structured pruning with knowledge recovery for LLaMA-family models (LoRAShear).\n"
          "Models: a Hugging Face directory (config.json + *.safetensors), a llama2.c .bin or a "
          "GGUF "
          "file.\nExamples:\n  lorashear info MODEL\n  lorashear generate MODEL -p \"Once upon a "
          "time\"\n"
          "  lorashear eval ppl MODEL --text FILE --seq-len 128\n"
          "  lorashear tokenize --tokenizer tokenizer.json --text \"Hello\"\n"
          "  lorashear convert MODEL --to hf OUTDIR\nDetails: lorashear SUBCOMMAND --help",
      "lorashear"};
  app.set_version_flag("--version", std::function<std::string()>([] {
                         auto text = build_info_text("lorashear");
                         text += "CPU attention kernel: " + cpu_kernel_variant();
                         return text;
                       }));
  app.fallthrough();  // global flags may follow the subcommand
  app.require_subcommand(1);
  cli::GlobalOptions global;
  app.add_flag("--json", global.json, "Machine-readable JSON on stdout");
  app.add_flag("-q,--quiet", global.quiet, "No progress bar");
  app.add_option("--threads", global.threads, "CPU cores for the engine (0 = all)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--device", global.device, "cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--dtype", global.dtype,
                 "Base weight dtype: fp32, fp16, bf16, or auto = the checkpoint's (bf16 stays "
                 "bf16; fp16 stays fp16 on CUDA; else fp32). Default: auto for prune, recover and "
                 "sweep, fp32 for the other commands. LoRA factors are always fp32")
      ->check(CLI::IsMember(
          {"fp32", "float32", "f32", "fp16", "float16", "f16", "bf16", "bfloat16", "auto"}));
  app.add_flag("--no-mmap", global.no_mmap,
               "Copy every weight into memory instead of viewing the memory-mapped checkpoint "
               "(needed when the file may be rewritten in place while the command runs)");

  std::vector<cli::Command> commands;
  for (const auto& reg : cli::registrars())
    commands.push_back(reg(app, global));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }
  spdlog::set_level(global.json ? spdlog::level::warn : spdlog::level::info);
  init_runtime(global.threads);

  for (auto& cmd : commands) {
    if (!cmd.app->parsed()) continue;
    try {
      return cmd.run();
    } catch (const InputError& e) {
      std::cerr << "error: " << e.what() << "\n";
      return kExitBadInput;
    } catch (const UsageError& e) {
      std::cerr << "error: " << e.what() << "\n";
      return kExitUsage;
    } catch (const CancelledError&) {
      std::cerr << "cancelled\n";
      return kExitCancelled;
    } catch (const Error& e) {
      // The engine's own errors (a directory that cannot be written, a full disk) say what
      // happened; only foreign exceptions are reported as internal.
      std::cerr << "error: " << e.what() << "\n";
      return kExitInternal;
    } catch (const c10::Error& e) {
      // LibTorch's messages carry a stack trace: one line is what the user can act on.
      std::cerr << "internal error: " << first_line(e.what_without_backtrace()) << "\n";
      return kExitInternal;
    } catch (const std::exception& e) {
      std::cerr << "internal error: " << e.what() << "\n";
      return kExitInternal;
    }
  }
  return kExitUsage;
}
