#include "lorashear/recover/recovery.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>

#include "clock.h"
#include "lorashear/data/instruct.h"
#include "lorashear/dist/distributed.h"
#include "lorashear/errors.h"
#include "lorashear/io/checkpoint.h"
#include "lorashear/io/files.h"
#include "lorashear/model/llama.h"
#include "lorashear/tokenizer/tokenizer.h"
#include "lorashear/train/state.h"
#include "lorashear/train/windows.h"

namespace lorashear {

void RecoveryOptions::split_budget(int64_t steps) {
  if (steps <= 0) throw UsageError("the recovery budget must be at least 1 step");
  if (instruct.empty()) {
    stage1.steps = steps;
    stage2.steps = 0;
  } else if (domains.empty()) {
    stage1.steps = 0;
    stage2.steps = steps;
  } else {
    stage1.steps = steps * 7 / 10;
    stage2.steps = steps - stage1.steps;
  }
}

void RecoveryOptions::validate() const {
  auto need = [](bool ok, const std::string& what) {
    if (!ok) throw UsageError(what);
  };
  need(seq_len >= 2, "--seq-len must be at least 2");
  need(instruct_seq_len >= 2, "--instruct-seq-len must be at least 2");
  need(val_sequences >= 1, "--val-sequences must be at least 1");
  need(sampling == "adaptive" || sampling == "uniform",
       "--sampling '" + sampling + "': expected adaptive or uniform");
  need(reestimate_every >= 1, "--reestimate-every must be at least 1");
  need(floor >= 0, "--floor must be >= 0");
  need(stage1_patience >= 0 && stage2_patience >= 0, "patience must be >= 0");
  need(eval_every >= 1, "--eval-every must be at least 1");
  need(instruct_validation > 0 && instruct_validation < 1,
       "--instruct-validation must be in (0, 1)");
  need(checkpoint_every >= 0, "--checkpoint-every must be >= 0");
  stage1.validate("--stage1-");
  stage2.validate("--stage2-");
  need(stage1.steps == 0 || !domains.empty(),
       "stage 1 needs pretraining-style data: give --domain FILE_OR_DIR (or --stage1-steps 0)");
  need(stage2.steps == 0 || !instruct.empty(),
       "stage 2 needs instruction data: give --instruct FILE (or --stage2-steps 0)");
  need(stage1.steps + stage2.steps > 0,
       "nothing to recover with: give --domain FILE_OR_DIR (stage 1) and/or --instruct FILE "
       "(stage 2), with steps for them");
  lora.validate();
}

// ---- data

RecoveryData::RecoveryData(const RecoveryOptions& o, std::shared_ptr<const Tokenizer> tokenizer,
                           const std::vector<int64_t>& start_at) {
  const auto categories = discover_categories(o.domains, o.corpus);
  PackingOptions p;
  p.seq_len = o.seq_len;
  p.validation = o.val_sequences;
  p.corpus = o.corpus;
  for (size_t i = 0; i < categories.size(); ++i) {
    p.seed = o.seed + 1000003ull * (i + 1);
    streams_.push_back(std::make_unique<CategoryStream>(categories[i], tokenizer, p,
                                                        i < start_at.size() ? start_at[i] : 0));
  }
}

std::vector<std::string> RecoveryData::names() const {
  std::vector<std::string> out;
  for (const auto& s : streams_)
    out.push_back(s->category().name);
  return out;
}

std::map<std::string, double> RecoveryData::losses(LlamaModelImpl& model, int64_t batch_size,
                                                   const TaskContext* ctx) {
  torch::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  std::map<std::string, double> out;
  for (const auto& s : streams_) {
    task_check(ctx);
    const auto& val = s->validation();
    double sum = 0;
    for (size_t at = 0; at < val.size(); at += static_cast<size_t>(batch_size)) {
      const size_t n = std::min(val.size() - at, static_cast<size_t>(batch_size));
      auto batch = torch::empty({static_cast<int64_t>(n), static_cast<int64_t>(val[at].size())},
                                torch::kLong);
      for (size_t b = 0; b < n; ++b)
        std::copy(val[at + b].begin(), val[at + b].end(),
                  batch.data_ptr<int64_t>() + b * val[at].size());
      sum += lm_loss(model, batch).item<double>() * static_cast<double>(n);
    }
    out[s->category().name] = sum / static_cast<double>(val.size());
  }
  if (was_training) model.train();
  return out;
}

std::map<std::string, double> sampling_weights(const std::map<std::string, double>& losses,
                                               const std::map<std::string, double>& dense,
                                               double floor) {
  std::map<std::string, double> delta, w;
  double mean = 0;
  for (const auto& [c, l] : losses) {
    auto it = dense.find(c);
    delta[c] = it == dense.end() ? 0.0 : std::max(0.0, l - it->second);
    mean += delta[c];
  }
  mean /= static_cast<double>(std::max<size_t>(losses.size(), 1));
  double total = 0;
  for (const auto& [c, d] : delta)
    total += w[c] = mean > 0 ? d + floor * mean : 1.0;
  for (auto& [c, x] : w)
    x /= total;
  return w;
}

// ---- the stages

namespace {

std::vector<torch::Tensor> clone_lora(LlamaModelImpl& model) {
  std::vector<torch::Tensor> out;
  for (const auto& t : lora_parameters(model))
    out.push_back(t.detach().clone());
  return out;
}

void restore_lora(LlamaModelImpl& model, const std::vector<torch::Tensor>& saved) {
  torch::NoGradGuard no_grad;
  auto params = lora_parameters(model);
  for (size_t i = 0; i < params.size() && i < saved.size(); ++i)
    params[i].copy_(saved[i]);
}

nlohmann::json to_json(const std::map<std::string, double>& m) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : m)
    j[k] = v;
  return j;
}

