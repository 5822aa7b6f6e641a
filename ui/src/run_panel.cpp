#include "lorashear/ui/run_panel.h"

#include <QCheckBox>
#include <QComboBox>
#include <QCoreApplication>
#include <QDir>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QGridLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QPushButton>
#include <QResizeEvent>
#include <QScrollArea>
#include <QShowEvent>
#include <QSpinBox>
#include <QStyle>
#include <QTabWidget>
#include <QTextDocument>
#include <QToolButton>
#include <QVBoxLayout>

#include <algorithm>
#include <optional>

#include "lorashear/ui/engine.h"
#include "lorashear/ui/plan_editor.h"
#include "lorashear/viewers/metric_chart.h"
#include "lorashear/viewers/sparsity_bars.h"

namespace lorashear {

namespace {

QHBoxLayout* path_row(QLineEdit* edit, QToolButton* browse) {
  auto* row = new QHBoxLayout;
  row->addWidget(edit, 1);
  row->addWidget(browse);
  return row;
}

QToolButton* browse_button() {
  auto* button = new QToolButton;
  button->setText(QCoreApplication::translate("lorashear::RunPanel", "…"));
  button->setToolTip(QCoreApplication::translate("lorashear::RunPanel", "Choose…"));
  return button;
}

// The dashboard's charts in as many columns as fit (at most four), each at least kChartWidth ×
// kChartHeight: smaller, Qt Charts elides axis titles, tick labels and legends to "…". Rows that
// do not fit scroll; the last chart also takes the columns its row leaves empty.
class ChartGrid : public QScrollArea {
 public:
  static constexpr int kChartWidth = 330, kChartHeight = 220, kMaxColumns = 4, kSpacing = 4;

  explicit ChartGrid(std::vector<QWidget*> charts) : charts_(std::move(charts)) {
    auto* inner = new QWidget;
    grid_ = new QGridLayout(inner);
    grid_->setContentsMargins(0, 0, 0, 0);
    grid_->setSpacing(kSpacing);
    for (auto* chart : charts_)
      chart->setMinimumSize(kChartWidth, kChartHeight);
    setWidget(inner);
    setWidgetResizable(true);
    setFrameShape(QFrame::NoFrame);
    setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
    arrange(2);
  }

 protected:
  void resizeEvent(QResizeEvent* event) override {
    // From the area's width less a scroll bar, so that the bar coming or going changes nothing.
    const int room = event->size().width() - style()->pixelMetric(QStyle::PM_ScrollBarExtent);
    const int columns = std::clamp((room + kSpacing) / (kChartWidth + kSpacing), 1, kMaxColumns);
    if (columns != columns_) arrange(columns);
    QScrollArea::resizeEvent(event);
  }

 private:
  void arrange(int columns) {
    columns_ = columns;
    for (auto* chart : charts_)
      grid_->removeWidget(chart);
    const int n = static_cast<int>(charts_.size());
    for (int i = 0; i < n; ++i)
      grid_->addWidget(charts_[static_cast<size_t>(i)], i / columns, i % columns, 1,
                       i + 1 == n ? columns - i % columns : 1);
    const int rows = (n + columns - 1) / columns;
    for (int c = 0; c < kMaxColumns; ++c)
      grid_->setColumnStretch(c, c < columns ? 1 : 0);
    for (int r = 0; r < n; ++r)
      grid_->setRowStretch(r, r < rows ? 1 : 0);
  }

