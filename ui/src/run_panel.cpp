#include "lorashear/ui/run_panel.h"

#include <QComboBox>
#include <QDir>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QSpinBox>
#include <QVBoxLayout>

#include "lorashear/ui/engine.h"
#include "lorashear/ui/plan_editor.h"
#include "lorashear/viewers/metric_chart.h"
#include "lorashear/viewers/sparsity_bars.h"

namespace lorashear {

namespace {

QHBoxLayout* path_row(QLineEdit* edit, QPushButton* browse) {
  auto* row = new QHBoxLayout;
  row->addWidget(edit, 1);
  row->addWidget(browse);
  return row;
}

}  // namespace

RunPanel::RunPanel(Engine* engine, PlanModel* plan, QWidget* parent)
    : QWidget(parent), engine_(engine), plan_(plan) {
  auto* layout = new QHBoxLayout(this);
  layout->setContentsMargins(2, 2, 2, 2);
  auto* left = new QVBoxLayout;
  auto* form = new QFormLayout;
  text_ = new QLineEdit;
  text_->setPlaceholderText(tr("training text (.txt); its last 10% is held out"));
  auto* text_browse = new QPushButton(tr("…"));
  form->addRow(tr("Text"), path_row(text_, text_browse));
  out_ = new QLineEdit;
  out_->setPlaceholderText(tr("folder for the pruned model"));
  auto* out_browse = new QPushButton(tr("…"));
  form->addRow(tr("Output"), path_row(out_, out_browse));
  method_ = new QComboBox;
  method_->addItems({"lhspg", "magnitude", "random", "taylor", "loraprune"});
  form->addRow(tr("Method"), method_);
  steps_ = new QSpinBox;
  steps_->setRange(10, 1000000);
  steps_->setValue(200);
  steps_->setToolTip(tr("5% warm-up, 35% over the periods, 60% recovery"));
  form->addRow(tr("Steps"), steps_);
  periods_ = new QSpinBox;
  periods_->setRange(1, 100);
  periods_->setValue(4);
  form->addRow(tr("Periods"), periods_);
  lr_ = new QDoubleSpinBox;
  lr_->setDecimals(5);
  lr_->setRange(1e-5, 1.0);
  lr_->setSingleStep(1e-4);
  lr_->setValue(1e-3);
  form->addRow(tr("Learning rate"), lr_);
  epsilon_ = new QDoubleSpinBox;
  epsilon_->setRange(0.0, 0.99);
  epsilon_->setSingleStep(0.05);
  epsilon_->setValue(0.9);
  form->addRow(tr("Epsilon"), epsilon_);
  lambda_ = new QDoubleSpinBox;
  lambda_->setDecimals(4);
  lambda_->setRange(0.0, 10.0);
  lambda_->setSingleStep(0.001);
  lambda_->setValue(0.01);
  form->addRow(tr("Lambda"), lambda_);
  rank_ = new QSpinBox;
  rank_->setRange(1, 256);
  rank_->setValue(8);
  form->addRow(tr("LoRA rank"), rank_);
  batch_ = new QSpinBox;
  batch_->setRange(1, 1024);
  batch_->setValue(8);
  form->addRow(tr("Batch"), batch_);
  checkpoint_ = new QSpinBox;
  checkpoint_->setRange(0, 1000000);
  checkpoint_->setValue(50);
  checkpoint_->setToolTip(
      tr("A run stopped or killed continues from its last checkpoint (0: none)"));
  form->addRow(tr("Checkpoint every"), checkpoint_);
  left->addLayout(form);
  auto* buttons = new QHBoxLayout;
  start_ = new QPushButton(tr("Start"));
  pause_ = new QPushButton(tr("Pause"));
  pause_->setCheckable(true);
  cancel_ = new QPushButton(tr("Cancel"));
  buttons->addWidget(start_);
  buttons->addWidget(pause_);
  buttons->addWidget(cancel_);
  left->addLayout(buttons);
  status_ = new QLabel;
  status_->setWordWrap(true);
  left->addWidget(status_);
  left->addStretch();
  layout->addLayout(left);
  loss_ = new MetricChart(tr("Training loss"));
  loss_->addSeries("loss", QColor(31, 119, 180), 0.1);
  groups_ = new MetricChart(tr("Variable groups at zero"));
  groups_->addSeries("scheduled", QColor(150, 150, 150));
  groups_->addSeries("zeroed", QColor(214, 39, 40));
  bars_ = new SparsityBars;
  layout->addWidget(loss_, 1);
  layout->addWidget(groups_, 1);
  layout->addWidget(bars_, 1);

  connect(text_browse, &QPushButton::clicked, this, [this] {
    const auto path = QFileDialog::getOpenFileName(this, tr("Training text"), text_->text(),
                                                   tr("Text (*.txt);;All files (*)"));
    if (!path.isEmpty()) text_->setText(path);
  });
  connect(out_browse, &QPushButton::clicked, this, [this] {
    const auto path =
        QFileDialog::getSaveFileName(this, tr("Folder for the pruned model"), out_->text());
    if (!path.isEmpty()) out_->setText(path);
  });
  connect(start_, &QPushButton::clicked, this, &RunPanel::start);
  connect(pause_, &QPushButton::toggled, this, [this](bool on) {
    engine_->setPaused(on);
    pause_->setText(on ? tr("Resume") : tr("Pause"));
  });
  connect(cancel_, &QPushButton::clicked, engine_, &Engine::cancel);
  connect(engine_, &Engine::metricsReady, this, &RunPanel::metrics);
  connect(engine_, &Engine::idle, this, [this] {
    if (!running_) return;
    running_ = false;
    {
      const QSignalBlocker block(pause_);
      pause_->setChecked(false);
      pause_->setText(tr("Pause"));
    }
    updateButtons();
  });
  connect(engine_, &Engine::taskFinished, this,
          [this](const QString& task, const QString& summary) {
            if (task != "Prune") return;
            status_->setText(tr("Done: %1").arg(summary));
            emit runEnded();
          });
  connect(engine_, &Engine::taskFailed, this, [this](const QString& task, const QString& message) {
    if (task != "Prune") return;
    status_->setText(tr("Failed: %1").arg(message));
    emit runEnded();
  });
  connect(engine_, &Engine::taskCancelled, this, [this](const QString& task) {
    if (task != "Prune") return;
    status_->setText(tr("Cancelled; the model is read again from its file."));
    emit runEnded();
  });
  updateButtons();
}

RunSettings RunPanel::settings() const {
  RunSettings s;
  s.text = text_->text();
  s.out_dir = out_->text();
  s.method = method_->currentText();
  s.steps = steps_->value();
  s.periods = periods_->value();
  s.lr = lr_->value();
  s.epsilon = epsilon_->value();
  s.lambda = lambda_->value();
  s.lora_rank = rank_->value();
  s.batch = batch_->value();
  s.checkpoint_every = checkpoint_->value();
  return s;
}

void RunPanel::setSettings(const RunSettings& s) {
  text_->setText(s.text);
  out_->setText(s.out_dir);
  method_->setCurrentText(s.method);
  steps_->setValue(static_cast<int>(s.steps));
  periods_->setValue(static_cast<int>(s.periods));
  lr_->setValue(s.lr);
  epsilon_->setValue(s.epsilon);
  lambda_->setValue(s.lambda);
  rank_->setValue(static_cast<int>(s.lora_rank));
  batch_->setValue(static_cast<int>(s.batch));
  checkpoint_->setValue(static_cast<int>(s.checkpoint_every));
}

QString run_record(const RunSettings& s, const QString& plan_json, const QString& model,
                   const QString& device, const QString& dtype) {
  QJsonObject o{{"model", model},
                {"device", device},
                {"dtype", dtype},
                {"plan", plan_json},
                {"text", s.text},
                {"out", s.out_dir},
                {"method", s.method},
                {"steps", s.steps},
                {"periods", s.periods},
                {"lr", s.lr},
                {"epsilon", s.epsilon},
                {"lambda", s.lambda},
                {"rank", s.lora_rank},
                {"batch", s.batch},
                {"seq_len", s.seq_len},
                {"eval_windows", s.eval_windows},
                {"checkpoint_every", s.checkpoint_every}};
  return QString::fromUtf8(QJsonDocument(o).toJson(QJsonDocument::Compact));
}

bool parse_run_record(const QString& record, RunSettings* s, QString* plan_json, QString* model,
                      QString* device, QString* dtype) {
  const auto doc = QJsonDocument::fromJson(record.toUtf8());
  if (!doc.isObject()) return false;
  const auto o = doc.object();
  if (!o.contains("model") || !o.contains("plan") || !o.contains("out")) return false;
  *model = o["model"].toString();
  *device = o["device"].toString("cpu");
  *dtype = o["dtype"].toString("float32");
  *plan_json = o["plan"].toString();
  s->text = o["text"].toString();
  s->out_dir = o["out"].toString();
  s->method = o["method"].toString("lhspg");
  s->steps = o["steps"].toInteger(200);
  s->periods = o["periods"].toInteger(4);
  s->lr = o["lr"].toDouble(1e-3);
  s->epsilon = o["epsilon"].toDouble(0.9);
  s->lambda = o["lambda"].toDouble(1e-2);
  s->lora_rank = o["rank"].toInteger(8);
  s->batch = o["batch"].toInteger(8);
  s->seq_len = o["seq_len"].toInteger(128);
  s->eval_windows = o["eval_windows"].toInteger(0);
  s->checkpoint_every = o["checkpoint_every"].toInteger(50);
  return true;
}

void RunPanel::setTextPath(const QString& path) {
  text_->setText(path);
}

void RunPanel::setOutputDir(const QString& path) {
  out_->setText(path);
}

void RunPanel::setSteps(int steps) {
  steps_->setValue(steps);
}

QString RunPanel::messageText() const {
  return status_->text();
}

bool RunPanel::start(bool resume) {
  auto s = settings();
  s.resume = resume;
  QString problem;
  if (s.text.isEmpty())
    problem = tr("choose a training text");
  else if (s.out_dir.isEmpty())
    problem = tr("choose an output folder");
  else if (!plan_->estimate().valid)
    problem = tr("the plan cannot be met: %1").arg(plan_->lastError());
  if (!problem.isEmpty()) {
    status_->setText(tr("Not started: %1").arg(problem));
    return false;
  }
  loss_->clear();
  groups_->clear();
  sparsity_.clear();
  if (!engine_->runPruning(s, plan_->planJson())) {
    status_->setText(tr("Not started: the engine is busy with %1").arg(engine_->currentTask()));
    return false;
  }
  running_ = true;
  status_->setText(resume ? tr("Resuming from the last checkpoint…") : tr("Running…"));
  emit runStarted();
  updateButtons();
  return true;
}

void RunPanel::metrics(const QVector<MetricPoint>& points) {
  if (!running_) return;
  std::map<QString, QList<QPointF>> batches;
  bool sparsity = false;
  double lr = 0, tps = 0;
  for (const auto& p : points) {
    if (p.series.startsWith("sparsity:")) {
      sparsity_[p.series.mid(9).toStdString()] = p.y;
      sparsity = true;
    } else if (p.series == "lr") {
      lr = p.y;
    } else if (p.series == "tokens/s") {
      tps = p.y;
    } else {
      batches[p.series].append({p.x, p.y});
    }
  }
  loss_->append("loss", batches["loss"]);
  groups_->append("scheduled", batches["scheduled"]);
  groups_->append("zeroed", batches["zeroed"]);
  if (!batches["loss"].isEmpty())
    status_->setText(tr("Step %1 — loss %2 (EMA %3), lr %4, %5 tokens/s")
                         .arg(batches["loss"].back().x())
                         .arg(batches["loss"].back().y(), 0, 'f', 3)
                         .arg(loss_->lastValue("loss"), 0, 'f', 3)
                         .arg(lr, 0, 'g', 3)
                         .arg(tps, 0, 'f', 0));
  if (sparsity) {
    // Node group ids are `L<layer>.attn` / `L<layer>.mlp`; any other id has no bar.
    std::vector<double> attention, mlp;
    for (const auto& [id, v] : sparsity_) {
      const auto parts = QString::fromStdString(id).split('.');
      bool ok = false;
      const int layer =
          parts.size() == 2 && parts[0].startsWith('L') ? parts[0].mid(1).toInt(&ok) : -1;
      if (!ok || layer < 0 || (parts[1] != "attn" && parts[1] != "mlp")) continue;
      auto& target = parts[1] == "attn" ? attention : mlp;
      if (target.size() <= static_cast<size_t>(layer)) target.resize(layer + 1, -1.0);
      target[static_cast<size_t>(layer)] = v;
    }
    bars_->setValues(attention, mlp);
    emit sparsityChanged();
  }
}

void RunPanel::updateButtons() {
  start_->setEnabled(!running_);
  pause_->setEnabled(running_);
  cancel_->setEnabled(running_);
}

}  // namespace lorashear