std::map<std::string, double> from_json(const nlohmann::json& j) {
  std::map<std::string, double> m;
  for (const auto& [k, v] : j.items())
    m[k] = v.get<double>();
  return m;
}

double instruct_loss(LlamaModelImpl& model, const std::vector<InstructExample>& set, int64_t bs) {
  torch::NoGradGuard no_grad;
  model.eval();
  double sum = 0, count = 0;
  for (size_t at = 0; at < set.size(); at += static_cast<size_t>(bs)) {
    std::vector<const InstructExample*> part;
    for (size_t i = at; i < std::min(set.size(), at + static_cast<size_t>(bs)); ++i)
      part.push_back(&set[i]);
    auto batch = InstructionSet::collate(part);
    const double n = batch.mask.sum().item<double>();
    sum += masked_lm_loss(model, batch).item<double>() * n;
    count += n;
  }
  model.train();
  return count > 0 ? sum / count : 0.0;
}

// One recovery run (LORASHEAR.md §4): its checkpoint and report, and the two stages' steps as
// member functions in the order run() takes them.
struct RecoveryRun {
  RecoveryRun(LlamaModelImpl& model, std::shared_ptr<const Tokenizer> tokenizer,
              const RecoveryOptions& o, const std::map<std::string, double>& dense_losses,
              const TaskContext* ctx, const std::function<void(const RecoveryMetrics&)>& on_step);

  nlohmann::json run();