  std::vector<QWidget*> charts_;
  QGridLayout* grid_ = nullptr;
  int columns_ = 0;
};

}  // namespace

RunPanel::RunPanel(Engine* engine, PlanModel* plan, QWidget* parent)
    : QWidget(parent), engine_(engine), plan_(plan) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(2, 2, 2, 2);
  auto* tabs = new QTabWidget;
  tabs->addTab(pruningTab(), tr("Pruning"));
  tabs->addTab(recoveryTab(), tr("Recovery"));
  // The settings scroll when the dock is short (the window keeps any height); the buttons and
  // the run's status stay in view.
  auto* scroll = new QScrollArea;
  scroll->setWidget(tabs);
  scroll->setWidgetResizable(true);
  scroll->setFrameShape(QFrame::NoFrame);
  scroll->setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
  scroll->setMinimumWidth(tabs->minimumSizeHint().width() +
                          scroll->style()->pixelMetric(QStyle::PM_ScrollBarExtent));
  layout->addWidget(scroll, 1);
  // What the run needs, in view with the buttons it qualifies.
  auto* memory_row = new QHBoxLayout;
  memory_icon_ = new QLabel;
  memory_icon_->setObjectName("memoryWarningIcon");
  const int icon = style()->pixelMetric(QStyle::PM_SmallIconSize);
  memory_icon_->setPixmap(style()->standardIcon(QStyle::SP_MessageBoxWarning).pixmap(icon, icon));
  memory_icon_->setAlignment(Qt::AlignTop);
  memory_icon_->hide();
  memory_row->addWidget(memory_icon_, 0, Qt::AlignTop);
  memory_ = new QLabel;
  memory_->setObjectName("memoryPlan");
  memory_->setWordWrap(true);
  memory_->setTextFormat(Qt::RichText);
  memory_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  memory_row->addWidget(memory_, 1);
  layout->addLayout(memory_row);
  auto* buttons = new QHBoxLayout;
  start_ = new QPushButton(tr("Start"));
  pause_ = new QPushButton(tr("Pause"));
  pause_->setCheckable(true);
  cancel_ = new QPushButton(tr("Cancel"));
  buttons->addWidget(start_);
  buttons->addWidget(pause_);
  buttons->addWidget(cancel_);
  layout->addLayout(buttons);
  status_ = new QLabel;
  status_->setWordWrap(true);
  status_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  layout->addWidget(status_);
  dashboard_ = buildDashboard();

  connect(axis_, &QComboBox::currentIndexChanged, this,
          [this](int index) { setWallTime(index == 1); });
  connect(start_, &QPushButton::clicked, this, [this] { start(); });
  connect(pause_, &QPushButton::toggled, this, [this](bool on) {
    engine_->setPaused(on);
    pause_->setText(on ? tr("Resume") : tr("Pause"));
  });
  connect(cancel_, &QPushButton::clicked, engine_, &Engine::cancel);
  connect(engine_, &Engine::metricsReady, this, &RunPanel::metrics);
  connect(engine_, &Engine::documentChanged, this, &RunPanel::updateMemory);
  for (auto* box : {rank_, batch_})
    connect(box, &QSpinBox::valueChanged, this, &RunPanel::updateMemory);
  for (auto* box : targets_)
    connect(box, &QCheckBox::toggled, this, &RunPanel::updateMemory);
  connect(activations_, &QComboBox::currentIndexChanged, this, &RunPanel::updateMemory);
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
            setMessage(tr("Done: %1").arg(summary));
            emit runEnded();
          });
  connect(engine_, &Engine::taskFailed, this, [this](const QString& task, const QString& message) {
    if (task != "Prune") return;
    setMessage(tr("Failed: %1").arg(message));
    emit runEnded();
  });
  connect(engine_, &Engine::taskCancelled, this, [this](const QString& task) {
    if (task != "Prune") return;
    setMessage(tr("Cancelled; the model is read again from its file."));
    emit runEnded();
  });
  updateButtons();
  updateMemory();
}

RunPanel::~RunPanel() {
  delete dashboard_;  // null when the window that showed it went first
}

