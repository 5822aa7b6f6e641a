#include "lorashear/prune/sweep.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <sstream>

#include "clock.h"
#include "lorashear/errors.h"
#include "lorashear/eval/perplexity.h"
#include "lorashear/io/files.h"
#include "lorashear/io/json.h"
#include "lorashear/io/loader.h"

namespace lorashear {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const std::vector<std::string> kMethods = {"lhspg", "magnitude", "taylor", "loraprune", "random"};

std::string ratio_text(double r) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", r);
  std::string s = buf;
  // 0.35 → "0.35", 0.125 → "0.125" (two decimals unless more are needed)
  if (std::abs(std::stod(s) - r) > 1e-9) {
    std::snprintf(buf, sizeof buf, "%g", r);
    s = buf;
  }
  return s;
}

LoadedModel load(const SweepOptions& o, const std::string& path, const TaskContext* ctx) {
  LoadOptions lo;
  lo.model = o.model_options;
  lo.keep_checkpoint_dtype = o.keep_checkpoint_dtype;
  lo.map_weights = o.map_weights;
  lo.tokenizer_path = path == o.model ? o.tokenizer : std::string();
  lo.require_tokenizer = true;
  return load_model(path, lo, ctx);
}

json task_figures(const std::vector<TaskResult>& results) {
  json tasks = json::object();
  for (const auto& r : results) {
    tasks[r.name] = {{"acc", r.acc},
                     {"acc_stderr", r.acc_stderr},
                     {"acc_norm", r.has_norm() ? json(r.acc_norm) : json(nullptr)},
                     {"headline", r.headline()},
                     {"items", r.items}};
  }
  return tasks;
}

json evaluate(LlamaModelImpl& model, const Tokenizer& tokenizer, const std::vector<TaskData>& tasks,
              const SweepOptions& o, const TaskContext* ctx) {
  json out = json::object();
  if (tasks.empty()) return out;
  const auto results = evaluate_tasks(model, tokenizer, tasks, o.task_options, ctx);
  out["tasks"] = task_figures(results);
  const auto m = task_means(results);
  out["mean"] = m.headline;
  out["mean_acc"] = m.acc;
  return out;
}

void write_outputs(const SweepOptions& o, const json& results) {
  io::write_file_atomic(o.out_dir + "/results.json", results.dump(2) + "\n");
  io::write_file_atomic(o.out_dir + "/results.csv", sweep_csv(results));
  io::write_file_atomic(o.out_dir + "/results.md", sweep_markdown(results));
}

std::string fixed(const json& v, int digits, double scale = 1.0) {
  if (!v.is_number()) return "–";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v.get<double>() * scale);
  return buf;
}

/// The tasks in the order the sweep ran them.
std::vector<std::string> task_names(const json& results) {
  std::vector<std::string> names;
  for (const auto& n : results.value("task_order", json::array()))
    names.push_back(n.get<std::string>());
  return names;
}

}  // namespace

void SweepOptions::validate() const {
  if (model.empty()) throw UsageError("the sweep needs a model");
  if (text.empty()) throw UsageError("the sweep needs a pruning text (--text FILE)");
  if (out_dir.empty()) throw UsageError("the sweep needs an output folder (--out DIR)");
  if (ratios.empty()) throw UsageError("give the ratios to sweep (--ratios 0.2,0.35,0.5)");
  if (methods.empty()) throw UsageError("give the methods to sweep (--methods lhspg,magnitude)");
  for (double r : ratios)
    if (!(r > 0 && r < 1))
      throw UsageError("ratio " + ratio_text(r) +
                       " is outside (0, 1): it is the fraction of the "
                       "parameters to remove");
  for (const auto& m : methods)
    if (std::find(kMethods.begin(), kMethods.end(), m) == kMethods.end())
      throw UsageError("unknown method \"" + m +
                       "\"; the methods are lhspg, magnitude, taylor, loraprune, random");
  auto ids = run_ids();
  std::sort(ids.begin(), ids.end());
  if (std::adjacent_find(ids.begin(), ids.end()) != ids.end())
    throw UsageError("a method or a ratio is given twice");
  auto p = prune;
  p.out_dir = out_dir + "/runs/x";
  p.validate();
  if (bench) speed.validate();
  if (task_options.batch < 1 || task_options.limit < 0)
    throw UsageError("task batch must be at least 1 and the limit not negative");
}

std::vector<std::string> SweepOptions::run_ids() const {
  std::vector<std::string> ids;
  for (const auto& m : methods)
    for (double r : ratios)
      ids.push_back(m + "-" + ratio_text(r));
  return ids;
}