  std::string settings_text() const;
  void read_checkpoint();
  void write_checkpoint(const LoraTrainer& trainer, nlohmann::json st,
                        const std::function<void(const std::string&)>& extra);
  void run_stage1();
  int64_t resume_stage1(LoraTrainer& trainer);
  void train_stage1(RecoveryData& data);
  std::map<std::string, double> estimate_gaps(RecoveryData& data, int64_t step);
  bool no_category_improves(int64_t step) const;
  std::vector<double> category_cdf(const std::vector<std::string>& names) const;
  torch::Tensor draw_stage1_batch(RecoveryData& data, const std::vector<std::string>& names,
                                  const std::vector<double>& cdf, int64_t step, int64_t micro,
                                  RecoveryMetrics& m);
  void save_stage1_checkpoint(const LoraTrainer& trainer, RecoveryData& data, int64_t step);
  void summarize_categories(RecoveryData& data);
  int64_t start_stage2(LoraTrainer& trainer, const InstructionSet& set);
  void run_stage2();
  torch::Tensor instruction_loss(InstructionSet& set, int64_t step, int64_t micro, int64_t& tokens);
  void evaluate_stage2(const InstructionSet& set, int64_t step, RecoveryMetrics& m);
  bool validation_stalled() const;
  void save_stage2_checkpoint(const LoraTrainer& trainer, int64_t step);
  void record_step(RecoveryMetrics& m, int stage, int64_t step, double loss, double tokens,
                   double step_seconds, double seconds_left) const;

  LlamaModelImpl& model;
  std::shared_ptr<const Tokenizer> tokenizer;
  const RecoveryOptions& o;
  const std::map<std::string, double>& dense_losses;
  const TaskContext* ctx;
  const std::function<void(const RecoveryMetrics&)>& on_step;
  const std::chrono::steady_clock::time_point t_start;
  // Data parallel (dist::current()): each rank trains on its rows of the same batches, gradients
  // averaged; the validation losses (category weights, early stopping) are computed whole on every
  // rank, so every decision is the same everywhere.
  dist::Distributed& ranks;

  // ---- checkpoint state
  const std::string latest;
  nlohmann::json state = nullptr;  // the checkpoint resumed from, or null
  const std::string settings;
  int resume_stage = 1;
  int64_t global_step = 0;

  nlohmann::json report;
  nlohmann::json s1;  // stage 1's part of the report (also in stage 2's checkpoints)
  // Stage 1: the sampling weights w_c, each category's best delta_c so far, and how many
  // estimates in a row improved none.
  std::map<std::string, double> weights, best_delta;
  int64_t without_gain = 0;
  // Stage 2: its report, evaluations without improvement, the best validation loss, its step and
  // adapter.
  nlohmann::json s2;
  int64_t bad = 0, best_step = 0;
  double best = 0;
  std::vector<torch::Tensor> best_lora;
};

RecoveryRun::RecoveryRun(LlamaModelImpl& model_, std::shared_ptr<const Tokenizer> tokenizer_,
                         const RecoveryOptions& o_,
                         const std::map<std::string, double>& dense_losses_,
                         const TaskContext* ctx_,
                         const std::function<void(const RecoveryMetrics&)>& on_step_)
    : model(model_),
      tokenizer(std::move(tokenizer_)),
      o(o_),
      dense_losses(dense_losses_),
      ctx(ctx_),
      on_step(on_step_),
      t_start(std::chrono::steady_clock::now()),
      ranks(dist::current()),
      latest(o_.checkpoint_dir + "/latest"),
      settings(settings_text()) {}

// The settings a checkpoint must have been written with to be resumed.
std::string RecoveryRun::settings_text() const {
  return nlohmann::json{{"config", model.config().to_hf_json()},
                        {"domains", o.domains},
                        {"instruct", o.instruct},
                        {"instruct_seq_len", o.instruct_seq_len},
                        {"seq_len", o.seq_len},
                        {"val_sequences", o.val_sequences},
                        {"seed", o.seed},
                        {"sampling", o.sampling},
                        {"reestimate_every", o.reestimate_every},
                        {"floor", o.floor},
                        {"stage1",
                         {o.stage1.steps, o.stage1.lr, o.stage1.batch_size, o.stage1.grad_accum,
                          o.stage1.warmup, o.stage1.precision}},
                        {"stage2",
                         {o.stage2.steps, o.stage2.lr, o.stage2.batch_size, o.stage2.grad_accum,
                          o.stage2.warmup, o.stage2.precision}},
                        {"lora", {o.lora.rank, o.lora.alpha, o.lora.targets}},
                        {"dense", to_json(dense_losses)}}
      .dump();
}

