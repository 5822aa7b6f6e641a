#pragma once
// Shared pieces of the `lorashear` subcommands: global flags, progress bar, output helpers.
// Exit codes: 0 ok, 1 internal error, 2 usage, 3 bad input file (see main.cpp).

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lorashear/io/loader.h"
#include "lorashear/recover/recovery.h"
#include "lorashear/task.h"

namespace lorashear::cli {

/// Flags every subcommand sees.
struct GlobalOptions {
  bool json = false;   ///< machine-readable output on stdout
  bool quiet = false;  ///< no progress bar
  int threads = 0;     ///< 0 = all cores
  std::string device = "cpu";
  std::string dtype;  ///< --dtype; empty = the command's default below
  /// The dtype when --dtype is not given: prune, recover and sweep keep the checkpoint's ("auto"),
  /// the other commands compute in fp32.
  std::string dtype_default = "fp32";
  bool no_mmap = false;  ///< --no-mmap: copy every weight instead of viewing the mapped file
  /// --dtype or the default: "fp32", "fp16", "bf16" or "auto".
  const std::string& dtype_choice() const { return dtype.empty() ? dtype_default : dtype; }
};

/// A subcommand registers its options and sets `run` (called after parsing when it was chosen).
struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;
};

using Registrar = std::function<Command(CLI::App& parent, GlobalOptions& global)>;

/// Registration table; each cmd_*.cpp adds itself with a static `Register` object.
std::vector<Registrar>& registrars();
struct Register {
  explicit Register(Registrar r) { registrars().push_back(std::move(r)); }
};

/// A progress bar on stderr that only appears for work longer than a second and shows an ETA.
/// Thread-safe. Disabled when quiet or when stderr is not a terminal and json is on.
class ProgressBar {
 public:
  explicit ProgressBar(const GlobalOptions& global);
  ~ProgressBar();
  /// Returns a TaskContext that reports into this bar (cancel flag raised by SIGINT).
  TaskContext context();
  void update(const Progress& p);
  void finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Prints `j` on stdout (pretty) — used by --json paths.
void print_json(const nlohmann::json& j);

}  // namespace lorashear::cli

// ---- model loading shared by subcommands ----

namespace lorashear::cli {

/// What names a model on the command line: the MODEL positional, --tokenizer and --adapter.
struct ModelArgs {
  std::string model, tokenizer, adapter;
};

/// Adds the MODEL positional, --tokenizer and (with `adapter`) --adapter to `app`.
void add_model_arguments(CLI::App* app, ModelArgs& args, bool adapter = true);

/// Loads with the global device/dtype, showing progress, and attaches the adapter if one was given.
/// `need_tokenizer` turns a missing tokenizer into an InputError that says how to give one.
LoadedModel load_model_for_cli(const ModelArgs& args, const GlobalOptions& global,
                               bool need_tokenizer);
/// The model options of --device and --dtype into `opts` ("auto": keep the checkpoint's dtype),
/// and --no-mmap.
void apply_model_flags(const GlobalOptions& global, LoadOptions& opts);

/// The recovery options shared by `recover` and `prune --recover`; `steps` takes --recover-steps.
void add_recovery_options(CLI::App* app, RecoveryOptions& options, int64_t& steps);
/// After parsing: a stage without data is off unless its steps were given; --recover-steps splits
/// 70% stage 1, 30% stage 2 (all to the stage that has data when only one has).
void default_recovery_stages(const CLI::App& app, RecoveryOptions& options, int64_t steps);
/// The human-readable summary of a recovery report.
void print_recovery(const nlohmann::json& report);

/// 1.50 GiB, 12 KiB …
std::string human_bytes(double bytes);
/// 6.74B, 56.2M, 1.2K, 17.
std::string human_count(int64_t n);
/// The same scaling for any quantity, with its own suffix for 1e9 ("G" for FLOPs).
std::string human_scaled(double v, const char* billions);

}  // namespace lorashear::cli