json SweepOptions::to_json() const {
  const auto& l = prune.lhspg;
  const auto& r = prune.recovery;
  return {
      {"model", model},
      {"tokenizer", tokenizer},
      {"text", text},
      {"ratios", ratios},
      {"methods", methods},
      {"plan", prune.plan.to_json()},
      {"lora",
       {{"rank", prune.lora.rank}, {"alpha", prune.lora.alpha}, {"targets", prune.lora.targets}}},
      {"lhspg",
       {{"warmup_steps", l.warmup_steps},
        {"periods", l.periods},
        {"period_steps", l.period_steps},
        {"recovery_steps", l.recovery_steps},
        {"batch_size", l.batch_size},
        {"lr", l.lr},
        {"epsilon", l.epsilon},
        {"lambda", l.lambda},
        {"magnitude_weight", l.magnitude_weight},
        {"taylor_weight", l.taylor_weight}}},
      {"analyze", prune.analyze},
      {"seq_len", prune.seq_len},
      {"holdout", prune.holdout},
      {"eval_windows", prune.eval_windows},
      {"seed", prune.seed},
      {"recover", prune.recover},
      {"recovery",
       {{"domains", r.domains},
        {"instruct", r.instruct},
        {"stage1_steps", r.stage1.steps},
        {"stage2_steps", r.stage2.steps},
        {"sampling", r.sampling}}},
      {"tasks", tasks},
      {"task_data", task_data},
      {"task_limit", task_options.limit},
      {"bench", bench},
      {"speed",
       {{"prompt", speed.prompt},
        {"generate", speed.generate},
        {"batch", speed.batch},
        {"reps", speed.reps}}},
      {"device", model_options.device.str()},
      {"dtype", keep_checkpoint_dtype ? std::string("auto") : dtype_name(model_options.dtype)}};
}

std::vector<std::string> sweep_missing(const json& results) {
  std::vector<std::string> out;
  for (const auto& run : results.value("runs", json::array()))
    if (run.value("status", "") != "done") out.push_back(run.value("id", ""));
  return out;
}

