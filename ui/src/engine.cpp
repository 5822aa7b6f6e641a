#include "lorashear/ui/engine.h"

#include <spdlog/spdlog.h>
#include <QCoreApplication>
#include <QFileInfo>
#include <QThreadPool>
#include <QTimer>

#include <chrono>

#include <filesystem>

#include "document.h"
#include "lorashear/errors.h"
#include "lorashear/eval/perplexity.h"
#include "lorashear/eval/speed.h"
#include "lorashear/eval/tasks.h"
#include "lorashear/io/files.h"
#include "lorashear/io/gguf.h"
#include "lorashear/io/text.h"
#include "lorashear/model/config.h"
#include "lorashear/model/interrupt.h"
#include "lorashear/model/llama.h"
#include "lorashear/model/lora.h"
#include "lorashear/prune/knowledge.h"
#include "lorashear/prune/pipeline.h"
#include "lorashear/prune/plan.h"
#include "lorashear/prune/sweep.h"
#include "lorashear/tokenizer/tokenizer.h"
#include "lorashear/viewers/threads.h"

namespace lorashear {

namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

enum Result { kFinished, kFailed, kCancelled };

std::vector<int64_t> tokenize_file(const ModelDocument& doc, const QString& text_path) {
  if (!doc.loaded.tokenizer)
    throw InputError(doc.path + ": the model has no tokenizer, so it cannot read text");
  const auto tokens = doc.loaded.tokenizer->encode(read_text_corpus(text_path.toStdString()));
  if (tokens.empty()) throw InputError(text_path.toStdString() + ": the text is empty");
  return tokens;
}

const ModelDocument& need_weights(const std::shared_ptr<const ModelDocument>& doc) {
  if (!doc) throw UsageError("no model is open");
  if (!doc->has_weights)
    throw UsageError(doc->path + " is a configuration without weights: open a model with weights");
  return *doc;
}

// The weights of a published document. Tasks run one at a time and the GUI never reads weights, so
// the task holding the document may use (and, like the knowledge analysis, temporarily change)
// them.
LlamaModelImpl& task_model(const ModelDocument& doc) {
  return const_cast<LlamaModelImpl&>(*doc.loaded.model);
}

// A document whose last owner, often the GUI thread, frees it on a pool thread: freeing a large
// model's weights takes long (the global pool is waited for when the application ends).
// Loads an export back the way another tool would (with `adapter`, a PEFT folder, attached) and
// compares its logits with `model`'s on a fixed batch; throws naming `target` when they differ by
// more than `tolerance` of their range. Returns the difference. Stages 1 and 2 of "export".
double check_export(LlamaModelImpl& model, const std::string& path, const std::string& adapter,
                    double tolerance, const std::string& target, const TaskContext& ctx) {
  ctx.report("export", 1, 3, "loading it back");
  LoadOptions lo;
  lo.model.device = model.options().device;
  lo.adapter_path = adapter;
  auto back = load_model(path, lo, &ctx);
  ctx.report("export", 2, 3, "comparing the logits");
  torch::NoGradGuard no_grad;
  auto tokens = torch::arange(1, 33, torch::kLong)
                    .remainder(model.config().vocab_size)
                    .view({1, 32})
                    .to(lo.model.device);
  const auto expected = model.forward(tokens).to(torch::kFloat32);
  const auto got = back.model->forward(tokens).to(torch::kFloat32);
  const double scale = std::max(1e-6, expected.abs().max().item<double>());
  const double diff = (expected - got).abs().max().item<double>() / scale;
  if (!(diff <= tolerance))
    throw Error(target + ": the exported model's logits differ from the open model's by " +
                std::to_string(diff) + " of their range (allowed " + std::to_string(tolerance) +
                "): the export was not kept");
  ctx.check();
  return diff;
}

// Keys of the handoffs between the GUI thread, the worker and the thread pool (threads.h).
const char kToWorker = 0, kToGui = 0, kToPool = 0;

std::shared_ptr<ModelDocument> new_document() {
  return std::shared_ptr<ModelDocument>(new ModelDocument, [](ModelDocument* d) {
    auto* app = QCoreApplication::instance();
    if (app != nullptr && QThread::currentThread() == app->thread()) {
      const Handoff queueing(&kToPool);
      QThreadPool::globalInstance()->start([d] {
        handoff_receive(&kToPool);
        delete d;
      });
    } else {
      delete d;
    }
  });
}

// The weights' dtype of Preferences: "auto" keeps the checkpoint's (LoadOptions).
void apply_dtype(LoadOptions& lo, const QString& dtype) {
  lo.keep_checkpoint_dtype = dtype == "auto";
  if (!lo.keep_checkpoint_dtype) lo.model.dtype = parse_dtype(dtype.toStdString());
}

}  // namespace