QWidget* RunPanel::buildDashboard() {
  auto* page = new QWidget;
  page->setObjectName("runDashboard");
  auto* layout = new QVBoxLayout(page);
  layout->setContentsMargins(4, 4, 4, 4);
  auto* top = new QHBoxLayout;
  dashboard_status_ = new QLabel(tr("No run yet: set it up in the Run panel and press Start."));
  dashboard_status_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  dashboard_status_->setWordWrap(true);
  top->addWidget(dashboard_status_, 1);
  // A followed run's state (File ▸ Open run…).
  follow_status_ = new QLabel;
  follow_status_->setObjectName("followStatus");
  follow_status_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  follow_status_->hide();
  top->addWidget(follow_status_);
  axis_ = new QComboBox;
  axis_->addItems({tr("step"), tr("wall time")});
  top->addWidget(new QLabel(tr("x-axis")));
  top->addWidget(axis_);
  layout->addLayout(top);

  loss_ = new MetricChart(tr("Training loss"));
  loss_->setValueTitle(tr("loss"));
  loss_->addSeries("loss", QColor(31, 119, 180), 0.1);
  loss_->addSeries("recovery", QColor(44, 160, 44), 0.1);
  groups_ = new MetricChart(tr("Variable groups at zero"));
  groups_->setValueTitle(tr("groups"));
  groups_->addSeries("scheduled", QColor(150, 150, 150));
  groups_->addSeries("zeroed", QColor(214, 39, 40));
  bars_ = new SparsityBars;
  categories_ = new MetricChart(tr("Recovery: validation loss"));
  categories_->setValueTitle(tr("loss"));
  weights_ = new MetricChart(tr("Recovery: sampling weights"));
  weights_->setValueTitle(tr("weight"));
  lr_chart_ = new MetricChart(tr("Learning rate"));
  lr_chart_->setValueTitle(tr("lr"));
  lr_chart_->addSeries("lr", QColor(148, 103, 189));
  speed_ = new MetricChart(tr("Tokens per second"));
  speed_->setValueTitle(tr("tokens/s"));
  speed_->addSeries("tokens/s", QColor(255, 127, 14), 0.1);
  // Pruning first (loss, groups, layers), then recovery, then the rates.
  layout->addWidget(
      new ChartGrid({loss_, groups_, bars_, categories_, weights_, lr_chart_, speed_}), 1);
  return page;
}

QWidget* RunPanel::pruningTab() {
  auto* page = new QWidget;
  auto* form = new QFormLayout(page);
  text_ = new QLineEdit;
  text_->setPlaceholderText(tr("training text (.txt); its last 10% is held out"));
  auto* text_browse = browse_button();
  form->addRow(tr("Text"), path_row(text_, text_browse));
  out_ = new QLineEdit;
  out_->setPlaceholderText(tr("folder for the pruned model"));
  auto* out_browse = browse_button();
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
  rank_->setObjectName("loraRank");
  rank_->setRange(1, 256);
  rank_->setValue(8);
  form->addRow(tr("LoRA rank"), rank_);
  auto* targets = new QGridLayout;
  targets->setSpacing(0);
  int i = 0;
  for (const char* name :
       {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}) {
    auto* box = new QCheckBox(QString::fromLatin1(name).chopped(5));
    box->setObjectName(name);
    box->setToolTip(tr("A LoRA adapter on every %1").arg(name));
    box->setChecked(true);
    targets->addWidget(box, i / 4, i % 4);
    targets_.push_back(box);
    ++i;
  }
  // Under their label: beside it, the four columns would widen the whole form and its dock.
  form->addRow(new QLabel(tr("LoRA targets")));
  form->addRow(targets);
  batch_ = new QSpinBox;
  batch_->setObjectName("batch");
  batch_->setRange(1, 1024);
  batch_->setValue(8);
  form->addRow(tr("Batch"), batch_);
  activations_ = new QComboBox;
  activations_->setObjectName("checkpointActivations");
  activations_->addItems({"auto", "on", "off"});
  activations_->setToolTip(
      tr("Activation checkpointing: each decoder layer keeps only its input and is run again in "
         "the backward pass — less memory for about a third more time per step. auto: on when "
         "the run would not fit the available memory without it (off on a GPU, whose free "
         "memory is not known)"));
  form->addRow(tr("Checkpoint activations"), activations_);
  checkpoint_ = new QSpinBox;
  checkpoint_->setRange(0, 1000000);
  checkpoint_->setValue(50);
  checkpoint_->setToolTip(
      tr("A run stopped or killed continues from its last checkpoint (0: none)"));
  form->addRow(tr("Checkpoint every"), checkpoint_);
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
  return page;
}

