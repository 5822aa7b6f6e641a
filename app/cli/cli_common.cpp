#include "cli_common.h"

#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <mutex>

namespace lorashear::cli {

namespace {

std::atomic<bool> g_interrupted{false};

extern "C" void on_sigint(int) {
  // A second Ctrl-C kills the process the usual way.
  if (g_interrupted.exchange(true)) std::_Exit(130);
}

std::string format_seconds(double s) {
  char buf[32];
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%.0fs", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%dm%02ds", int(s) / 60, int(s) % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%dh%02dm", int(s) / 3600, (int(s) / 60) % 60);
  }
  return buf;
}

}  // namespace

std::vector<Registrar>& registrars() {
  static std::vector<Registrar> list;
  return list;
}

struct ProgressBar::Impl {
  using Clock = std::chrono::steady_clock;
  bool enabled = false;
  std::mutex mutex;
  Clock::time_point start = Clock::now();
  Clock::time_point last_draw{};
  std::string stage;
  Clock::time_point stage_start = Clock::now();
  bool drawn = false;
};

ProgressBar::ProgressBar(const GlobalOptions& global) : impl_(std::make_unique<Impl>()) {
  impl_->enabled = !global.quiet && isatty(STDERR_FILENO);
  std::signal(SIGINT, on_sigint);
}

ProgressBar::~ProgressBar() {
  finish();
}

TaskContext ProgressBar::context() {
  TaskContext ctx;
  ctx.cancel = &g_interrupted;
  ctx.on_progress = [this](const Progress& p) { update(p); };
  return ctx;
}

void ProgressBar::update(const Progress& p) {
  if (!impl_->enabled) return;
  std::lock_guard<std::mutex> lock(impl_->mutex);
  const auto now = Impl::Clock::now();
  if (p.stage != impl_->stage) {
    impl_->stage = p.stage;
    impl_->stage_start = now;
  }
  // Only for work longer than a second, and at most ten redraws a second.
  if (now - impl_->start < std::chrono::seconds(1)) return;
  const bool done = p.total > 0 && p.done >= p.total;
  if (!done && now - impl_->last_draw < std::chrono::milliseconds(100)) return;
  impl_->last_draw = now;
  std::string line = p.stage;
  if (p.total > 0) {
    const double frac = std::min(1.0, double(p.done) / double(p.total));
    const int width = 28, fill = int(frac * width);
    line += " [" + std::string(fill, '#') + std::string(width - fill, ' ') + "] ";
    char pct[16];
    std::snprintf(pct, sizeof pct, "%3.0f%%", frac * 100);
    line += pct;
    line += " " + std::to_string(p.done) + "/" + std::to_string(p.total);
    const double elapsed = std::chrono::duration<double>(now - impl_->stage_start).count();
    if (frac > 0 && frac < 1) line += " ETA " + format_seconds(elapsed / frac - elapsed);
  } else {
    line += " " + std::to_string(p.done);
  }
  if (!p.message.empty()) line += "  " + p.message;
  if (line.size() > 118) line.resize(118);
  std::cerr << "\r\033[K" << line << std::flush;
  impl_->drawn = true;
}

void ProgressBar::finish() {
  if (!impl_) return;
  std::lock_guard<std::mutex> lock(impl_->mutex);
  if (impl_->drawn) std::cerr << "\r\033[K" << std::flush;
  impl_->drawn = false;
}

void print_json(const nlohmann::json& j) {
  std::cout << j.dump(2) << std::endl;
}

}  // namespace lorashear::cli

namespace lorashear::cli {

void add_model_arguments(CLI::App* app, ModelArgs& args, bool adapter) {
  app->add_option("MODEL", args.model, "Hugging Face directory, llama2.c .bin or .gguf file")
      ->required();
  app->add_option(
      "--tokenizer", args.tokenizer,
      "tokenizer.json, tokenizer.model or llama2.c tokenizer.bin (default: found beside the "
      "model)");
  if (adapter)
    app->add_option("--adapter", args.adapter,
                    "LoRA adapter directory in the PEFT layout (adapter_config.json + "
                    "adapter_model.safetensors), attached unmerged");
}

void apply_model_flags(const GlobalOptions& global, LoadOptions& opts) {
  opts.model.device = parse_device(global.device);
  const auto& dtype = global.dtype_choice();
  opts.keep_checkpoint_dtype = dtype == "auto";
  if (!opts.keep_checkpoint_dtype) opts.model.dtype = parse_dtype(dtype);
  opts.map_weights = !global.no_mmap;
}

LoadedModel load_model_for_cli(const ModelArgs& args, const GlobalOptions& global,
                               bool need_tokenizer) {
  LoadOptions opts;
  apply_model_flags(global, opts);
  opts.tokenizer_path = args.tokenizer;
  opts.require_tokenizer = need_tokenizer;
  opts.adapter_path = args.adapter;
  ProgressBar bar(global);
  auto ctx = bar.context();
  auto loaded = load_model(args.model, opts, &ctx);
  bar.finish();
  if (need_tokenizer && !loaded.tokenizer)
    throw InputError(args.model + ": no tokenizer found; pass --tokenizer FILE");
  return loaded;
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", b, units[u]);
  return buf;
}

std::string human_scaled(double v, const char* billions) {
  char buf[32];
  if (v >= 1e9)
    std::snprintf(buf, sizeof buf, "%.2f%s", v / 1e9, billions);
  else if (v >= 1e6)
    std::snprintf(buf, sizeof buf, "%.2fM", v / 1e6);
  else if (v >= 1e3)
    std::snprintf(buf, sizeof buf, "%.1fK", v / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}

std::string human_count(int64_t n) {
  return human_scaled(static_cast<double>(n), "B");
}

}  // namespace lorashear::cli