// With --resume: reads latest/state.json (which stage, which step) once the checkpoint is checked.
void RecoveryRun::read_checkpoint() {
  if (o.resume && !o.checkpoint_dir.empty()) io::verify_checkpoint(latest);
  if (o.resume) {
    if (o.checkpoint_dir.empty() || !std::filesystem::exists(latest + "/state.json"))
      throw UsageError("--resume: no recovery checkpoint in " + o.checkpoint_dir);
    try {
      std::ifstream in(latest + "/state.json");
      in >> state;
    } catch (const nlohmann::json::exception& e) {
      throw InputError(latest + "/state.json: not valid JSON: " + e.what());
    }
    if (state.value("settings", std::string()) != settings)
      throw UsageError(latest +
                       " was written by a recovery run with other settings; start a new run "
                       "or use the same settings");
    ranks.require_world_size(state.value("world_size", int64_t{1}), latest);
  }
  resume_stage = state.is_null() ? 1 : state.at("stage").get<int>();
  global_step = state.is_null() ? 0 : state.at("global_step").get<int64_t>();
}

// A checkpoint: the model's tensors, the optimiser, what else the stage needs, and state.json
// last, all in a staged directory renamed over `latest`.
// Rank 0 alone writes it (every rank holds the same state), with the world size.
void RecoveryRun::write_checkpoint(const LoraTrainer& trainer, nlohmann::json st,
                                   const std::function<void(const std::string&)>& extra) {
  if (!ranks.is_root()) return;
  st["world_size"] = ranks.world_size();
  io::StagedDirectory staged(latest, /*overwrite=*/true);
  save_model_state(model, staged.path() + "/model.safetensors");
  if (extra) extra(staged.path());
  trainer.save(staged.path() + "/optimizer.pt");
  io::write_file_atomic(staged.path() + "/state.json", st.dump() + "\n");
  io::write_checkpoint_manifest(staged.path());
  staged.commit();
}

// LORASHEAR.md §4: stage 1 (pretraining-style data, adaptively sampled), then stage 2
// (instruction data).
nlohmann::json RecoveryRun::run() {
  read_checkpoint();
  report = {{"format", "lorashear-recovery-report"}, {"version", 1}};
  report["settings"] = nlohmann::json::parse(settings);
  report["dense_loss"] = to_json(dense_losses);
  s1 = state.is_null()
           ? nlohmann::json{{"history", nlohmann::json::array()}, {"loss", nlohmann::json::array()}}
           : state.at("stage1");
  run_stage1();
  if (o.stage2.steps > 0) run_stage2();
  model.eval();
  report["seconds"] = since(t_start);
  return report;
}

// LORASHEAR.md §4.1: stage 1 on the categories' data, then what each category gave.
void RecoveryRun::run_stage1() {
  if (o.stage1.steps > 0 && resume_stage == 2) {
    report["stage1"] = s1;  // finished before the checkpoint
    return;
  }
  if (o.stage1.steps <= 0) return;
  std::vector<int64_t> consumed;
  if (!state.is_null()) consumed = state.at("consumed").get<std::vector<int64_t>>();
  task_report(ctx, "recovery data", 0, 1, "reading the categories");
  RecoveryData data(o, tokenizer, consumed);
  s1["sampling"] = o.sampling;
  s1["budget"] = o.stage1.steps;
  train_stage1(data);
  summarize_categories(data);
  report["stage1"] = s1;
}

// Stage 1 from a stage 1 checkpoint (the model, the optimiser, the weights and the patience
// count), or from its start; returns the first step to take.
int64_t RecoveryRun::resume_stage1(LoraTrainer& trainer) {
  int64_t first = 1;
  if (!state.is_null()) {
    load_model_state(model, latest + "/model.safetensors");
    trainer.load(latest + "/optimizer.pt");
    weights = from_json(state.at("weights"));
    best_delta = from_json(state.at("best_delta"));
    without_gain = state.at("without_gain").get<int64_t>();
    first = state.at("step").get<int64_t>() + 1;
  }
  return first;
}