// ---- MetricsBuffer

void MetricsBuffer::push(const QString& series, double x, double y, double wall) {
  std::lock_guard<std::mutex> lock(mutex_);
  points_.push_back({series, x, y, wall});
}

QVector<MetricPoint> MetricsBuffer::drain() {
  std::lock_guard<std::mutex> lock(mutex_);
  QVector<MetricPoint> out;
  out.swap(points_);
  return out;
}

size_t MetricsBuffer::pending() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<size_t>(points_.size());
}

// ---- Engine

Engine::Engine(QObject* parent) : QObject(parent) {
  qRegisterMetaType<EngineProgress>();
  qRegisterMetaType<MetricPoint>();
  qRegisterMetaType<QVector<MetricPoint>>();
  thread_.setObjectName("lorashear-engine");
  worker_ = new QObject;
  worker_->moveToThread(&thread_);
  connect(&thread_, &QThread::finished, worker_, &QObject::deleteLater);
  thread_.start();
  {
    const Handoff queueing(&kToWorker);
    QMetaObject::invokeMethod(
        worker_,
        [] {
          handoff_receive(&kToWorker);
          lower_thread_priority();
        },
        Qt::QueuedConnection);
  }
  timer_.setInterval(100);
  connect(&timer_, &QTimer::timeout, this, &Engine::poll);
}

Engine::~Engine() {
  cancel_ = true;
  thread_.quit();
  thread_.wait();
}

void Engine::setPaused(bool paused) {
  if (!busy_ || pause_ == paused) return;
  pause_ = paused;
  spdlog::info("{}: {}", task_.toStdString(), paused ? "paused" : "resumed");
}

qint64 Engine::documentParameters() const {
  return document_ ? document_->deps.total.params : 0;
}

void Engine::cancel() {
  if (!busy_) return;
  cancel_ = true;
  spdlog::info("{}: cancel requested", task_.toStdString());
}

bool Engine::submit(const QString& name, Job job) {
  if (busy_) {
    spdlog::warn("{}: refused, {} is still running", name.toStdString(), task_.toStdString());
    return false;
  }
  busy_ = true;
  task_ = name;
  cancel_ = false;
  pause_ = false;
  document_modified_ = false;
  metrics_.drain();
  started_ = stage_started_ = now_seconds();
  {
    std::lock_guard<std::mutex> lock(progress_mutex_);
    progress_ = EngineProgress{};
    progress_.task = name;
    progress_dirty_ = true;
  }
  timer_.start();
  spdlog::info("{}: started", name.toStdString());
  emit taskStarted(name);
  const Handoff queueing(&kToWorker);
  QMetaObject::invokeMethod(
      worker_,
      [this, name, job = std::move(job)] {
        handoff_receive(&kToWorker);
        TaskContext ctx;
        ctx.cancel = &cancel_;
        ctx.pause = &pause_;
        ctx.on_progress = [this](const Progress& p) {
          std::lock_guard<std::mutex> lock(progress_mutex_);
          const auto stage = QString::fromStdString(p.stage);
          if (stage != progress_.stage) stage_started_ = now_seconds();
          progress_.stage = stage;
          progress_.message = QString::fromStdString(p.message);
          progress_.done = p.done;
          progress_.total = p.total;
          progress_dirty_ = true;
        };
        int outcome = kFinished;
        Outcome result;
        QString text;
        try {
          // Long forward passes stop within one decoder layer on cancel.
          ForwardInterrupt interrupt(&ctx);
          result = job(ctx, metrics_);
          text = result.summary;
        } catch (const CancelledError&) {
          outcome = kCancelled;
        } catch (const std::exception& e) {
          outcome = kFailed;
          text = QString::fromStdString(e.what());
        }
        if (outcome != kFailed && cancel_) outcome = kCancelled;
        const Handoff queueing(&kToGui);
        QMetaObject::invokeMethod(
            this,
            [this, name, outcome, text, apply = std::move(result.apply)]() mutable {
              handoff_receive(&kToGui);
              finish(name, outcome, text, std::move(apply));
            },
            Qt::QueuedConnection);
      },
      Qt::QueuedConnection);
  return true;
}