QWidget* RunPanel::recoveryTab() {
  auto* page = new QWidget;
  auto* outer = new QVBoxLayout(page);
  recover_ = new QGroupBox(tr("Recover knowledge after pruning"));
  recover_->setCheckable(true);
  recover_->setChecked(false);
  recover_->setToolTip(
      tr("LoRA fine-tuning of the pruned model: stage 1 on the domains, each category sampled by "
         "its loss gap to the dense model; stage 2 on instruction data (LORASHEAR.md §4)"));
  auto* form = new QFormLayout(recover_);
  domains_ = new QListWidget;
  domains_->setToolTip(
      tr("One category each: a text file, a folder of text files, or JSON Lines "
         "(records with a \"source\" field: one category per source)"));
  domains_->setSelectionMode(QAbstractItemView::ExtendedSelection);
  domains_->setMaximumHeight(90);
  auto* add_files = new QPushButton(tr("Add files…"));
  auto* add_folder = new QPushButton(tr("Add folder…"));
  auto* remove = new QPushButton(tr("Remove"));
  auto* domain_buttons = new QHBoxLayout;
  domain_buttons->addWidget(add_files);
  domain_buttons->addWidget(add_folder);
  domain_buttons->addWidget(remove);
  auto* domain_box = new QVBoxLayout;
  domain_box->addWidget(domains_);
  domain_box->addLayout(domain_buttons);
  form->addRow(new QLabel(tr("Domains")));  // the list and its buttons under it, as the targets
  form->addRow(domain_box);
  instruct_ = new QLineEdit;
  instruct_->setPlaceholderText(tr("Alpaca records (.json / .jsonl); empty: no stage 2"));
  auto* instruct_browse = browse_button();
  form->addRow(tr("Instructions"), path_row(instruct_, instruct_browse));
  recover_steps_ = new QSpinBox;
  recover_steps_->setRange(1, 10000000);
  recover_steps_->setValue(200);
  recover_steps_->setToolTip(
      tr("Steps for both stages: 70% stage 1, 30% stage 2 (all to the stage that has data)"));
  form->addRow(tr("Budget (steps)"), recover_steps_);
  sampling_ = new QComboBox;
  sampling_->addItems({"adaptive", "uniform"});
  sampling_->setToolTip(
      tr("adaptive: categories whose loss is furthest above the dense model's "
         "are drawn more often"));
  form->addRow(tr("Sampling"), sampling_);
  outer->addWidget(recover_);
  outer->addStretch();
  connect(add_files, &QPushButton::clicked, this, [this] {
    const auto paths = QFileDialog::getOpenFileNames(
        this, tr("Recovery domains"), QString(),
        tr("Text or JSON Lines (*.txt *.raw *.jsonl *.json);;All files (*)"));
    for (const auto& path : paths)
      domains_->addItem(path);
  });
  connect(add_folder, &QPushButton::clicked, this, [this] {
    const auto path = QFileDialog::getExistingDirectory(this, tr("A folder of text files"));
    if (!path.isEmpty()) domains_->addItem(path);
  });
  connect(remove, &QPushButton::clicked, this, [this] { qDeleteAll(domains_->selectedItems()); });
  connect(instruct_browse, &QPushButton::clicked, this, [this] {
    const auto path =
        QFileDialog::getOpenFileName(this, tr("Instruction data"), instruct_->text(),
                                     tr("Alpaca JSON (*.json *.jsonl);;All files (*)"));
    if (!path.isEmpty()) instruct_->setText(path);
  });
  return page;
}

std::vector<MetricChart*> RunPanel::charts() const {
  return {loss_, groups_, categories_, weights_, lr_chart_, speed_};
}