// LORASHEAR.md §4.1: LoRA training on batches sampled by category weight, the weights
// re-estimated every `reestimate_every` steps; stops when no delta_c improves (patience) or the
// budget is spent; the adapter is folded in.
void RecoveryRun::train_stage1(RecoveryData& data) {
  const auto names = data.names();
  auto lora = o.lora;
  lora.seed = o.seed;
  attach_lora(model, lora);
  LoraTrainer trainer(model, o.stage1);
  const int64_t first = resume_stage1(trainer);
  bool stopped = false;
  const auto t1 = std::chrono::steady_clock::now();
  const int64_t per_step = o.stage1.batch_size * o.stage1.grad_accum;
  for (int64_t step = first; step <= o.stage1.steps; ++step) {
    task_check(ctx);
    RecoveryMetrics m;
    if ((step - 1) % o.reestimate_every == 0) {
      m.category_loss = estimate_gaps(data, step - 1);
      m.weights = weights;
      if (no_category_improves(step)) {
        stopped = true;
        break;
      }
    }
    const auto t0 = std::chrono::steady_clock::now();
    torch::manual_seed(o.seed * 7919 + static_cast<uint64_t>(step));  // LoRA dropout
    const auto cdf = category_cdf(names);
    const double loss = trainer.step(step, [&](int64_t micro) {
      // Every rank draws the whole batch (the streams stay in step) and trains on its rows.
      return lm_loss(model, dist::shard_rows(draw_stage1_batch(data, names, cdf, step, micro, m),
                                             ranks, "--stage1-batch"));
    });
    ++global_step;
    s1["loss"].push_back(loss);
    const double per = since(t1) / static_cast<double>(step - first + 1);
    record_step(m, 1, step, loss, static_cast<double>(per_step * o.seq_len), since(t0),
                per * static_cast<double>(o.stage1.steps - step + o.stage2.steps));
    if (on_step) on_step(m);
    task_report(ctx, "recovery stage 1", step, o.stage1.steps);
    if (o.checkpoint_every > 0 && !o.checkpoint_dir.empty() &&
        global_step % o.checkpoint_every == 0 && (step < o.stage1.steps || o.stage2.steps > 0))
      save_stage1_checkpoint(trainer, data, step);
  }
  const auto done = static_cast<int64_t>(s1["loss"].size());
  if (s1["history"].empty() || s1["history"].back()["step"].get<int64_t>() != done)
    estimate_gaps(data, done);  // the final losses and weights (an early stop has them already)
  s1["steps"] = done;
  s1["stopped_early"] = stopped;
  s1["seconds"] = since(t1);
  fold_lora(model);
}

// LORASHEAR.md §4.1: each category's validation loss L_c for the pruned model, its gap
// delta_c = max(0, L_c − L_c(dense)) and the sampling weights w_c ∝ delta_c + floor (uniform with
// --sampling uniform); records them in the report's history at `step`.
std::map<std::string, double> RecoveryRun::estimate_gaps(RecoveryData& data, int64_t step) {
  const auto losses = data.losses(model, o.stage1.batch_size, ctx);
  weights = o.sampling == "adaptive" ? sampling_weights(losses, dense_losses, o.floor)
                                     : sampling_weights(losses, {}, o.floor);  // uniform
  nlohmann::json delta = nlohmann::json::object();
  bool gain = false;
  for (const auto& [c, l] : losses) {
    auto it = dense_losses.find(c);
    const double d = it == dense_losses.end() ? l : std::max(0.0, l - it->second);
    delta[c] = d;
    auto b = best_delta.find(c);
    if (b == best_delta.end() || d < b->second - 1e-3) {
      gain = true;
      best_delta[c] = d;
    }
  }
  without_gain = gain ? 0 : without_gain + 1;
  s1["history"].push_back(
      {{"step", step}, {"loss", to_json(losses)}, {"delta", delta}, {"weights", to_json(weights)}});
  return losses;
}