void Engine::poll() {
  EngineProgress snapshot;
  bool dirty = false;
  {
    std::lock_guard<std::mutex> lock(progress_mutex_);
    const double now = now_seconds();
    progress_.elapsed = now - started_;
    if (progress_.total > 0 && progress_.done > 0 && progress_.done < progress_.total) {
      const double rate = (now - stage_started_) / static_cast<double>(progress_.done);
      progress_.eta = rate * static_cast<double>(progress_.total - progress_.done);
    } else {
      progress_.eta = -1;
    }
    dirty = progress_dirty_ || busy_;
    progress_dirty_ = false;
    snapshot = progress_;
  }
  if (dirty) emit progressChanged(snapshot);
  auto points = metrics_.drain();
  if (!points.isEmpty()) emit metricsReady(points);
}

void Engine::finish(const QString& task, int outcome, const QString& text,
                    std::function<void()> apply) {
  poll();  // the last progress and metrics before the end
  timer_.stop();
  busy_ = false;
  task_.clear();
  const auto seconds = now_seconds() - started_;
  if (outcome == kFinished) {
    if (apply) apply();
    spdlog::info("{}: finished in {:.2f} s{}{}", task.toStdString(), seconds,
                 text.isEmpty() ? "" : " — ", text.toStdString());
    emit taskFinished(task, text);
  } else if (outcome == kCancelled) {
    spdlog::warn("{}: cancelled after {:.2f} s", task.toStdString(), seconds);
    emit taskCancelled(task);
  } else {
    spdlog::error("{}: {}", task.toStdString(), text.toStdString());
    emit taskFailed(task, text);
  }
  emit idle();
  if (outcome != kFinished && document_modified_ && document_) {
    // The task changed the weights in memory before it stopped: read them again.
    spdlog::info("reopening {}: the stopped task had changed it in memory", document_->path);
    openModel(QString::fromStdString(document_->path), open_options_);
  }
}

QStringList Engine::availableDevices() {
  QStringList out{"cpu"};
  if (torch::cuda::is_available())
    for (int64_t i = 0; i < static_cast<int64_t>(torch::cuda::device_count()); ++i)
      out << QString("cuda:%1").arg(i);
  return out;
}

bool Engine::openModel(const QString& path, const OpenOptions& options) {
  const std::string p = path.toStdString();
  if (busy_) return false;
  open_options_ = options;
  return submit(QString("Open %1").arg(QFileInfo(path).fileName()),
                [this, p, options](const TaskContext& ctx, MetricsBuffer&) -> Outcome {
                  auto doc = new_document();
                  doc->path = p;
                  doc->device = options.device.toStdString();
                  doc->dtype = options.dtype.toStdString();
                  const std::filesystem::path fp(p);
                  if (!std::filesystem::exists(fp))
                    throw InputError(p + ": no such file or folder");
                  auto t0 = now_seconds();
                  // A config.json, or a folder with a configuration and no weights: traced without
                  // weights.
                  const std::string config_path = config_only_path(p);
                  if (!config_path.empty()) {
                    ctx.report("read configuration", 0, 1);
                    const auto config = ModelConfig::from_file(config_path);
                    if (options.dtype == "auto")  // as the loader would decide for its weights
                      doc->dtype = dtype_name(config_dtype(config, parse_device(doc->device)));
                    doc->load_seconds = now_seconds() - t0;
                    ctx.check();
                    ctx.report("trace", 0, 1, "on the meta device");
                    t0 = now_seconds();
                    doc->trace = trace_config(config);
                  } else {
                    LoadOptions lo;
                    lo.model.device = parse_device(options.device.toStdString());
                    apply_dtype(lo, options.dtype);
                    lo.adapter_path = options.adapter.toStdString();
                    doc->loaded = load_model(p, lo, &ctx);
                    doc->dtype = dtype_name(doc->loaded.model->options().dtype);
                    doc->has_weights = true;
                    if (doc->loaded.format == ModelFormat::Gguf)
                      doc->gguf_metadata = gguf_metadata(p);
                    doc->load_seconds = now_seconds() - t0;
                    ctx.check();
                    ctx.report("trace", 0, 1);
                    t0 = now_seconds();
                    doc->trace = trace_model(*doc->loaded.model);
                  }
                  ctx.check();
                  ctx.report("dependency analysis", 0, 1);
                  doc->deps = analyze_dependencies(doc->trace);
                  doc->trace_seconds = now_seconds() - t0;
                  ctx.check();
                  const auto summary =
                      QString(
                          "%1 layers, %2 operators, %3 node groups (load %4 s, trace + "
                          "analysis %5 s)")
                          .arg(doc->trace.config.n_layers())
                          .arg(doc->trace.nodes.size())
                          .arg(doc->deps.node_groups.size())
                          .arg(doc->load_seconds, 0, 'f', 2)
                          .arg(doc->trace_seconds, 0, 'f', 2);
                  std::shared_ptr<const ModelDocument> published = std::move(doc);
                  return {[this, published] {
                            document_ = published;
                            importance_.clear();
                            comparison_ = {};
                            emit documentChanged();
                          },
                          summary};
                });
}

