#include "lorashear/train/demo.h"

#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>

#include "lorashear/errors.h"
#include "lorashear/io/files.h"
#include "lorashear/io/loader.h"
#include "lorashear/model/llama.h"
#include "lorashear/tokenizer/tokenizer.h"
#include "tokenizer/spm_backend.h"

namespace lorashear {
namespace fs = std::filesystem;
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

void check_options(const DemoOptions& o) {
  auto require = [](bool ok, const std::string& what) {
    if (!ok) throw UsageError("make-demo: " + what);
  };
  require(o.vocab_size >= 300,
          "vocab_size must be at least 300 (259 byte/special pieces + merges)");
  require(o.hidden_size > 0 && o.n_layers > 0 && o.head_dim > 0 && o.intermediate_size > 0,
          "model dimensions must be positive");
  require(o.n_heads > 0 && o.n_kv_heads > 0 && o.n_heads % o.n_kv_heads == 0,
          "n_heads must be a positive multiple of n_kv_heads");
  require(o.steps > 0 && o.batch_size > 0, "steps and batch_size must be positive");
  require(o.seq_len >= 2 && o.seq_len <= o.max_position_embeddings,
          "seq_len must be in 2..max_position_embeddings");
  require(o.lr > 0 && o.min_lr_ratio >= 0 && o.min_lr_ratio <= 1, "bad learning-rate schedule");
  require(o.warmup_steps >= 0 && o.grad_clip >= 0 && o.weight_decay >= 0,
          "warmup, grad_clip and weight_decay must not be negative");
  require(o.holdout >= 0 && o.holdout < 0.5, "holdout must be in [0, 0.5)");
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open text file");
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Stories are separated by blank lines (TinyStories); any other text is one long story.
std::vector<std::string> split_stories(const std::string& text) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find("\n\n", pos);
    if (end == std::string::npos) end = text.size();
    std::string s = text.substr(pos, end - pos);
    const size_t b = s.find_first_not_of(" \n\r\t");
    const size_t e = s.find_last_not_of(" \n\r\t");
    if (b != std::string::npos) out.push_back(s.substr(b, e - b + 1));
    pos = end + 2;
  }
  return out;
}

std::shared_ptr<Tokenizer> train_tokenizer(const std::string& text_file, const DemoOptions& o) {
  // No model_prefix: SentencePiece then returns the model in memory and writes no files.
  // remove_extra_whitespaces=false keeps runs of spaces, so decode(encode(text)) == text.
  const std::string args = "input=" + text_file +
                           "\nmodel_type=bpe"
                           "\nvocab_size=" +
                           std::to_string(o.vocab_size) +
                           "\ncharacter_coverage=1.0"
                           "\nbyte_fallback=true"
                           "\nsplit_digits=true"
                           "\nallow_whitespace_only_pieces=true"
                           "\nnormalization_rule_name=identity"
                           "\nremove_extra_whitespaces=false"
                           "\nunk_id=0\nbos_id=1\neos_id=2\npad_id=-1"
                           "\ninput_sentence_size=0"
                           "\nshuffle_input_sentence=false"
                           "\nnum_threads=1"
                           "\nminloglevel=2";
  std::string proto;
  try {
    proto = detail::spm_train(args);
  } catch (const Error& e) {
    throw InputError(text_file + ": " + e.what());
  }
  return Tokenizer::from_serialized_proto(proto, text_file + " (trained tokenizer)");
}

double lr_at(const DemoOptions& o, int64_t step) {
  if (step < o.warmup_steps) return o.lr * double(step + 1) / double(o.warmup_steps);
  const double span = std::max<int64_t>(1, o.steps - o.warmup_steps);
  const double t = std::min(1.0, double(step - o.warmup_steps) / span);
  const double min_lr = o.lr * o.min_lr_ratio;
  return min_lr + 0.5 * (o.lr - min_lr) * (1.0 + std::cos(M_PI * t));
}

}  // namespace