void RunPanel::setWallTime(bool wall) {
  {
    const QSignalBlocker block(axis_);
    axis_->setCurrentIndex(wall ? 1 : 0);
  }
  for (auto* chart : charts())
    chart->setWallTime(wall);
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
  s.checkpoint_activations = activations_->currentText();
  for (auto* box : targets_)
    if (box->isChecked()) s.lora_targets << box->objectName();
  s.recover = recover_->isChecked();
  for (int i = 0; i < domains_->count(); ++i)
    s.domains << domains_->item(i)->text();
  s.instruct = instruct_->text();
  s.recover_steps = recover_steps_->value();
  s.sampling = sampling_->currentText();
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
  activations_->setCurrentText(s.checkpoint_activations);
  for (auto* box : targets_)
    box->setChecked(s.lora_targets.isEmpty() || s.lora_targets.contains(box->objectName()));
  recover_->setChecked(s.recover);
  domains_->clear();
  domains_->addItems(s.domains);
  instruct_->setText(s.instruct);
  recover_steps_->setValue(static_cast<int>(s.recover_steps));
  sampling_->setCurrentText(s.sampling);
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
                {"checkpoint_every", s.checkpoint_every},
                {"checkpoint_activations", s.checkpoint_activations},
                {"lora_targets", QJsonArray::fromStringList(s.lora_targets)},
                {"recover", s.recover},
                {"domains", QJsonArray::fromStringList(s.domains)},
                {"instruct", s.instruct},
                {"recover_steps", s.recover_steps},
                {"sampling", s.sampling}};
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
  s->checkpoint_activations = o["checkpoint_activations"].toString("auto");
  s->lora_targets.clear();
  for (const auto& t : o["lora_targets"].toArray())
    s->lora_targets << t.toString();
  s->recover = o["recover"].toBool(false);
  s->domains.clear();
  for (const auto& d : o["domains"].toArray())
    s->domains << d.toString();
  s->instruct = o["instruct"].toString();
  s->recover_steps = o["recover_steps"].toInteger(200);
  s->sampling = o["sampling"].toString("adaptive");
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

void RunPanel::setMessage(const QString& text) {
  status_->setText(text);
  dashboard_status_->setText(text);
}

QString RunPanel::messageText() const {
  return status_->text();
}

namespace {

// plan_memory's items as the memory line names them.
QString short_item_name(const QString& name) {
  static const std::map<QString, QString> names{
      {"base weights", "weights"},
      {"LoRA factors + gradients + AdamW", "LoRA + AdamW"},
      {"LHSPG merged weight", "merged weight"},
      {"activations kept for backward", "activations"},
      {"layer inputs (checkpointing)", "layer inputs"},
      {"one layer recomputed", "recomputed layer"},
      {"logits and log-softmax", "logits"}};
  const auto it = names.find(name);
  return it == names.end() ? name : it->second;
}

// An item in the unit of the total (MiB or GiB), to three significant figures.
QString in_unit(qint64 bytes, qint64 total) {
  const double unit = total < (qint64(10) << 30) ? double(1 << 20) : double(1 << 30);
  const double v = static_cast<double>(bytes) / unit;
  return QString::number(v, 'f', v >= 100 ? 0 : v >= 10 ? 1 : 2);
}

}  // namespace