bool Engine::evaluatePerplexity(const QString& text_path, qint64 max_windows) {
  auto doc = document_;
  return submit(
      "Perplexity",
      [doc, text_path, max_windows](const TaskContext& ctx, MetricsBuffer& metrics) -> Outcome {
        const auto& d = need_weights(doc);
        ctx.report("tokenize", 0, 1, text_path.toStdString());
        const auto tokens = tokenize_file(d, text_path);
        ctx.check();
        PerplexityOptions o;
        o.max_windows = max_windows;
        const auto r = perplexity(task_model(d), tokens, o, &ctx);
        metrics.push("perplexity", 0, r.ppl, r.seconds);
        return {{},
                QString("perplexity %1 on %2 (%3)")
                    .arg(r.ppl, 0, 'f', 3)
                    .arg(QFileInfo(text_path).fileName(), QString::fromStdString(r.protocol()))};
      });
}

bool Engine::analyzeKnowledge(const QString& text_path, qint64 windows) {
  auto doc = document_;
  return submit("Knowledge analysis",
                [this, doc, text_path, windows](const TaskContext& ctx, MetricsBuffer&) -> Outcome {
                  const auto& d = need_weights(doc);
                  const auto tokens = tokenize_file(d, text_path);
                  KnowledgeOptions o;
                  o.windows = windows;
                  o.validate();
                  // The analysis zeroes groups of the model and restores them exactly.
                  const auto r = analyze_knowledge(task_model(d), d.deps, tokens, o, &ctx);
                  std::map<std::string, double> values;
                  for (const auto& g : r.groups)
                    values[g.id] = g.normalized;
                  return {[this, doc, values] {
                            if (document_ != doc) return;
                            importance_ = values;
                            emit importanceChanged();
                          },
                          QString("base loss %1, %2 node groups measured, %3 protected (%4)")
                              .arg(r.base_loss, 0, 'f', 4)
                              .arg(r.groups.size())
                              .arg(r.protected_ids.size())
                              .arg(QString::fromStdString(r.protocol))};
                });
}

}  // namespace lorashear