// LORASHEAR.md §4.1: stop when no delta_c improved for `stage1_patience` estimates.
bool RecoveryRun::no_category_improves(int64_t step) const {
  return o.stage1_patience > 0 && without_gain >= o.stage1_patience && step > 1;
}

// The cumulative sampling weights of the categories, in the order of `names`.
std::vector<double> RecoveryRun::category_cdf(const std::vector<std::string>& names) const {
  std::vector<double> cdf;
  double acc = 0;
  for (const auto& n : names)
    cdf.push_back(acc += weights.count(n) ? weights.at(n) : 0.0);
  return cdf;
}

// LORASHEAR.md §4.1: a batch whose every sequence comes from category c with probability w_c
// (the next sequence of its stream); counts the draws in `m`.
torch::Tensor RecoveryRun::draw_stage1_batch(RecoveryData& data,
                                             const std::vector<std::string>& names,
                                             const std::vector<double>& cdf, int64_t step,
                                             int64_t micro, RecoveryMetrics& m) {
  auto& streams = data.streams();
  const double acc = cdf.empty() ? 0.0 : cdf.back();
  std::mt19937_64 rng(o.seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(step) * 131 +
                      static_cast<uint64_t>(micro));
  std::uniform_real_distribution<double> u(0.0, acc);
  auto batch = torch::empty({o.stage1.batch_size, o.seq_len + 1}, torch::kLong);
  for (int64_t b = 0; b < o.stage1.batch_size; ++b) {
    const double x = u(rng);
    const size_t c = std::min<size_t>(
        static_cast<size_t>(std::upper_bound(cdf.begin(), cdf.end(), x) - cdf.begin()),
        names.size() - 1);
    const auto seq = streams[c]->next();
    ++m.drawn[names[c]];
    std::copy(seq.begin(), seq.end(), batch.data_ptr<int64_t>() + b * (o.seq_len + 1));
  }
  return batch;
}

// Stage 1's checkpoint: where each stream is, the weights and the patience count.
void RecoveryRun::save_stage1_checkpoint(const LoraTrainer& trainer, RecoveryData& data,
                                         int64_t step) {
  std::vector<int64_t> used;
  for (const auto& s : data.streams())
    used.push_back(s->consumed());
  nlohmann::json st = {{"settings", settings},
                       {"stage", 1},
                       {"step", step},
                       {"global_step", global_step},
                       {"consumed", used},
                       {"weights", to_json(weights)},
                       {"best_delta", to_json(best_delta)},
                       {"without_gain", without_gain},
                       {"stage1", s1}};
  write_checkpoint(trainer, st, {});
}

// The categories (files, sequences used, epochs) and the loader's waits, into stage 1's report.
void RecoveryRun::summarize_categories(RecoveryData& data) {
  nlohmann::json cats = nlohmann::json::array(),
                 loader = {{"stalls", 0}, {"waited_seconds", 0.0}, {"startup_seconds", 0.0}};
  for (const auto& s : data.streams()) {
    cats.push_back({{"name", s->category().name},
                    {"files", s->category().files},
                    {"source", s->category().source},
                    {"validation_sequences", s->validation().size()},
                    {"sequences_consumed", s->consumed()},
                    {"epoch", s->epoch()},
                    {"skipped_lines", s->skipped_lines()}});
    loader["stalls"] = loader["stalls"].get<int64_t>() + s->stalls();
    loader["waited_seconds"] = loader["waited_seconds"].get<double>() + s->waited_seconds();
    loader["startup_seconds"] = loader["startup_seconds"].get<double>() + s->startup_seconds();
  }
  s1["categories"] = cats;
  s1["loader"] = loader;
}