void RunPanel::updateMemory() {
  if (running_) return;  // the run's own use would count against it
  memory_plan_ = plan_run_memory(*engine_, settings());
  const auto& m = memory_plan_;
  if (!m.valid) {
    memory_icon_->hide();
    memory_->setText(tr("<span style='color:gray'>Memory: %1</span>").arg(m.error.toHtmlEscaped()));
    memory_->setToolTip({});
    start_->setToolTip({});
    return;
  }
  const QString total = format_memory(m.per_rank_bytes);
  const QString unit = total.section(' ', 1);
  QStringList parts;
  for (const auto& it : m.items)
    parts << QString("%1 %2").arg(short_item_name(it.name), in_unit(it.bytes, m.per_rank_bytes));
  const QString breakdown = parts.join(", ") + " " + unit;
  const bool warn = !m.fits();
  QString headline;
  if (!m.memoryKnown())
    headline = tr("<b>Memory: %1</b> per process — device memory unknown (%2)")
                   .arg(total, m.device.toHtmlEscaped());
  else if (warn)
    headline = tr("<b>Memory: %1</b> per process — <b>only %2 available</b>: the run will "
                  "not fit")
                   .arg(total, format_memory(m.available_bytes));
  else
    headline = tr("<b>Memory: %1</b> per process — %2 available")
                   .arg(total, format_memory(m.available_bytes));
  const QString checkpointing = (m.checkpoint_activations ? tr("activation checkpointing on")
                                                          : tr("activation checkpointing off")) +
                                (activations_->currentText() == "auto" ? tr(" (auto)") : QString());
  memory_->setText(
      QString("%1<br><span style='color:gray'>%2 · %3</span>")
          .arg(warn ? QString("<span style='color:#c03030'>%1</span>").arg(headline) : headline,
               breakdown.toHtmlEscaped(), checkpointing));
  memory_icon_->setVisible(warn);

  // The breakdown with its exact bytes and how each item was counted.
  QString rows;
  for (const auto& it : m.items)
    rows += QString("<tr><td>%1</td><td align='right'>%2</td><td style='color:gray'>%3</td></tr>")
                .arg(it.name.toHtmlEscaped(), format_memory(it.bytes), it.detail.toHtmlEscaped());
  rows += QString("<tr><td><b>%1</b></td><td align='right'><b>%2</b></td><td>%3</td></tr>")
              .arg(tr("per process"), total, tr("%L1 bytes").arg(m.per_rank_bytes));
  QString tip = tr("<p>What a run with these settings needs per process (<tt>lorashear "
                   "plan-memory</tt>): %L1 parameters in %2 on %3, batch × sequence = %L4 "
                   "tokens per step.</p><table cellspacing='4'>%5</table><p>%6</p>")
                    .arg(m.parameters)
                    .arg(m.weight_dtype, m.device)
                    .arg(m.tokens)
                    .arg(rows, m.checkpointing_why.toHtmlEscaped());
  if (!m.memoryKnown())
    tip +=
        tr("<p>This LibTorch cannot query a GPU's free memory: compare with the device's "
           "size yourself.</p>");
  else
    tip += tr("<p>Available: %1 (MemAvailable, or $LORASHEAR_AVAILABLE_MEMORY_BYTES).</p>")
               .arg(format_memory(m.available_bytes));
  memory_->setToolTip(tip);
  start_->setToolTip(
      warn ? tr("This run needs about %1 per process and %2 is available: it will probably run "
                "out of memory. Lower the batch or the LoRA rank, set Checkpoint activations to "
                "on, or open the model in bfloat16 (File ▸ Preferences).")
                 .arg(total, format_memory(m.available_bytes))
           : QString());
}

QString RunPanel::memoryText() const {
  QTextDocument doc;
  doc.setHtml(memory_->text());
  return doc.toPlainText();
}

bool RunPanel::memoryWarning() const {
  return memory_plan_.valid && !memory_plan_.fits();
}

void RunPanel::showEvent(QShowEvent* event) {
  QWidget::showEvent(event);
  updateMemory();  // the available memory may have changed while hidden
}

bool RunPanel::start(bool resume) {
  auto s = settings();
  s.resume = resume;
  QString problem;
  auto missing = [](const QString& path) { return !path.isEmpty() && !QFileInfo::exists(path); };
  if (s.text.isEmpty())
    problem = tr("choose a training text");
  else if (missing(s.text))
    problem = tr("the training text %1 does not exist").arg(s.text);
  else if (s.out_dir.isEmpty())
    problem = tr("choose an output folder");
  else if (!plan_->estimate().valid)
    problem = tr("the plan cannot be met: %1").arg(plan_->lastError());
  else if (s.lora_targets.isEmpty())
    problem = tr("choose at least one LoRA target");
  else if (s.recover && s.domains.isEmpty() && s.instruct.isEmpty())
    problem = tr("recovery needs data: add a domain or instruction data (Recovery tab)");
  if (problem.isEmpty() && s.recover) {
    for (const auto& path : s.domains + QStringList{s.instruct})
      if (missing(path)) {
        problem = tr("the recovery data %1 does not exist").arg(path);
        break;
      }
  }
  if (!problem.isEmpty()) {
    setMessage(tr("Not started: %1").arg(problem));
    return false;
  }
  if (engine_->busy()) {
    setMessage(tr("Not started: the engine is busy with %1").arg(engine_->currentTask()));
    return false;
  }
  endFollowing();
  clearCharts();
  if (!engine_->runPruning(s, plan_->planJson())) {
    setMessage(tr("Not started: the engine is busy with %1").arg(engine_->currentTask()));
    return false;
  }
  running_ = true;
  setMessage(resume ? tr("Resuming from the last checkpoint…") : tr("Running…"));
  emit runStarted();
  updateButtons();
  return true;
}