namespace lorashear {

namespace {

/// The Run dock's settings and the plan editor's plan as the pipeline's options (shared by a run
/// and an experiment sweep).
PruneOptions prune_options(const RunSettings& settings, const QString& plan_json) {
  PruneOptions o;
  o.plan = PruningPlan::from_json(nlohmann::json::parse(plan_json.toStdString()),
                                  "the plan editor's plan");
  o.method = settings.method.toStdString();
  o.analyze = false;  // the plan editor's locks are the protections
  o.lora.rank = settings.lora_rank;
  o.lora.alpha = 2.0 * static_cast<double>(settings.lora_rank);
  if (!settings.lora_targets.isEmpty()) {
    o.lora.targets.clear();
    for (const auto& t : settings.lora_targets)
      o.lora.targets.push_back(t.toStdString());
  }
  o.lhspg.periods = settings.periods;
  o.lhspg.split_budget(settings.steps);
  o.lhspg.lr = settings.lr;
  o.lhspg.epsilon = settings.epsilon;
  o.lhspg.lambda = settings.lambda;
  o.lhspg.batch_size = settings.batch;
  o.seq_len = settings.seq_len;
  o.eval_windows = settings.eval_windows;
  o.out_dir = settings.out_dir.toStdString();
  o.overwrite = true;
  o.checkpoint_every = settings.checkpoint_every;
  o.checkpoint_activations = settings.checkpoint_activations.toStdString();
  o.resume = settings.resume;
  o.recover = settings.recover;
  if (settings.recover) {
    for (const auto& d : settings.domains)
      o.recovery.domains.push_back(d.toStdString());
    o.recovery.instruct = settings.instruct.toStdString();
    o.recovery.sampling = settings.sampling.toStdString();
    if (o.recovery.domains.empty() && o.recovery.instruct.empty())
      throw UsageError(
          "recovery needs data: add a domain (text, folder or JSONL) or instruction data");
    o.recovery.split_budget(settings.recover_steps);
  }
  return o;
}

}  // namespace

bool Engine::runPruning(const RunSettings& settings, const QString& plan_json) {
  auto doc = document_;
  const auto open_options = open_options_;
  const bool ok = submit(
      "Prune",
      [this, doc, settings, plan_json](const TaskContext& ctx, MetricsBuffer& metrics) -> Outcome {
        const auto& d = need_weights(doc);
        auto o = prune_options(settings, plan_json);
        o.validate();
        const auto t0 = std::chrono::steady_clock::now();
        auto wall = [t0] {
          return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        };
        document_modified_ = true;  // from here on the weights in memory change
        auto& loaded = const_cast<LoadedModel&>(d.loaded);
        const auto report = prune_model(
            loaded, settings.text.toStdString(), o, &ctx,
            [&](const LhspgMetrics& m) {
              const auto x = static_cast<double>(m.step);
              const double w = wall();
              metrics.push("loss", x, m.loss, w);
              metrics.push("lr", x, m.lr, w);
              metrics.push("tokens/s", x, m.tokens_per_second, w);
              metrics.push("zeroed", x, static_cast<double>(m.zeroed), w);
              metrics.push("scheduled", x, static_cast<double>(m.scheduled), w);
              metrics.push("period", x, static_cast<double>(m.period), w);
              for (const auto& [id, v] : m.sparsity)
                metrics.push(QString("sparsity:%1").arg(QString::fromStdString(id)), x, v, w);
            },
            [&, recovery_step = o.lhspg.total_steps()](const RecoveryMetrics& m) mutable {
              // Recovery steps count on after the pruning steps, across both stages.
              const auto x = static_cast<double>(++recovery_step);
              const double w = wall();
              metrics.push("recovery", x, m.loss, w);
              metrics.push("lr", x, m.lr, w);
              metrics.push("tokens/s", x, m.tokens_per_second, w);
              metrics.push("stage", x, m.stage, w);
              for (const auto& [c, v] : m.category_loss)
                metrics.push(QString("validation:%1").arg(QString::fromStdString(c)), x, v, w);
              for (const auto& [c, v] : m.weights)
                metrics.push(QString("weight:%1").arg(QString::fromStdString(c)), x, v, w);
              if (m.validation_loss >= 0)
                metrics.push("validation:instructions", x, m.validation_loss, w);
            });
        const auto ppl = report.value("ppl", nlohmann::json::object());
        auto summary = QString("wrote %1; perplexity %2 → %3")
                           .arg(settings.out_dir)
                           .arg(ppl.value("before", 0.0), 0, 'f', 3)
                           .arg(ppl.value("pruned", ppl.value("after", 0.0)), 0, 'f', 3);
        if (settings.recover)
          summary += QString(" → %1 recovered").arg(ppl.value("after", 0.0), 0, 'f', 3);
        return {{}, summary};
      });
  if (ok) {
    // Once it succeeds, the pruned model replaces the document (the one in memory was changed).
    auto* once = new QObject(this);
    connect(this, &Engine::taskFinished, once,
            [this, once, settings, open_options](const QString& task) {
              if (task == "Prune")  // after this task's idle()
                QTimer::singleShot(0, this, [this, settings, open_options] {
                  openModel(settings.out_dir, open_options);
                });
              once->deleteLater();
            });
    connect(this, &Engine::idle, once, [once] { once->deleteLater(); });
  }
  return ok;
}

}  // namespace lorashear