DemoResult make_demo_model(const std::string& text_file, const std::string& out_dir,
                           const DemoOptions& o, const TaskContext* ctx,
                           const std::function<void(const DemoStep&)>& on_step) {
  check_options(o);
  task_check(ctx);
  if (!fs::is_regular_file(text_file)) throw InputError(text_file + ": no such text file");
  io::StagedDirectory staged(out_dir, o.overwrite);

  DemoResult result;

  // (a) Tokenizer.
  task_report(ctx, "tokenizer", 0, 1, "training SentencePiece BPE");
  auto t0 = Clock::now();
  auto tok = train_tokenizer(fs::absolute(text_file).string(), o);
  if (tok->vocab_size() != o.vocab_size)
    throw InputError(text_file + ": the tokenizer reached " + std::to_string(tok->vocab_size()) +
                     " pieces instead of " + std::to_string(o.vocab_size) + " (text too small?)");
  result.tokenizer_seconds = seconds_since(t0);
  task_report(ctx, "tokenizer", 1, 1);
  task_check(ctx);

  // Token stream: every story starts with BOS, so generation from BOS starts a story.
  const auto stories = split_stories(read_text(text_file));
  const size_t n_eval_stories =
      std::min(stories.size() / 2, static_cast<size_t>(std::floor(o.holdout * stories.size())));
  std::vector<int64_t> train_ids, eval_ids;
  for (size_t i = 0; i < stories.size(); ++i) {
    auto ids = tok->encode(stories[i], /*add_bos=*/true);
    auto& dst = i + n_eval_stories < stories.size() ? train_ids : eval_ids;
    dst.insert(dst.end(), ids.begin(), ids.end());
  }
  const int64_t window = o.seq_len + 1;
  if (static_cast<int64_t>(train_ids.size()) < 2 * window)
    throw InputError(text_file + ": too little text to train on (" +
                     std::to_string(train_ids.size()) + " tokens, need at least " +
                     std::to_string(2 * window) + ")");
  result.train_tokens = static_cast<int64_t>(train_ids.size());
  const auto train_data = torch::tensor(train_ids, torch::kInt64);

  // (b) Model.
  auto cfg = ModelConfig::uniform(o.vocab_size, o.hidden_size, o.n_layers, o.n_heads, o.n_kv_heads,
                                  o.intermediate_size, o.head_dim);
  cfg.max_position_embeddings = o.max_position_embeddings;
  cfg.tie_word_embeddings = o.tie_word_embeddings;
  cfg.bos_token_id = tok->bos_id();
  cfg.eos_token_id = tok->eos_id();
  cfg.validate("demo options");
  torch::manual_seed(o.seed);
  LlamaModel model(cfg);
  model->init_random(o.seed);
  model->train();
  result.parameters = model->num_parameters();

  // (c) Training. Decay only matrices: decaying RMSNorm gains towards zero only hurts.
  std::vector<torch::Tensor> decay, no_decay;
  for (const auto& p : model->named_parameters(true))
    (p.value().dim() >= 2 ? decay : no_decay).push_back(p.value());
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(
      decay, std::make_unique<torch::optim::AdamWOptions>(
                 torch::optim::AdamWOptions(o.lr).betas({0.9, 0.95}).weight_decay(o.weight_decay)));
  groups.emplace_back(no_decay,
                      std::make_unique<torch::optim::AdamWOptions>(
                          torch::optim::AdamWOptions(o.lr).betas({0.9, 0.95}).weight_decay(0)));
  torch::optim::AdamW optimizer(std::move(groups));
  auto params = model->parameters(true);

  std::mt19937_64 rng(o.seed);
  std::uniform_int_distribution<int64_t> pick(0, result.train_tokens - window);
  const auto offsets = torch::arange(window, torch::kInt64);
  auto sample_batch = [&](const torch::Tensor& data, std::mt19937_64& g,
                          std::uniform_int_distribution<int64_t>& d) {
    std::vector<int64_t> starts(static_cast<size_t>(o.batch_size));
    for (auto& s : starts)
      s = d(g);
    auto idx = torch::tensor(starts, torch::kInt64).unsqueeze(1) + offsets.unsqueeze(0);
    return data.index({idx});  // [B, T+1]
  };

  std::vector<double> tail_losses;
  const auto train_start = Clock::now();
  for (int64_t step = 0; step < o.steps; ++step) {
    task_check(ctx);
    const double lr = lr_at(o, step);
    for (auto& g : optimizer.param_groups())
      static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);

    auto batch = sample_batch(train_data, rng, pick);
    auto x = batch.narrow(1, 0, o.seq_len).contiguous();
    auto y = batch.narrow(1, 1, o.seq_len).contiguous();
    auto logits = model->forward(x);
    auto loss =
        torch::nn::functional::cross_entropy(logits.reshape({-1, o.vocab_size}), y.reshape({-1}));
    optimizer.zero_grad();
    loss.backward();
    if (o.grad_clip > 0) torch::nn::utils::clip_grad_norm_(params, o.grad_clip);
    optimizer.step();

    const double l = loss.item<double>();
    if (!std::isfinite(l)) throw Error("make-demo: training diverged (loss is not finite)");
    if (step == 0) result.initial_loss = l;
    if (o.steps - step <= 50) tail_losses.push_back(l);
    DemoStep s{step + 1, o.steps, l, lr, seconds_since(train_start)};
    if (on_step) on_step(s);
    char msg[64];
    std::snprintf(msg, sizeof msg, "loss %.3f", l);
    task_report(ctx, "train", step + 1, o.steps, msg);
  }
  result.train_seconds = seconds_since(train_start);
  double sum = 0;
  for (double l : tail_losses)
    sum += l;
  result.final_loss = sum / double(tail_losses.size());

  // Held-out loss on fixed windows of the last stories.
  result.eval_loss = std::numeric_limits<double>::quiet_NaN();
  if (static_cast<int64_t>(eval_ids.size()) >= 2 * window) {
    torch::NoGradGuard no_grad;
    model->eval();
    const auto eval_data = torch::tensor(eval_ids, torch::kInt64);
    std::mt19937_64 eval_rng(o.seed + 1);
    std::uniform_int_distribution<int64_t> eval_pick(0, int64_t(eval_ids.size()) - window);
    double total = 0;
    const int batches = 8;
    for (int i = 0; i < batches; ++i) {
      task_check(ctx);
      auto batch = sample_batch(eval_data, eval_rng, eval_pick);
      auto logits = model->forward(batch.narrow(1, 0, o.seq_len).contiguous());
      total += torch::nn::functional::cross_entropy(logits.reshape({-1, o.vocab_size}),
                                                    batch.narrow(1, 1, o.seq_len).reshape({-1}))
                   .item<double>();
    }
    result.eval_loss = total / batches;
  }

  // (d) Save into the temporary directory, then swap it into place.
  task_check(ctx);
  task_report(ctx, "save", 0, 1);
  save_hf(*model, tok.get(), staged.path(), {}, ctx);
  task_check(ctx);
  staged.commit();
  task_report(ctx, "save", 1, 1);
  return result;
}

}  // namespace lorashear
