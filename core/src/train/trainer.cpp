#include "lorashear/train/trainer.h"

#include <ATen/autocast_mode.h>

#include <cmath>

#include "lorashear/dist/distributed.h"
#include "lorashear/errors.h"
#include "lorashear/io/archive.h"
#include "lorashear/model/llama.h"
#include "lorashear/model/lora.h"

namespace lorashear {

double TrainOptions::lr_at(int64_t step) const {
  const auto warm = static_cast<int64_t>(std::llround(warmup * static_cast<double>(steps)));
  if (warm > 0 && step <= warm) return lr * static_cast<double>(step) / static_cast<double>(warm);
  const double span = static_cast<double>(std::max<int64_t>(steps - warm, 1));
  const double t = std::clamp(static_cast<double>(step - warm) / span, 0.0, 1.0);
  const double cosine = 0.5 * (1.0 + std::cos(M_PI * t));
  return lr * (min_lr_ratio + (1.0 - min_lr_ratio) * cosine);
}

void TrainOptions::validate(const std::string& p) const {
  auto need = [&](bool ok, const std::string& what) {
    if (!ok) throw UsageError(p + what);
  };
  need(steps >= 0, "steps must be >= 0");
  need(batch_size >= 1, "batch must be >= 1");
  need(grad_accum >= 1, "grad-accum must be >= 1");
  need(lr > 0, "lr must be positive");
  need(min_lr_ratio >= 0 && min_lr_ratio <= 1, "min-lr-ratio must be in [0, 1]");
  need(warmup >= 0 && warmup < 1, "warmup must be a fraction in [0, 1)");
  need(weight_decay >= 0, "weight-decay must be >= 0");
  need(grad_clip >= 0, "grad-clip must be >= 0");
  need(precision == "auto" || precision == "fp32" || precision == "bf16",
       "precision '" + precision + "': expected auto, fp32 or bf16");
}

void with_autocast(bool enabled, const torch::Device& device, const std::function<void()>& fn) {
  if (!enabled) return fn();
  const bool cuda = device.is_cuda();
  struct Restore {
    bool cuda, was;
    at::ScalarType dtype;
    ~Restore() {
      if (cuda) {
        at::autocast::set_enabled(was);
        at::autocast::set_autocast_gpu_dtype(dtype);
      } else {
        at::autocast::set_cpu_enabled(was);
        at::autocast::set_autocast_cpu_dtype(dtype);
      }
      at::autocast::clear_cache();
    }
  } restore{cuda, cuda ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled(),
            cuda ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype()};
  if (cuda) {
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
    at::autocast::set_enabled(true);
  } else {
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    at::autocast::set_cpu_enabled(true);
  }
  fn();
}

LoraTrainer::LoraTrainer(LlamaModelImpl& model, TrainOptions options)
    : model_(model), options_(std::move(options)) {
  options_.validate();
  if (model.lora() == nullptr) throw UsageError("training needs LoRA adapters on the model");
  freeze_base_weights(model);
  factors_ = lora_parameters(model);
  opt_ = std::make_unique<torch::optim::AdamW>(
      factors_, torch::optim::AdamWOptions(options_.lr).weight_decay(options_.weight_decay));
  const auto device = model.options().device;
  if (options_.precision == "bf16") {
    bf16_ = true;
  } else if (options_.precision == "auto") {
    // CUDA: bf16 autocast (no loss scaling needed, unlike fp16). CPUs here have no bf16 units,
    // where autocast only adds conversions.
    bf16_ = device.is_cuda() && model.options().dtype == torch::kFloat32;
  }
}

LoraTrainer::~LoraTrainer() = default;

double LoraTrainer::step(int64_t step, const std::function<torch::Tensor(int64_t)>& loss_of) {
  const double lr = options_.lr_at(step);
  for (auto& group : opt_->param_groups())
    static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
  model_.train();
  opt_->zero_grad();
  double total = 0;
  const auto device = model_.options().device;
  for (int64_t i = 0; i < options_.grad_accum; ++i) {
    torch::Tensor loss;
    with_autocast(bf16_, device, [&] { loss = loss_of(i); });
    (loss.to(torch::kFloat32) / static_cast<double>(options_.grad_accum)).backward();
    total += loss.item<double>();
  }
  // Data parallel (dist::current()): the ranks' gradients are averaged before clipping, so every
  // rank takes the same step; the loss returned is the mean over the ranks.
  auto& ranks = dist::current();
  dist::allreduce_gradients(factors_, ranks);
  if (options_.grad_clip > 0) torch::nn::utils::clip_grad_norm_(factors_, options_.grad_clip);
  opt_->step();
  return ranks.allreduce_mean(total / static_cast<double>(options_.grad_accum));
}

void LoraTrainer::save(const std::string& path) const {
  torch::serialize::OutputArchive archive;
  opt_->save(archive);
  io::save_archive_atomic(archive, path);  // save_to(path) aborts the process on a full disk
}

void LoraTrainer::load(const std::string& path) {
  torch::serialize::InputArchive archive;
  archive.load_from(path);
  opt_->load(archive);
}

}  // namespace lorashear