// LORASHEAR.md §4.2: stage 2 from a stage 2 checkpoint (the model, the optimiser, the
// early-stopping state and the best adapter), or from its start with the validation loss of step 0
// as the best; returns the first step to take.
int64_t RecoveryRun::start_stage2(LoraTrainer& trainer, const InstructionSet& set) {
  int64_t first = 1;
  const std::string best_path = latest + "/best_adapter.safetensors";
  if (!state.is_null() && resume_stage == 2) {
    load_model_state(model, latest + "/model.safetensors");
    trainer.load(latest + "/optimizer.pt");
    s2 = state.at("stage2");
    first = state.at("step").get<int64_t>() + 1;
    bad = state.at("bad").get<int64_t>();
    best = state.at("best").get<double>();
    best_step = state.at("best_step").get<int64_t>();
    // The best adapter: load it through the model, then put the current one back.
    const auto current = clone_lora(model);
    load_model_state(model, best_path);
    best_lora = clone_lora(model);
    restore_lora(model, current);
  } else {
    best = instruct_loss(model, set.validation(), o.stage2.batch_size);
    best_lora = clone_lora(model);
    s2["validation"].push_back({{"step", 0}, {"loss", best}});
  }
  return first;
}

// LORASHEAR.md §4.2: LoRA training on instruction data (Alpaca template), early stopping on the
// validation loss; the best adapter is folded in.
// A step's line of the live record, the same fields in both stages: where the run is, its loss
// and learning rate, the speed of this step, and the time left at the present pace.
void RecoveryRun::record_step(RecoveryMetrics& m, int stage, int64_t step, double loss,
                              double tokens, double step_seconds, double seconds_left) const {
  const auto& t = stage == 1 ? o.stage1 : o.stage2;
  m.stage = stage;
  m.step = step;
  m.run_step = global_step;
  m.total_steps = t.steps;
  m.loss = loss;
  m.lr = t.lr_at(step);
  m.tokens_per_second = step_seconds > 0 ? tokens / step_seconds : 0;
  m.seconds_left = seconds_left;
}

void RecoveryRun::run_stage2() {
  task_report(ctx, "instruction data", 0, 1, "tokenising " + o.instruct);
  InstructionSet set(load_instructions(o.instruct, o.corpus), *tokenizer, o.instruct_seq_len,
                     o.instruct_validation, o.seed, o.instruct);
  auto lora = o.lora;
  lora.seed = o.seed + 1;
  attach_lora(model, lora);
  LoraTrainer trainer(model, o.stage2);
  s2 = {{"validation", nlohmann::json::array()}, {"loss", nlohmann::json::array()}};
  const int64_t first = start_stage2(trainer, set);
  s2["records"] = {{"train", set.train().size()},
                   {"validation", set.validation().size()},
                   {"dropped", set.dropped()},
                   {"truncated", set.truncated()}};
  const auto t2 = std::chrono::steady_clock::now();
  bool stopped = false;
  for (int64_t step = first; step <= o.stage2.steps; ++step) {
    task_check(ctx);
    const auto t0 = std::chrono::steady_clock::now();
    torch::manual_seed(o.seed * 7919 + 0x5EED + static_cast<uint64_t>(step));  // LoRA dropout
    int64_t tokens = 0;
    const double loss = trainer.step(
        step, [&](int64_t micro) { return instruction_loss(set, step, micro, tokens); });
    ++global_step;
    s2["loss"].push_back(loss);
    RecoveryMetrics m;
    record_step(m, 2, step, loss, static_cast<double>(tokens), since(t0),
                since(t2) / static_cast<double>(step - first + 1) *
                    static_cast<double>(o.stage2.steps - step));
    if (step % o.eval_every == 0 || step == o.stage2.steps) evaluate_stage2(set, step, m);
    if (on_step) on_step(m);
    task_report(ctx, "recovery stage 2", step, o.stage2.steps);
    if (validation_stalled()) {
      stopped = true;
      break;
    }
    if (o.checkpoint_every > 0 && !o.checkpoint_dir.empty() &&
        global_step % o.checkpoint_every == 0 && step < o.stage2.steps)
      save_stage2_checkpoint(trainer, step);
  }
  restore_lora(model, best_lora);
  fold_lora(model);
  s2["steps"] = static_cast<int64_t>(s2["loss"].size());
  s2["budget"] = o.stage2.steps;
  s2["best_step"] = best_step;
  s2["best_validation_loss"] = best;
  s2["stopped_early"] = stopped;
  s2["seconds"] = since(t2);
  s2["template"] = "alpaca";
  report["stage2"] = s2;
}