json run_sweep(const SweepOptions& o, const TaskContext* ctx,
               const std::function<void(const json&)>& on_update) {
  o.validate();
  // Task files are read before anything is written or loaded: a typo must not leave a sweep
  // folder whose settings a corrected command would then be refused by.
  std::vector<TaskFile> task_files;
  if (!o.task_data.empty()) {
    task_files = resolve_task_files(o.tasks, o.task_data);
  } else if (!o.tasks.empty()) {
    throw UsageError("--tasks needs the task files: --task-data DIR_OR_FILES");
  }
  const auto tasks = load_tasks(task_files);
  const auto settings = o.to_json();
  const auto settings_path = o.out_dir + "/sweep.json";
  // sweep.json is written once the dense model has been read and evaluated: a wrong model or
  // text path must not leave settings that the corrected command would be refused by.
  const bool resuming = fs::exists(settings_path);
  if (resuming) {
    const auto old = io::read_json_file(settings_path);
    if (old != settings) {
      std::string diff;
      for (const auto& [k, v] : settings.items())
        if (!old.contains(k) || old[k] != v) diff += (diff.empty() ? "" : ", ") + k;
      throw UsageError(o.out_dir + " holds a sweep with other settings (" + diff +
                       " differ): resume it with the same settings or choose another --out");
    }
  }
  std::error_code ec;
  fs::create_directories(o.out_dir + "/runs", ec);
  if (ec) throw Error("cannot create " + o.out_dir + "/runs: " + ec.message());

  json results = {{"format", "lorashear-sweep"},
                  {"version", 1},
                  {"settings", settings},
                  {"task_order", json::array()},
                  {"runs", json::array()}};
  for (const auto& f : task_files)
    results["task_order"].push_back(f.name);
  for (const auto& m : o.methods)
    for (double r : o.ratios)
      results["runs"].push_back(
          {{"id", m + "-" + ratio_text(r)}, {"method", m}, {"ratio", r}, {"status", "missing"}});

  // The dense model: loaded once, evaluated once (cached in OUT/dense.json).
  task_report(ctx, "sweep", 0, static_cast<int64_t>(o.run_ids().size()), "dense model");
  // Kept for the whole sweep only to measure the speed-ups against.
  const auto dense_path = o.out_dir + "/dense.json";
  LoadedModel dense;
  if (o.bench || !fs::exists(dense_path)) dense = load(o, o.model, ctx);
  json dense_json;
  if (fs::exists(dense_path)) {
    dense_json = io::read_json_file(dense_path);
  } else {
    const auto t0 = std::chrono::steady_clock::now();
    const auto text = split_text(*dense.tokenizer, o.text, o.prune.holdout);
    PerplexityOptions popt;
    popt.seq_len = o.prune.seq_len;
    popt.max_windows = o.prune.eval_windows;
    dense.model->eval();
    const auto ppl = perplexity(*dense.model, text.heldout, popt, ctx);
    dense_json = {{"parameters", dense.model->num_parameters()},
                  {"ppl", ppl.ppl},
                  {"ppl_protocol", ppl.protocol() + " of the held-out tokens"}};
    dense_json.update(evaluate(*dense.model, *dense.tokenizer, tasks, o, ctx));
    dense_json["seconds"] = since(t0);
    io::write_file_atomic(dense_path, dense_json.dump(2) + "\n");
  }
  if (!resuming) io::write_file_atomic(settings_path, settings.dump(2) + "\n");
  results["dense"] = dense_json;
  write_outputs(o, results);
  if (on_update) on_update(results);

  auto& runs = results["runs"];
  for (size_t i = 0; i < runs.size(); ++i) {
    auto& run = runs[i];
    const auto id = run["id"].get<std::string>();
    const auto run_dir = o.out_dir + "/runs/" + id;
    const auto result_path = run_dir + "/result.json";
    if (fs::exists(result_path)) {
      run = io::read_json_file(result_path);
      write_outputs(o, results);
      if (on_update) on_update(results);
      continue;
    }
    task_check(ctx);
    task_report(ctx, "sweep", static_cast<int64_t>(i), static_cast<int64_t>(runs.size()),
                "pruning " + id);
    const auto t0 = std::chrono::steady_clock::now();
    try {
      // A run killed while writing its model leaves the staging folder (.model.tmp-PID) behind.
      if (fs::is_directory(run_dir, ec))
        for (const auto& entry : fs::directory_iterator(run_dir, ec))
          if (entry.path().filename().string().rfind(".model.tmp-", 0) == 0)
            fs::remove_all(entry.path(), ec);
      auto fresh = load(o, o.model, ctx);
      PruneOptions p = o.prune;
      p.method = run["method"].get<std::string>();
      p.plan.target_ratio = run["ratio"].get<double>();
      p.out_dir = run_dir + "/model";
      p.overwrite = true;  // a model left by a run killed before its result.json
      p.checkpoint_dir = run_dir + "/checkpoint";
      p.resume = p.checkpoint_every > 0 && fs::exists(p.checkpoint_dir + "/latest/state.json");
      p.dense_ppl = dense_json["ppl"].get<double>();
      p.export_gguf.clear();
      const auto report = prune_model(fresh, o.text, p, ctx);
      fresh = LoadedModel{};
      json r = {{"id", id},
                {"method", p.method},
                {"ratio", p.plan.target_ratio},
                {"status", "done"},
                {"model_dir", p.out_dir},
                {"parameters", report["parameters"]["after"]},
                {"removed_ratio", report["parameters"]["removed_ratio"]},
                {"ppl", report["ppl"]["after"]},
                {"ppl_pruned", report["ppl"]["pruned"]},
                {"pruning_seconds", report["seconds"]["pruning"]}};
      task_report(ctx, "sweep", static_cast<int64_t>(i), static_cast<int64_t>(runs.size()),
                  "evaluating " + id);
      auto pruned = load(o, p.out_dir, ctx);
      r.update(evaluate(*pruned.model, *pruned.tokenizer, tasks, o, ctx));
      if (o.bench) {
        const auto c = compare_speed(*dense.model, *pruned.model, o.speed, ctx);
        r["prefill_speedup"] = c.prefill_ratio.median;
        r["decode_speedup"] = c.decode_ratio.median;
        r["speed"] = to_json(c);
      }
      r["seconds"] = since(t0);
      io::write_file_atomic(result_path, r.dump(2) + "\n");
      run = r;
    } catch (const CancelledError&) {
      write_outputs(o, results);
      if (on_update) on_update(results);
      throw;
    } catch (const std::exception& e) {
      // One impossible run (say, a ratio this model's plan cannot reach) must not cost the rest.
      run["status"] = "failed";
      run["error"] = e.what();
    }
    write_outputs(o, results);
    if (on_update) on_update(results);
  }
  task_report(ctx, "sweep", static_cast<int64_t>(runs.size()), static_cast<int64_t>(runs.size()));
  return results;
}

