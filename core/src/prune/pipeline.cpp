#include "lorashear/prune/pipeline.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <optional>

#include "clock.h"
#include "lorashear/dist/distributed.h"
#include "lorashear/errors.h"
#include "lorashear/eval/perplexity.h"
#include "lorashear/io/checkpoint.h"
#include "lorashear/io/files.h"
#include "lorashear/io/text.h"
#include "lorashear/plan/memory_plan.h"
#include "lorashear/prune/knowledge.h"
#include "lorashear/prune/subnet.h"
#include "lorashear/run_log.h"

namespace lorashear {

void PruneOptions::validate() const {
  if (seq_len < 2) throw UsageError("--seq-len must be at least 2");
  if (!(holdout > 0 && holdout < 1)) throw UsageError("--holdout must be in (0, 1)");
  if (checkpoint_activations != "on" && checkpoint_activations != "off" &&
      checkpoint_activations != "auto")
    throw UsageError("--checkpoint-activations must be on, off or auto, not \"" +
                     checkpoint_activations + "\"");
  if (out_dir.empty()) throw UsageError("an output directory is required (--out DIR)");
  lora.validate();
  if (recover && keep_adapter)
    throw UsageError(
        "--keep-adapter and --recover: recovery folds its adapters into the weights, so there "
        "is no single adapter to keep; drop one of them");
  if (!export_gguf.empty()) {
    const auto parent = std::filesystem::absolute(export_gguf).parent_path();
    if (!std::filesystem::is_directory(parent))
      throw UsageError("--export-gguf " + export_gguf + ": the folder " + parent.string() +
                       " does not exist");
    if (std::filesystem::is_directory(export_gguf))
      throw UsageError("--export-gguf " + export_gguf + " is a folder; give a file name");
  }
  if (recover) {
    auto r = recovery;
    r.seq_len = seq_len;
    r.validate();
  }
  auto l = lhspg;
  l.method = method;
  l.validate();
}

namespace {

nlohmann::json layer_table(const ModelConfig& before, const ModelConfig& after) {
  auto out = nlohmann::json::array();
  for (int64_t i = 0; i < before.n_layers(); ++i) {
    const auto& b = before.layers[static_cast<size_t>(i)];
    const auto& a = after.layers[static_cast<size_t>(i)];
    out.push_back({{"layer", i},
                   {"heads", {b.n_heads, a.n_heads}},
                   {"kv_heads", {b.n_kv_heads, a.n_kv_heads}},
                   {"intermediate_size", {b.intermediate_size, a.intermediate_size}},
                   {"params",
                    {before.layer_attention_parameters(i) + before.layer_mlp_parameters(i) +
                         2 * before.hidden_size,
                     after.layer_attention_parameters(i) + after.layer_mlp_parameters(i) +
                         2 * after.hidden_size}}});
  }
  return out;
}

std::vector<std::string> load_target_texts(const ModelConfig& cfg) {
  std::vector<std::string> out;
  for (const auto& t : load_targets(cfg))
    out.push_back(t.text());
  return out;
}

}  // namespace

TextSplit split_text(const Tokenizer& tokenizer, const std::string& text_path, double holdout) {
  TextSplit t;
  t.all = tokenizer.encode(read_text_corpus(text_path));
  const auto split =
      static_cast<size_t>(std::llround(static_cast<double>(t.all.size()) * (1 - holdout)));
  t.train.assign(t.all.begin(), t.all.begin() + static_cast<long>(split));
  t.heldout.assign(t.all.begin() + static_cast<long>(split), t.all.end());
  return t;
}

namespace {

Error gguf_failed(const PruneOptions& o, const std::string& error) {
  return Error("the pruned model is saved in " + o.out_dir +
               ", but the GGUF export failed: " + error + " (retry with: lorashear convert " +
               o.out_dir + " --to gguf " + o.export_gguf + ")");
}

nlohmann::json prune_model_impl(
    LoadedModel& loaded, const std::string& text_path, const PruneOptions& o,
    const TaskContext* ctx, const std::function<void(const LhspgMetrics&)>& on_step,
    const std::function<void(const RecoveryMetrics&)>& on_recovery_step) {
  if (!loaded.tokenizer)
    throw InputError("the model has no tokenizer; pass one so the text can be tokenised");
  auto& model = *loaded.model;
  const auto t_start = std::chrono::steady_clock::now();
  // Data parallel (dist::current()): every rank computes the same model; rank 0 alone writes the
  // output, the report and the checkpoints, the other ranks write nothing.
  auto& ranks = dist::current();
  if (ranks.active() && o.lhspg.batch_size % ranks.world_size() != 0)
    throw UsageError(
        "--batch " + std::to_string(o.lhspg.batch_size) +
        " does not split evenly over WORLD_SIZE=" + std::to_string(ranks.world_size()) +
        " ranks (give a multiple of " + std::to_string(ranks.world_size()) + ")");
  const std::string checkpoint_dir =
      o.checkpoint_dir.empty() ? o.out_dir + ".checkpoint" : o.checkpoint_dir;
  if (o.resume) {
    auto done = complete_interrupted_run(checkpoint_dir, o.out_dir, "pruning_report.json");
    if (done.is_object() && done.contains("gguf") && done["gguf"].contains("error"))
      throw gguf_failed(o, done["gguf"]["error"].get<std::string>());
    if (done.is_object()) return done;
  }
  // Fail before the long run if the output cannot be written.
  std::optional<io::StagedDirectory> staged;
  if (ranks.is_root()) staged.emplace(o.out_dir, o.overwrite);
  // A checkpoint that cannot be trusted is refused before the long start-up. A run without
  // --resume starts over: the old checkpoints go, so that a later --resume cannot mix them (a
  // stale recovery checkpoint) with this run's.
  if (o.resume) {
    io::verify_checkpoint(checkpoint_dir + "/latest");
    io::verify_checkpoint(checkpoint_dir + "/recovery/latest");
  } else if (ranks.is_root()) {
    std::error_code ec;
    std::filesystem::remove_all(checkpoint_dir, ec);
  }
  // The LoRA targets decide what can be pruned (LORASHEAR.md §1): a node group whose producing
  // layers have no adapter is not in the search space. Resolving the plan against that space now
  // fails an impossible plan (too few targets for the ratio) before the perplexity and the run.
  DependencyOptions search_space;
  search_space.lora_targets = o.lora.targets;
  const auto base_deps = analyze_model(model, search_space);
  (void)resolve_plan(o.plan, base_deps);

  // Data: the text's tokens, the last `holdout` of them kept for perplexity.
  task_report(ctx, "data", 0, 1, "tokenising " + text_path);
  auto text = split_text(*loaded.tokenizer, text_path, o.holdout);
  const auto& tokens = text.all;
  const size_t split = text.train.size();
  auto& train = text.train;
  const auto& heldout = text.heldout;
  if (static_cast<int64_t>(heldout.size()) < o.seq_len)
    throw InputError(text_path + " is too short: its held-out part has " +
                     std::to_string(heldout.size()) + " tokens, fewer than one window of " +
                     std::to_string(o.seq_len) + " (give more text, or lower --seq-len)");
  WindowSampler sampler(std::move(train), o.seq_len, o.seed, text_path + " (training part)");

  PerplexityOptions popt;
  popt.seq_len = o.seq_len;
  popt.max_windows = o.eval_windows;
  popt.ranks = &ranks;  // each rank scores its share of the held-out windows
  model.eval();
  PerplexityResult ppl_before;
  if (o.dense_ppl > 0)
    ppl_before.ppl = o.dense_ppl;
  else
    ppl_before = perplexity(model, heldout, popt, ctx);
  const ModelConfig cfg_before = model.config();
  const int64_t params_before = model.num_parameters();

  // Recovery's categories, read now so that bad data fails before the long run; their dense
  // losses are the reference of the adaptive sampling.
  std::vector<std::string> warnings;
  RecoveryOptions recovery = o.recovery;
  std::map<std::string, double> dense_losses;
  if (o.recover) {
    recovery.seq_len = o.seq_len;
    recovery.seed = o.seed;
    if (recovery.stage1.steps > 0) {
      task_report(ctx, "recovery data", 0, 1, "dense losses per category");
      RecoveryData data(recovery, loaded.tokenizer);
      dense_losses = data.losses(model, recovery.stage1.batch_size, ctx);
      // Training on the pruning text's held-out end would make the reported perplexity a
      // training-set number: say so in the report.
      std::error_code ec;
      for (const auto& st : data.streams())
        for (const auto& f : st->category().files)
          if (std::filesystem::equivalent(f, text_path, ec))
            warnings.push_back("recovery category '" + st->category().name + "' reads " + f +
                               ", the pruning text: its held-out end is trained on, so the "
                               "perplexity after recovery is not held-out");
    }
  }

  // The plan's ratio is of the base model's parameters: it is resolved on `base_deps` (before
  // the adapters exist), then the counts carry over to the analysis with adapters (same ids).
  // Knowledge distribution (§2) on the first windows of the training part: the top-gamma node
  // groups join the plan's unprunable marks, unless the plan gives them a ratio itself.
  PruningPlan plan = o.plan;
  nlohmann::json knowledge = nullptr;
  if (o.analyze) {
    auto ko = o.knowledge;
    ko.seq_len = o.seq_len;
    ko.ranks = &ranks;  // each rank measures its share of the node groups
    std::vector<int64_t> eval(
        tokens.begin(), tokens.begin() + static_cast<long>(std::min<size_t>(
                                             split, static_cast<size_t>(ko.windows * ko.seq_len))));
    const auto k = analyze_knowledge(model, base_deps, eval, ko, ctx);
    knowledge = k.to_json();
    // Under a uniform plan one protected node group would keep every layer of its kind whole:
    // the analysis is reported, its protections are not applied.
    if (plan.uniform)
      knowledge["protections_not_applied"] =
          "same size in every layer: a protected node group would keep every layer of its kind "
          "whole";
    for (const auto& id : plan.uniform ? std::vector<std::string>{} : k.protected_ids) {
      const auto& g = base_deps.node_groups[static_cast<size_t>(base_deps.find_node_group(id))];
      if (plan.node_group_ratios.count(id) || plan.layer_ratios.count(g.layer)) continue;
      plan.unprunable.insert(id);
    }
  }
  auto resolved = resolve_plan(plan, base_deps);
  LoraConfig lora = o.lora;
  lora.seed = o.seed;
  attach_lora(model, lora);
  const auto deps = analyze_model(model);
  for (auto& e : resolved.entries) {
    const auto i = deps.find_node_group(base_deps.node_groups[e.node_group].id);
    if (i < 0)
      throw Error("prune: node group " + base_deps.node_groups[e.node_group].id +
                  " disappeared when the adapters were attached");
    e.node_group = static_cast<size_t>(i);
  }

  const nlohmann::json settings = {{"plan", plan.to_json()},
                                   {"lora",
                                    {{"rank", lora.rank},
                                     {"alpha", lora.alpha},
                                     {"dropout", lora.dropout},
                                     {"targets", lora.targets}}},
                                   {"lhspg",
                                    {{"warmup_steps", o.lhspg.warmup_steps},
                                     {"periods", o.lhspg.periods},
                                     {"period_steps", o.lhspg.period_steps},
                                     {"recovery_steps", o.lhspg.recovery_steps},
                                     {"batch_size", o.lhspg.batch_size},
                                     {"lr", o.lhspg.lr},
                                     {"epsilon", o.lhspg.epsilon},
                                     {"lambda", o.lhspg.lambda},
                                     {"lambda_amp", o.lhspg.lambda_amp},
                                     {"lambda_cmax", o.lhspg.lambda_cmax},
                                     {"magnitude_weight", o.lhspg.magnitude_weight},
                                     {"taylor_weight", o.lhspg.taylor_weight}}},
                                   {"seq_len", o.seq_len},
                                   {"holdout", o.holdout},
                                   {"seed", o.seed}};
  // A checkpoint belongs to one exact run: the model, the text and every setting.
  LhspgCheckpoint ckpt;
  ckpt.dir = checkpoint_dir;
  ckpt.every = o.checkpoint_every;
  ckpt.resume = o.resume;
  ckpt.settings =
      nlohmann::json{
          {"settings", settings},    {"method", o.method}, {"config", cfg_before.to_hf_json()},
          {"params", params_before}, {"text", text_path},  {"tokens", tokens.size()}}
          .dump();
  if (o.resume && !std::filesystem::exists(ckpt.dir + "/latest/state.json"))
    throw UsageError("--resume: no checkpoint in " + ckpt.dir);

  // Activation checkpointing for the training stages, decided from the memory plan of this run.
  MemoryPlanOptions mem;
  mem.batch = o.lhspg.batch_size;
  mem.seq_len = o.seq_len;
  mem.world_size = ranks.world_size();
  mem.weight_bytes = model.options().dtype == torch::kFloat32 ? 4 : 2;
  mem.lora = lora;
  mem.prune_ratio = plan.target_ratio;
  mem.periods = o.lhspg.periods;
  std::string checkpointing_why;
  const bool checkpointing =
      decide_activation_checkpointing(o.checkpoint_activations, model.config(), mem,
                                      model.options().device.is_cuda(), &checkpointing_why);
  model.set_activation_checkpointing(checkpointing);

  // A rank that stops answering is named with the step it was at, and where to resume from.
  if (ranks.active() && ckpt.every > 0)
    ranks.set_failure_hint("the last checkpoint, if one was written, is in " + ckpt.dir +
                           " (continue with --resume " + ckpt.dir + ")");
  const auto step_done = [&](const LhspgMetrics& m) {
    if (ranks.active()) ranks.note_progress("pruning step " + std::to_string(m.step));
    if (on_step) on_step(m);
  };
  const auto t_lhspg = std::chrono::steady_clock::now();
  auto lhspg = o.lhspg;
  lhspg.method = o.method;
  const auto result = run_lhspg(model, deps, resolved, sampler, lhspg, ctx, step_done, ckpt);
  const double lhspg_seconds = since(t_lhspg);

  task_report(ctx, "subnet", 0, 1);
  auto pruned = construct_subnet(model, deps, result.removed);
  pruned->set_activation_checkpointing(checkpointing);
  if (!o.keep_adapter) fold_lora(*pruned);
  pruned->eval();
  const auto ppl_after = perplexity(*pruned, heldout, popt, ctx);

  nlohmann::json recovery_report = nullptr;
  double ppl_recovered = 0;
  if (o.recover) {
    recovery.checkpoint_dir = ckpt.dir + "/recovery";
    recovery.checkpoint_every = o.checkpoint_every;
    recovery.resume =
        o.resume && std::filesystem::exists(recovery.checkpoint_dir + "/latest/state.json");
    const auto recovery_step_done = [&](const RecoveryMetrics& m) {
      if (ranks.active())
        ranks.note_progress("recovery stage " + std::to_string(m.stage) + " step " +
                            std::to_string(m.step));
      if (on_recovery_step) on_recovery_step(m);
    };
    recovery_report =
        recover_model(*pruned, loaded.tokenizer, recovery, dense_losses, ctx, recovery_step_done);
    ppl_recovered = perplexity(*pruned, heldout, popt, ctx).ppl;
  }

  task_check(ctx);
  task_report(ctx, "save", 0, 1);
  if (staged) {
    // Base weights only, in the dtype they were pruned in (a bf16 model stays bf16).
    SaveOptions save;
    save.dtype = pruned->options().dtype;
    save_hf(*pruned, loaded.tokenizer.get(), staged->path(), save, ctx);
    if (o.keep_adapter) save_lora_adapter(*pruned, staged->path() + "/adapter");
  }
  nlohmann::json report = {
      {"format", "lorashear-pruning-report"},
      {"version", 1},
      {"method", o.method},
      {"settings", settings},
      {"adapter", o.keep_adapter ? nlohmann::json("adapter") : nlohmann::json(nullptr)},
      {"data",
       {{"text", text_path},
        {"tokens", tokens.size()},
        {"train_tokens", split},
        {"heldout_tokens", heldout.size()},
        {"split", "the last " + std::to_string(o.holdout) + " of the tokens are held out"}}},
      {"parameters",
       {{"before", params_before},
        {"after", pruned->num_parameters()},
        {"removed_ratio",
         1.0 - static_cast<double>(pruned->num_parameters()) / static_cast<double>(params_before)},
        {"planned_removed_ratio", resolved.achieved_ratio}}},
      {"layers", layer_table(cfg_before, pruned->config())},
      {"loads_in", load_target_texts(pruned->config())},
      {"knowledge", knowledge},
      {"ppl",
       {{"before", ppl_before.ppl},
        {"after", o.recover ? ppl_recovered : ppl_after.ppl},
        {"pruned", ppl_after.ppl},
        {"protocol", ppl_after.protocol() + " of the held-out tokens"}}},
      {"recovery", recovery_report},
      {"warnings", warnings},
      {"pruning",
       {{"removed", result.removed},
        {"variable_groups_removed", result.removed.size()},
        {"zeroed_by_projection", result.zeroed_by_projection},
        {"zeroed_by_hard_projection", result.zeroed_by_hard_projection},
        {"hard_per_period", result.hard_per_period},
        {"final_loss", result.final_loss},
        {"loss", result.losses},
        {"steps", result.steps}}},
      {"seconds", {{"pruning", lhspg_seconds}, {"total", since(t_start)}}}};
  report["world_size"] = ranks.world_size();  // data-parallel processes (batch rows split)
  report["activation_checkpointing"] = {{"on", checkpointing}, {"why", checkpointing_why}};
  // The GGUF goes to its own path, written atomically; a failure there must not cost the run.
  std::string gguf_error;
  if (!o.export_gguf.empty() && staged) {
    try {
      task_report(ctx, "save", 0, 1, "GGUF " + o.export_gguf);
      GgufSaveOptions gopts;
      gopts.dtype = o.gguf_dtype;
      const auto g = save_gguf(*pruned, loaded.tokenizer.get(), o.export_gguf, gopts, ctx);
      report["gguf"] = {{"path", o.export_gguf},
                        {"architecture", g.architecture},
                        {"dtype", gguf_dtype_name(g.dtype)},
                        {"bytes", g.bytes},
                        {"as_f16", g.as_f16},
                        {"notes", g.notes}};
    } catch (const CancelledError&) {
      throw;
    } catch (const std::exception& e) {
      gguf_error = e.what();
      report["gguf"] = {{"path", o.export_gguf}, {"error", gguf_error}};
    }
  }
  if (staged) {
    const std::string text = report.dump(2) + "\n";
    io::write_file_atomic(staged->path() + "/pruning_report.json", text);
    io::mark_output_committing(ckpt.dir, o.out_dir + "/pruning_report.json", text);
    staged->commit();
    task_report(ctx, "save", 1, 1, "saved " + o.out_dir);
    std::error_code ec;
    std::filesystem::remove_all(ckpt.dir, ec);  // the run is complete
  } else {
    task_report(ctx, "save", 1, 1);
  }
  if (!gguf_error.empty()) throw gguf_failed(o, gguf_error);
  return report;
}

}  // namespace

nlohmann::json prune_model(LoadedModel& loaded, const std::string& text_path, const PruneOptions& o,
                           const TaskContext* ctx,
                           const std::function<void(const LhspgMetrics&)>& on_step,
                           const std::function<void(const RecoveryMetrics&)>& on_recovery_step) {
  o.validate();
  // A run refused because its output exists must not replace that run's record.
  if (!o.write_run_log || (!o.overwrite && std::filesystem::exists(o.out_dir)))
    return prune_model_impl(loaded, text_path, o, ctx, on_step, on_recovery_step);
  nlohmann::json settings = {{"method", o.method},
                             {"plan", o.plan.to_json()},
                             {"lora", {{"rank", o.lora.rank}, {"targets", o.lora.targets}}},
                             {"steps", o.lhspg.total_steps()},
                             {"periods", o.lhspg.periods},
                             {"batch_size", o.lhspg.batch_size},
                             {"lr", o.lhspg.lr},
                             {"epsilon", o.lhspg.epsilon},
                             {"lambda", o.lhspg.lambda},
                             {"seq_len", o.seq_len},
                             {"holdout", o.holdout},
                             {"seed", o.seed},
                             {"recover", o.recover}};
  std::error_code ec;
  const auto absolute = [&ec](const std::string& p) {
    return p.empty() ? p : std::filesystem::absolute(p, ec).string();
  };
  RunLogWriter log(run_dir_for(o.out_dir),
                   {{"kind", "prune"},
                    {"model", absolute(loaded.path)},
                    {"text", absolute(text_path)},
                    {"out", absolute(o.out_dir)},
                    {"total_steps", o.lhspg.total_steps()},
                    {"settings", settings}},
                   true, o.world_size);
  const int64_t recovery_offset = o.lhspg.total_steps();
  nlohmann::json report;
  run_logged(log, [&] {
    report = prune_model_impl(
        loaded, text_path, o, ctx,
        [&](const LhspgMetrics& m) {
          log.lhspg(m);
          if (on_step) on_step(m);
        },
        [&](const RecoveryMetrics& m) {
          log.recovery(m, recovery_offset);
          if (on_recovery_step) on_recovery_step(m);
        });
    log.update({{"ppl", report["ppl"]}, {"parameters", report["parameters"]}});
  });
  return report;
}

}  // namespace lorashear