namespace lorashear {

bool Engine::compareWith(const QString& other_path, const QString& text_path, qint64 windows) {
  CompareSettings settings;
  settings.text = text_path;
  settings.windows = windows;
  return compareWith(other_path, settings);
}

bool Engine::compareWith(const QString& other_path, const CompareSettings& settings) {
  auto doc = document_;
  const auto options = open_options_;
  const QString text_path = settings.text;
  const qint64 windows = settings.windows;
  const bool ok = submit(
      "Compare",
      [this, doc, other_path, text_path, windows, options, settings](const TaskContext& ctx,
                                                                     MetricsBuffer&) -> Outcome {
        const auto& open = need_weights(doc);
        const std::string op = other_path.toStdString();
        if (!std::filesystem::exists(op)) throw InputError(op + ": no such file or folder");
        ctx.report("load", 0, 1, op);
        LoadOptions lo;
        lo.model.device = parse_device(options.device.toStdString());
        apply_dtype(lo, options.dtype);
        auto other = new_document();
        other->path = op;
        other->loaded = load_model(op, lo, &ctx);
        other->has_weights = true;
        ctx.check();
        ctx.report("trace", 0, 1, op);
        other->trace = trace_model(*other->loaded.model);
        other->deps = analyze_dependencies(other->trace);
        const auto& a = open.trace.config;
        const auto& b = other->trace.config;
        if (a.n_layers() != b.n_layers() || a.hidden_size != b.hidden_size ||
            a.vocab_size != b.vocab_size)
          throw InputError(op + " is not the same architecture as " + open.path + ": " +
                           std::to_string(b.n_layers()) + " layers, hidden size " +
                           std::to_string(b.hidden_size) + ", vocabulary " +
                           std::to_string(b.vocab_size) + " against " +
                           std::to_string(a.n_layers()) + ", " + std::to_string(a.hidden_size) +
                           ", " + std::to_string(a.vocab_size));
        // Task files are read before the long measurements: a bad one fails at once.
        std::vector<TaskFile> task_files;
        if (!settings.task_data.isEmpty()) {
          std::vector<std::string> names, data;
          for (const auto& t : settings.tasks)
            names.push_back(t.toStdString());
          for (const auto& t : settings.task_data)
            data.push_back(t.toStdString());
          task_files = resolve_task_files(names, data);
        }
        const auto tasks = load_tasks(task_files);
        Comparison c;
        c.open_is_dense = open.deps.total.params >= other->deps.total.params;
        const ModelDocument& dense = c.open_is_dense ? open : *other;
        const ModelDocument& pruned = c.open_is_dense ? *other : open;
        c.text = text_path;
        const std::vector<const ModelDocument*> docs{&dense, &pruned};
        for (size_t i = 0; i < docs.size(); ++i) {
          const auto& d = *docs[i];
          auto& f = i == 0 ? c.dense : c.pruned;
          f.path = QString::fromStdString(d.path);
          f.parameters = d.deps.total.params;
          f.flops_per_token = d.deps.total.flops;
          const auto which = std::string(i == 0 ? "dense" : "pruned");
          if (!text_path.isEmpty()) {
            ctx.report("perplexity", static_cast<int64_t>(i), 2, which);
            PerplexityOptions po;
            po.max_windows = windows;
            const auto r = perplexity(task_model(d), tokenize_file(d, text_path), po, &ctx);
            f.perplexity = r.ppl;
            f.perplexity_protocol = QString::fromStdString(r.protocol());
          }
          if (!tasks.empty()) {
            if (!d.loaded.tokenizer)
              throw InputError(d.path + " has no tokenizer: the tasks cannot be scored");
            TaskEvalOptions to;
            to.limit = settings.task_limit;
            const auto results =
                evaluate_tasks(task_model(d), *d.loaded.tokenizer, tasks, to, &ctx);
            for (const auto& r : results)
              f.task_accuracy[QString::fromStdString(r.name)] = r.headline();
            f.task_mean = task_means(results).headline;
            if (i == 0) {
              for (const auto& r : results)
                c.tasks << QString::fromStdString(r.name);
              c.task_protocol =
                  QString::fromStdString(task_protocol(task_model(d), *d.loaded.tokenizer));
            }
          }
        }
        // Speed as `lorashear bench --compare`: the two models alternate.
        SpeedOptions so;
        so.prompt = settings.prompt;
        so.generate = settings.generate;
        so.reps = settings.reps;
        const auto speed = compare_speed(task_model(dense), task_model(pruned), so, &ctx);
        for (int i = 0; i < 2; ++i) {
          auto& f = i == 0 ? c.dense : c.pruned;
          const auto& r = i == 0 ? speed.a : speed.b;
          f.prefill_tokens_per_second = r.prefill.median;
          f.decode_tokens_per_second = r.decode.median;
          f.ttft_ms = r.ttft.median * 1e3;
        }
        c.prefill_speedup = speed.prefill_ratio.median;
        c.prefill_speedup_min = speed.prefill_ratio.min;
        c.prefill_speedup_max = speed.prefill_ratio.max;
        c.decode_speedup = speed.decode_ratio.median;
        c.decode_speedup_min = speed.decode_ratio.min;
        c.decode_speedup_max = speed.decode_ratio.max;
        c.speed_protocol =
            QString("prompt %1, %2 tokens decoded, %3 alternating repetitions%4")
                .arg(speed.a.prompt)
                .arg(speed.a.generate)
                .arg(speed.a.samples.size())
                .arg(speed.a.note.empty() ? QString()
                                          : "; " + QString::fromStdString(speed.a.note));
        // Node groups by id: the variable groups each model keeps, by original index.
        for (const auto& g : dense.deps.node_groups) {
          if (g.size == 0 || g.group_prefix.empty()) continue;
          GroupDiff diff;
          diff.id = QString::fromStdString(g.id);
          diff.kind = QString::fromStdString(g.kind);
          diff.layer = g.layer;
          diff.before = g.size;
          const auto k = pruned.deps.find_node_group(g.id);
          const NodeGroup* p = k >= 0 ? &pruned.deps.node_groups[static_cast<size_t>(k)] : nullptr;
          diff.after = p ? p->size : 0;
          // Indices are recorded (lorashear_original_indices) when the pruned model is ours;
          // without them a smaller group cannot tell which variable groups went.
          std::vector<int64_t> kept = p ? p->original_index : std::vector<int64_t>{};
          const auto& layers = pruned.trace.config.layers;
          const bool recorded = g.layer >= 0 && static_cast<size_t>(g.layer) < layers.size() &&
                                (!layers[static_cast<size_t>(g.layer)].kv_origin.empty() ||
                                 !layers[static_cast<size_t>(g.layer)].channel_origin.empty());
          diff.indices_known = diff.after == diff.before || diff.after == 0 || recorded;
          if (diff.indices_known) {
            std::sort(kept.begin(), kept.end());
            for (const auto idx : g.original_index)
              if (!std::binary_search(kept.begin(), kept.end(), idx)) diff.removed.push_back(idx);
          }
          c.groups.push_back(diff);
        }
        const auto summary =
            QString("%1 → %2 parameters (%3% removed), prefill %4 → %5 tokens/s")
                .arg(c.dense.parameters)
                .arg(c.pruned.parameters)
                .arg(100.0 *
                         (1.0 - static_cast<double>(c.pruned.parameters) /
                                    static_cast<double>(std::max<qint64>(1, c.dense.parameters))),
                     0, 'f', 1)
                .arg(c.dense.prefill_tokens_per_second, 0, 'f', 0)
                .arg(c.pruned.prefill_tokens_per_second, 0, 'f', 0);
        return {[this, c] {
                  comparison_ = c;
                  emit comparisonChanged();
                },
                summary};
      });
  return ok;
}

bool Engine::runSweep(const RunSettings& run, const QString& plan_json,
                      const SweepSettings& sweep) {
  auto doc = document_;
  const auto options = open_options_;
  return submit(
      "Experiment",
      [this, doc, run, plan_json, sweep, options](const TaskContext& ctx,
                                                  MetricsBuffer&) -> Outcome {
        const auto& d = need_weights(doc);
        SweepOptions o;
        o.model = d.path;
        o.text = run.text.toStdString();
        // The run's output folder and resume flag are the sweep's, set per run.
        o.prune = prune_options(run, plan_json);
        for (double x : sweep.ratios)
          o.ratios.push_back(x);
        for (const auto& m : sweep.methods)
          o.methods.push_back(m.toStdString());
        for (const auto& t : sweep.task_data)
          o.task_data.push_back(t.toStdString());
        for (const auto& t : sweep.tasks)
          o.tasks.push_back(t.toStdString());
        o.task_options.limit = sweep.task_limit;
        o.bench = sweep.bench;
        o.model_options.device = parse_device(options.device.toStdString());
        LoadOptions lo;
        apply_dtype(lo, options.dtype);
        o.model_options.dtype = lo.model.dtype;
        o.keep_checkpoint_dtype = lo.keep_checkpoint_dtype;
        o.out_dir = sweep.out_dir.toStdString();
        auto publish = [this](const nlohmann::json& results) {
          const auto text = QString::fromStdString(results.dump());
          const Handoff queueing(&kToGui);
          QMetaObject::invokeMethod(
              this,
              [this, text] {
                handoff_receive(&kToGui);
                sweep_results_ = text;
                emit sweepChanged(text);
              },
              Qt::QueuedConnection);
        };
        const auto results = run_sweep(o, &ctx, publish);
        const auto missing = sweep_missing(results);
        return {{},
                QString("%1 runs in %2%3")
                    .arg(results["runs"].size())
                    .arg(sweep.out_dir)
                    .arg(missing.empty() ? QString() : QString(", %1 failed").arg(missing.size()))};
      });
}

bool Engine::documentHasAdapter() const {
  return document_ && document_->has_weights && document_->loaded.model->lora() != nullptr;
}

bool Engine::exportModel(const QString& dir, const QString& dtype, bool keep_adapter,
                         qint64 shard_bytes) {
  auto doc = document_;
  return submit(
      "Export",
      [doc, dir, dtype, keep_adapter, shard_bytes](const TaskContext& ctx,
                                                   MetricsBuffer&) -> Outcome {
        const auto& d = need_weights(doc);
        auto& model = task_model(d);
        const bool adapter = model.lora() != nullptr;
        SaveOptions so;
        so.dtype = parse_dtype(dtype.toStdString());
        so.max_shard_bytes = shard_bytes;
        // Written beside the target and swapped in once checked; an old export stays until then.
        io::StagedDirectory staged(dir.toStdString(), /*overwrite=*/true);
        const std::string out = staged.path();
        ctx.report("export", 0, 3, "writing the weights");
        {
          torch::NoGradGuard no_grad;
          // Merged: W + s·B·A written, then taken out again (the open model keeps its adapter).
          const bool merge = adapter && !keep_adapter;
          if (merge) merge_lora(model);
          try {
            save_hf(model, d.loaded.tokenizer.get(), out, so, &ctx);
          } catch (...) {
            if (merge) unmerge_lora(model);
            throw;
          }
          if (merge) unmerge_lora(model);
          if (adapter && keep_adapter) save_lora_adapter(model, out + "/adapter");
        }
        ctx.check();
        int shards = 0;
        for (const auto& entry : std::filesystem::directory_iterator(out)) {
          const auto name = entry.path().filename().string();
          if (name.rfind("model-", 0) == 0 && entry.path().extension() == ".safetensors") ++shards;
        }
        // Load it back the way another tool would and compare the logits on a fixed batch.
        const double diff =
            check_export(model, out, adapter && keep_adapter ? out + "/adapter" : std::string(),
                         so.dtype == torch::kFloat32 ? 1e-4 : 0.1, dir.toStdString(), ctx);
        staged.commit();
        return {{},
                QString("wrote %1 (%2%3%4); reloaded: logits within %5 of the open model's")
                    .arg(dir, dtype, shards > 0 ? QString(", %1 shards").arg(shards) : QString(),
                         adapter ? (keep_adapter ? QString(", adapter in adapter/")
                                                 : QString(", adapter merged"))
                                 : QString())
                    .arg(diff, 0, 'g', 2)};
      });
}

QStringList Engine::documentLoadTargets() const {
  QStringList out;
  if (!document_) return out;
  for (const auto& t : load_targets(document_->trace.config))
    out << QString::fromStdString(t.text());
  return out;
}

bool Engine::exportGguf(const QString& file, const QString& dtype) {
  auto doc = document_;
  return submit("Export", [doc, file, dtype](const TaskContext& ctx, MetricsBuffer&) -> Outcome {
    namespace fs = std::filesystem;
    const auto& d = need_weights(doc);
    auto& model = task_model(d);
    GgufSaveOptions o;
    o.dtype = parse_gguf_dtype(dtype.toStdString());
    o.name = fs::path(d.loaded.path).filename().string();
    const fs::path target(file.toStdString());
    if (fs::is_directory(target))
      throw UsageError(file.toStdString() + " is a folder; give a .gguf file name");
    // Written beside the target and renamed over it once checked.
    const fs::path staging = target.parent_path() / ("." + target.filename().string() + ".export");
    struct Cleanup {
      fs::path p;
      ~Cleanup() {
        std::error_code ec;
        fs::remove(p, ec);
      }
    } cleanup{staging};
    ctx.report("export", 0, 3, "writing the GGUF file");
    const auto report = save_gguf(model, d.loaded.tokenizer.get(), staging.string(), o, &ctx);
    ctx.check();
    const double diff =
        check_export(model, staging.string(), {}, o.dtype == GgufDtype::F32 ? 1e-4 : 0.1,
                     file.toStdString(), ctx);
    std::error_code ec;
    fs::rename(staging, target, ec);
    if (ec) throw Error(file.toStdString() + ": cannot put the file in place: " + ec.message());
    QString extra;
    if (!report.as_f16.empty())
      extra +=
          QString("; %1 matrices in F16 (rows not whole Q8_0 blocks)").arg(report.as_f16.size());
    if (!report.notes.empty()) extra += "; " + QString::fromStdString(report.notes.front());
    return {{},
            QString("wrote %1 (GGUF for llama.cpp, architecture %2, %3, %4 MiB); reloaded: "
                    "logits within %5 of the open model's%6")
                .arg(file, QString::fromStdString(report.architecture), dtype)
                .arg(static_cast<double>(report.bytes) / (1 << 20), 0, 'f', 1)
                .arg(diff, 0, 'g', 2)
                .arg(extra)};
  });
}

}  // namespace lorashear