void RunPanel::clearCharts() {
  for (auto* chart : {loss_, groups_, lr_chart_, speed_})
    chart->clear();
  categories_->removeAllSeries();
  weights_->removeAllSeries();
  sparsity_.clear();
  bars_->setValues({}, {});
}

void RunPanel::beginFollowing(const QString& title) {
  following_ = true;
  clearCharts();
  dashboard_status_->setText(title);
  follow_status_->clear();
  follow_status_->show();
}

void RunPanel::endFollowing() {
  if (!following_) return;
  following_ = false;
  follow_status_->hide();
}

void RunPanel::setFollowStatus(const QString& text, const QString& tooltip) {
  follow_status_->setText(text);
  follow_status_->setToolTip(tooltip);
}

QString RunPanel::followStatusText() const {
  return follow_status_->text();
}

void RunPanel::showMetrics(const MetricBatches& batches,
                           const std::map<std::string, double>& sparsity) {
  if (!following_) return;
  for (const auto& [id, v] : sparsity)
    sparsity_[id] = v;
  apply(batches, !sparsity.empty());
}

void RunPanel::metrics(const QVector<MetricPoint>& points) {
  if (!running_) return;
  MetricBatches batches;
  bool sparsity = false;
  for (const auto& p : points) {
    if (p.series.startsWith("sparsity:")) {
      sparsity_[p.series.mid(9).toStdString()] = p.y;
      sparsity = true;
    } else {
      auto& b = batches[p.series];
      b.points.append({p.x, p.y});
      b.seconds.append(p.wall);
    }
  }
  apply(batches, sparsity);
}

void RunPanel::apply(const MetricBatches& batches, bool sparsity) {
  using Batch = MetricBatch;
  auto route = [](MetricChart* chart, const QString& series, const Batch& b) {
    if (!chart->hasSeries(series))  // a category seen for the first time
      chart->addSeries(series, MetricChart::paletteColour(static_cast<int>(chart->seriesCount())));
    chart->append(series, b.points, b.seconds);
  };
  for (const auto& [name, b] : batches) {
    if (name == "loss" || name == "recovery")
      loss_->append(name, b.points, b.seconds);
    else if (name == "scheduled" || name == "zeroed")
      groups_->append(name, b.points, b.seconds);
    else if (name == "lr")
      lr_chart_->append(name, b.points, b.seconds);
    else if (name == "tokens/s")
      speed_->append(name, b.points, b.seconds);
    else if (name.startsWith("validation:"))
      route(categories_, name.mid(11), b);
    else if (name.startsWith("weight:"))
      route(weights_, name.mid(7), b);
  }
  auto last = [&](const QString& name) {
    auto it = batches.find(name);
    return it == batches.end() ? std::optional<QPointF>{} : it->second.points.back();
  };
  const auto lr = last("lr"), tps = last("tokens/s");
  const auto pruning = last("loss");
  const auto loss = pruning ? pruning : last("recovery");
  if (loss) {
    const bool recovering = !pruning;
    const auto stage = last("stage");
    const auto text =
        tr("%1 step %2 — loss %3 (EMA %4), lr %5, %6 tokens/s")
            .arg(recovering
                     ? tr("Recovery (stage %1),").arg(stage ? static_cast<int>(stage->y()) : 1)
                     : tr("Pruning,"))
            .arg(loss->x())
            .arg(loss->y(), 0, 'f', 3)
            .arg(loss_->lastValue(recovering ? "recovery" : "loss"), 0, 'f', 3)
            .arg(lr ? lr->y() : 0.0, 0, 'g', 3)
            .arg(tps ? tps->y() : 0.0, 0, 'f', 0);
    if (following_)  // the Run dock's state is the local run's
      dashboard_status_->setText(text);
    else
      setMessage(text);
  }
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