std::string sweep_markdown(const json& results) {
  const auto tasks = task_names(results);
  const bool speed = results["settings"].value("bench", false);
  std::ostringstream s;
  s << "| Method | Ratio | Params |";
  for (const auto& t : tasks)
    s << " " << t << " |";
  if (!tasks.empty()) s << " Mean |";
  s << " PPL |";
  if (speed) s << " Prefill × | Decode × |";
  s << "\n|---|---|---|";
  for (size_t i = 0; i < tasks.size() + (tasks.empty() ? 0 : 1); ++i)
    s << "---|";
  s << "---|";
  if (speed) s << "---|---|";
  s << "\n";
  auto row = [&](const std::string& method, const std::string& ratio, const json& r) {
    s << "| " << method << " | " << ratio << " | ";
    if (r.contains("parameters") && r["parameters"].is_number())
      s << std::fixed << std::setprecision(3) << r["parameters"].get<double>() / 1e6 << "M";
    else
      s << "–";
    s << " |";
    for (const auto& t : tasks) {
      const json v =
          r.contains("tasks") && r["tasks"].contains(t) ? r["tasks"][t]["headline"] : json(nullptr);
      s << " " << fixed(v, 2, 100.0) << " |";
    }
    if (!tasks.empty()) s << " " << fixed(r.value("mean", json(nullptr)), 2, 100.0) << " |";
    s << " " << fixed(r.value("ppl", json(nullptr)), 2) << " |";
    if (speed)
      s << " " << fixed(r.value("prefill_speedup", json(nullptr)), 2) << " | "
        << fixed(r.value("decode_speedup", json(nullptr)), 2) << " |";
    s << "\n";
  };
  if (results.contains("dense")) {
    json d = results["dense"];
    d["prefill_speedup"] = 1.0;
    d["decode_speedup"] = 1.0;
    row("Dense", "0%", d);
  }
  for (const auto& r : results["runs"]) {
    const std::string ratio =
        std::to_string(static_cast<int>(std::lround(r["ratio"].get<double>() * 100))) + "%";
    const auto status = r.value("status", "");
    if (status == "done") {
      row(r["method"].get<std::string>(), ratio, r);
    } else {
      row(r["method"].get<std::string>() + " (" + status + ")", ratio, json::object());
    }
  }
  s << "\nTasks: acc_norm where lm-eval-harness reports it (not BoolQ, WinoGrande), else acc, in "
       "%. PPL: "
    << results.value("dense", json::object()).value("ppl_protocol", std::string("held-out"))
    << ". Speed-ups: pruned over dense tokens/s, median of alternating repetitions.\n";
  return s.str();
}

std::string sweep_csv(const json& results) {
  const auto tasks = task_names(results);
  std::ostringstream s;
  s << "id,method,ratio,status,parameters,removed_ratio,ppl";
  for (const auto& t : tasks)
    s << "," << t << "_acc," << t << "_acc_norm";
  s << ",mean,mean_acc,prefill_speedup,decode_speedup,seconds\n";
  auto num = [](const json& r, const char* key) -> std::string {
    if (!r.contains(key) || !r[key].is_number()) return "";
    std::ostringstream v;
    v << std::setprecision(10) << r[key].get<double>();
    return v.str();
  };
  auto line = [&](const json& r, const std::string& id, const std::string& method,
                  const std::string& ratio, const std::string& status) {
    s << id << "," << method << "," << ratio << "," << status << "," << num(r, "parameters") << ","
      << num(r, "removed_ratio") << "," << num(r, "ppl");
    for (const auto& t : tasks) {
      const json tr = r.contains("tasks") && r["tasks"].contains(t) ? r["tasks"][t] : json();
      s << "," << num(tr, "acc") << "," << num(tr, "acc_norm");
    }
    s << "," << num(r, "mean") << "," << num(r, "mean_acc") << "," << num(r, "prefill_speedup")
      << "," << num(r, "decode_speedup") << "," << num(r, "seconds") << "\n";
  };
  if (results.contains("dense")) {
    json d = results["dense"];
    d["removed_ratio"] = 0.0;
    line(d, "dense", "dense", "0", "done");
  }
  for (const auto& r : results["runs"])
    line(r, r.value("id", ""), r.value("method", ""), num(r, "ratio"), r.value("status", ""));
  return s.str();
}

}  // namespace lorashear