// LORASHEAR.md §4.2: the loss of micro-batch `micro` of `step`, on the response tokens only;
// adds the batch's tokens to `tokens`.
torch::Tensor RecoveryRun::instruction_loss(InstructionSet& set, int64_t step, int64_t micro,
                                            int64_t& tokens) {
  auto batch = set.batch((step - 1) * o.stage2.grad_accum + micro, o.stage2.batch_size);
  tokens += batch.tokens.numel();
  if (!ranks.active()) return masked_lm_loss(model, batch);
  // Each rank's rows hold a different number of response tokens: its mean is weighted by
  // its share, so the mean over the ranks is the whole batch's mean.
  const double all = batch.mask.sum().item<double>();
  batch.tokens = dist::shard_rows(batch.tokens, ranks, "--stage2-batch");
  batch.mask = dist::shard_rows(batch.mask, ranks, "--stage2-batch");
  const double mine = batch.mask.sum().item<double>();
  return masked_lm_loss(model, batch) *
         (all > 0 ? mine * static_cast<double>(ranks.world_size()) / all : 1.0);
}

// LORASHEAR.md §4.2 (early stopping): the validation loss at `step`; a better one keeps the
// adapter as the best, else one more evaluation without improvement.
void RecoveryRun::evaluate_stage2(const InstructionSet& set, int64_t step, RecoveryMetrics& m) {
  const double v = instruct_loss(model, set.validation(), o.stage2.batch_size);
  m.validation_loss = v;
  s2["validation"].push_back({{"step", step}, {"loss", v}});
  if (v < best - 1e-6) {
    best = v;
    best_step = step;
    best_lora = clone_lora(model);
    bad = 0;
  } else {
    ++bad;
  }
}

// LORASHEAR.md §4.2 (early stopping): stop after `stage2_patience` evaluations without a better
// validation loss.
bool RecoveryRun::validation_stalled() const {
  return o.stage2_patience > 0 && bad >= o.stage2_patience;
}

// Stage 2's checkpoint: the early-stopping state and the best adapter so far.
void RecoveryRun::save_stage2_checkpoint(const LoraTrainer& trainer, int64_t step) {
  nlohmann::json st = {{"settings", settings},       {"stage", 2},   {"step", step},
                       {"global_step", global_step}, {"bad", bad},   {"best", best},
                       {"best_step", best_step},     {"stage1", s1}, {"stage2", s2}};
  write_checkpoint(trainer, st, [&](const std::string& dir) {
    const auto current = clone_lora(model);
    restore_lora(model, best_lora);
    save_model_state(model, dir + "/best_adapter.safetensors");
    restore_lora(model, current);
  });
}

}  // namespace

nlohmann::json recover_model(LlamaModelImpl& model, std::shared_ptr<const Tokenizer> tokenizer,
                             const RecoveryOptions& o,
                             const std::map<std::string, double>& dense_losses,
                             const TaskContext* ctx,
                             const std::function<void(const RecoveryMetrics&)>& on_step) {
  o.validate();
  if (!tokenizer) throw InputError("recovery needs the model's tokenizer");
  if (o.stage1.steps > 0 && o.sampling == "adaptive" && dense_losses.empty())
    throw UsageError(
        "adaptive sampling compares each category's loss with the dense model's: give the "
        "dense model (--dense MODEL), or use --sampling uniform");
  return RecoveryRun(model, std::move(tokenizer), o, dense_losses, ctx, on_step).run();
}

}  // namespace lorashear
