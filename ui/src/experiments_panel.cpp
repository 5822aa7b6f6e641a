#include "lorashear/ui/experiments_panel.h"

#include <QChart>
#include <QChartView>
#include <QCheckBox>
#include <QComboBox>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QGraphicsLayout>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QJsonArray>
#include <QJsonDocument>
#include <QLabel>
#include <QLegendMarker>
#include <QLineEdit>
#include <QLineSeries>
#include <QMenu>
#include <QMouseEvent>
#include <QPainter>
#include <QPushButton>
#include <QResizeEvent>
#include <QScrollBar>
#include <QSpinBox>
#include <QSplitter>
#include <QSvgGenerator>
#include <QTableWidget>
#include <QTimer>
#include <QToolButton>
#include <QToolTip>
#include <QVBoxLayout>
#include <QValueAxis>

#include <cmath>

#include "lorashear/io/files.h"
#include "lorashear/prune/sweep.h"
#include "lorashear/ui/engine.h"
#include "lorashear/ui/plan_editor.h"
#include "lorashear/ui/run_panel.h"
#include "lorashear/viewers/metric_chart.h"

namespace lorashear {

namespace {

const QStringList kMethods = {"lhspg", "magnitude", "taylor", "loraprune", "random"};
const char* kMean = "Mean accuracy";
const char* kPpl = "Perplexity";
const char* kPrefill = "Prefill speed-up";
const char* kDecode = "Decode speed-up";

// A wrapped label gives its layout a height-for-width, and a scroll area then sizes the tab to
// its preferred height (a vertical scroll); without it the tab takes the height it is given.
class MessageLabel : public QLabel {
 public:
  bool hasHeightForWidth() const override { return false; }
};

QTableWidgetItem* cell(const QString& text, bool number) {
  auto* item = new QTableWidgetItem(text);
  item->setFlags(Qt::ItemIsEnabled | Qt::ItemIsSelectable);
  item->setTextAlignment((number ? Qt::AlignRight : Qt::AlignLeft) | Qt::AlignVCenter);
  return item;
}

// The value of `metric` in a run (or the dense model's) document; NaN when absent.
double metric_value(const QJsonObject& r, const QString& metric) {
  auto number = [](const QJsonValue& v) { return v.isDouble() ? v.toDouble() : std::nan(""); };
  if (metric == kMean) return number(r.value("mean"));
  if (metric == kPpl) return number(r.value("ppl"));
  if (metric == kPrefill) return number(r.value("prefill_speedup"));
  if (metric == kDecode) return number(r.value("decode_speedup"));
  return number(r.value("tasks").toObject().value(metric).toObject().value("headline"));
}

}  // namespace

ExperimentsPanel::ExperimentsPanel(Engine* engine, RunPanel* run, PlanModel* plan, QWidget* parent)
    : QWidget(parent), engine_(engine), run_(run), plan_(plan) {
  setObjectName("experimentsPanel");
  auto* layout = new QVBoxLayout(this);
  auto* form_row = new QHBoxLayout;
  auto* left = new QFormLayout;
  auto* right = new QFormLayout;
  ratios_ = new QLineEdit("0.2,0.35,0.5");
  ratios_->setToolTip(tr("Fractions of the parameters to remove, comma-separated"));
  left->addRow(tr("Ratios"), ratios_);
  auto* methods = new QHBoxLayout;
  for (const auto& m : kMethods) {
    auto* box = new QCheckBox(m);
    box->setChecked(m == "lhspg" || m == "magnitude");
    methods_ << box;
    methods->addWidget(box);
  }
  methods->addStretch();
  left->addRow(tr("Methods"), methods);
  auto browse_row = [this](QLineEdit* edit, bool folder, const QString& caption) {
    auto* row = new QHBoxLayout;
    row->addWidget(edit, 1);
    auto* b = new QPushButton(tr("…"));
    b->setMaximumWidth(32);
    connect(b, &QPushButton::clicked, this, [this, edit, folder, caption] {
      const auto path = folder ? QFileDialog::getExistingDirectory(this, caption, edit->text())
                               : QFileDialog::getOpenFileName(this, caption, edit->text());
      if (!path.isEmpty()) edit->setText(path);
    });
    row->addWidget(b);
    return row;
  };
  out_ = new QLineEdit;
  out_->setPlaceholderText(tr("folder for results.json/.csv/.md and the pruned models"));
  left->addRow(tr("Output folder"), browse_row(out_, true, tr("Sweep output folder")));
  task_data_ = new QLineEdit;
  task_data_->setPlaceholderText(tr("task files or a folder (optional)"));
  right->addRow(tr("Task data"), browse_row(task_data_, true, tr("Zero-shot task folder")));
  auto* task_row = new QHBoxLayout;
  tasks_ = new QLineEdit;
  tasks_->setPlaceholderText(tr("all tasks there"));
  task_row->addWidget(tasks_, 1);
  limit_ = new QSpinBox;
  limit_->setRange(0, 1000000);
  limit_->setSuffix(tr(" items"));
  limit_->setSpecialValueText(tr("all items"));
  limit_->setToolTip(tr("Items scored per task"));
  task_row->addWidget(limit_);
  right->addRow(tr("Tasks"), task_row);
  auto* go_row = new QHBoxLayout;
  bench_ = new QCheckBox(tr("Speed-up"));
  bench_->setToolTip(
      tr("Measure each pruned model's prefill and decode speed against the dense "
         "one (alternating repetitions)"));
  bench_->setChecked(true);
  go_row->addWidget(bench_);
  go_row->addStretch();
  start_ = new QPushButton(tr("Start sweep"));
  start_->setObjectName("startSweep");
  start_->setToolTip(tr("Prune with every method at every ratio, with the Run dock's settings"));
  go_row->addWidget(start_);
  right->addRow(QString(), go_row);
  form_row->addLayout(left, 1);
  form_row->addLayout(right, 1);
  layout->addLayout(form_row);
  message_ = new MessageLabel;
  message_->setWordWrap(true);
  layout->addWidget(message_);

  split_ = new QSplitter(Qt::Horizontal);
  auto* split = split_;
  table_ = new QTableWidget;
  table_->setObjectName("experimentsTable");
  table_->setSelectionBehavior(QAbstractItemView::SelectRows);
  table_->verticalHeader()->hide();
  table_->verticalHeader()->setDefaultSectionSize(fontMetrics().height() + 6);
  table_->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
  split->addWidget(table_);
  auto* chart_box = new QWidget;
  auto* chart_layout = new QVBoxLayout(chart_box);
  chart_layout->setContentsMargins(0, 0, 0, 0);
  auto* metric_row = new QHBoxLayout;
  metric_row->addWidget(new QLabel(tr("Metric")));
  metric_ = new QComboBox;
  metric_->setObjectName("experimentsMetric");
  metric_row->addWidget(metric_, 1);
  // One button for the exports: the chart keeps the width beside a wide table.
  auto* export_button = new QToolButton;
  export_button->setText(tr("Export"));
  export_button->setPopupMode(QToolButton::InstantPopup);
  auto* export_menu = new QMenu(export_button);
  for (const auto& [label, what] :
       std::vector<std::pair<QString, QString>>{{tr("Chart as PNG…"), "png"},
                                                {tr("Chart as SVG…"), "svg"},
                                                {tr("Table as CSV…"), "csv"},
                                                {tr("Table as Markdown…"), "md"}}) {
    export_menu->addAction(label, this, [this, what = what] {
      const auto path =
          QFileDialog::getSaveFileName(this, tr("Export"), QString(), QString("*.%1").arg(what));
      if (path.isEmpty()) return;
      QString error;
      const bool ok =
          (what == "png" || what == "svg") ? exportChart(path, &error) : exportTable(path, &error);
      setMessage(ok ? tr("Wrote %1").arg(path) : tr("Cannot export: %1").arg(error));
    });
  }
  export_button->setMenu(export_menu);
  metric_row->addWidget(export_button);
  chart_layout->addLayout(metric_row);
  chart_ = new QChartView;
  chart_->setObjectName("experimentsChart");
  chart_->setRenderHint(QPainter::Antialiasing);
  chart_->setMinimumHeight(200);
  chart_->viewport()->installEventFilter(this);
  chart_layout->addWidget(chart_, 1);
  split->addWidget(chart_box);
  split->setStretchFactor(0, 3);
  split->setStretchFactor(1, 2);
  layout->addWidget(split, 1);

  connect(start_, &QPushButton::clicked, this, [this] { start(); });
  connect(metric_, &QComboBox::currentTextChanged, this, [this] { render(); });
  connect(table_, &QTableWidget::cellDoubleClicked, this, [this](int row, int) {
    const auto dir = table_->item(row, 0)->data(Qt::UserRole).toString();
    if (!dir.isEmpty()) emit openModelRequested(dir);
  });
  connect(engine_, &Engine::sweepChanged, this, [this](const QString& text) {
    showResults(QJsonDocument::fromJson(text.toUtf8()).object());
  });
  connect(engine_, &Engine::taskFinished, this, [this](const QString& task, const QString& s) {
    if (task == "Experiment") setMessage(tr("Sweep finished: %1").arg(s));
  });
  connect(engine_, &Engine::taskCancelled, this, [this](const QString& task) {
    if (task != "Experiment") return;
    QStringList missing;
    for (const auto& r : results_.value("runs").toArray())
      if (r.toObject().value("status").toString() != "done")
        missing << r.toObject().value("id").toString();
    setMessage(tr("Cancelled: finished runs are saved in %1; missing: %2. Start again with the "
                  "same settings to continue.")
                   .arg(out_->text(), missing.isEmpty() ? tr("none") : missing.join(", ")));
  });
  connect(engine_, &Engine::taskFailed, this, [this](const QString& task, const QString& m) {
    if (task == "Experiment") setMessage(tr("Sweep failed: %1").arg(m));
  });
  render();
}

void ExperimentsPanel::setRatios(const QString& ratios) {
  ratios_->setText(ratios);
}
void ExperimentsPanel::setMethods(const QStringList& methods) {
  for (auto* b : methods_)
    b->setChecked(methods.contains(b->text()));
}
void ExperimentsPanel::setOutputDir(const QString& dir) {
  out_->setText(dir);
}
void ExperimentsPanel::setTaskData(const QString& data, const QString& tasks, int limit) {
  task_data_->setText(data);
  tasks_->setText(tasks);
  limit_->setValue(limit);
}
void ExperimentsPanel::setBench(bool on) {
  bench_->setChecked(on);
}
QString ExperimentsPanel::messageText() const {
  return message_->text();
}
void ExperimentsPanel::setMessage(const QString& text) {
  message_->setText(text);
}

bool ExperimentsPanel::start() {
  SweepSettings s;
  QString problem;
  for (const auto& part : ratios_->text().split(',', Qt::SkipEmptyParts)) {
    bool ok = false;
    const double r = part.trimmed().toDouble(&ok);
    if (!ok || !(r > 0 && r < 1)) {
      problem = tr("ratio \"%1\" is not a fraction in (0, 1)").arg(part.trimmed());
      break;
    }
    s.ratios << r;
  }
  for (auto* b : methods_)
    if (b->isChecked()) s.methods << b->text();
  s.out_dir = out_->text().trimmed();
  if (!task_data_->text().trimmed().isEmpty())
    for (const auto& p : task_data_->text().split(',', Qt::SkipEmptyParts))
      s.task_data << p.trimmed();
  for (const auto& t : tasks_->text().split(',', Qt::SkipEmptyParts))
    s.tasks << t.trimmed();
  s.task_limit = limit_->value();
  s.bench = bench_->isChecked();
  const auto run = run_->settings();
  if (problem.isEmpty() && s.ratios.isEmpty()) problem = tr("give at least one ratio");
  if (problem.isEmpty() && s.methods.isEmpty()) problem = tr("choose at least one method");
  if (problem.isEmpty() && s.out_dir.isEmpty()) problem = tr("choose an output folder");
  if (problem.isEmpty() && run.text.isEmpty())
    problem = tr("choose a training text in the Run dock");
  if (problem.isEmpty() && !QFileInfo::exists(run.text))
    problem = tr("the training text %1 does not exist").arg(run.text);
  if (problem.isEmpty() && !s.tasks.isEmpty() && s.task_data.isEmpty())
    problem = tr("the tasks need their files: choose the task data");
  if (!problem.isEmpty()) {
    setMessage(tr("Not started: %1").arg(problem));
    return false;
  }
  if (!engine_->runSweep(run, plan_->planJson(), s)) {
    setMessage(tr("Not started: the engine is busy with %1").arg(engine_->currentTask()));
    return false;
  }
  results_ = {};
  render();
  setMessage(tr("Running %1 × %2 runs…").arg(s.methods.size()).arg(s.ratios.size()));
  return true;
}

QStringList ExperimentsPanel::metrics() const {
  QStringList m;
  for (int i = 0; i < metric_->count(); ++i)
    m << metric_->itemText(i);
  return m;
}

void ExperimentsPanel::setMetric(const QString& metric) {
  metric_->setCurrentText(metric);
}

QString ExperimentsPanel::runAt(const QString& method, int point) const {
  const auto runs = point_runs_.value(method);
  return point >= 0 && point < runs.size() ? runs[point] : QString();
}

void ExperimentsPanel::showResults(const QJsonObject& results) {
  results_ = results;
  render();
}

void ExperimentsPanel::render() {
  QStringList tasks;
  for (const auto& t : results_.value("task_order").toArray())
    tasks << t.toString();
  const bool speed = results_.value("settings").toObject().value("bench").toBool();
  // The metric list follows the results; the choice is kept.
  const auto current = metric_->currentText();
  QStringList wanted;
  if (!tasks.isEmpty()) wanted << kMean;
  wanted << kPpl;
  wanted << tasks;
  if (speed) wanted << kPrefill << kDecode;
  if (wanted != metrics()) {
    QSignalBlocker block(metric_);
    metric_->clear();
    metric_->addItems(wanted);
    metric_->setCurrentText(wanted.contains(current) ? current : wanted.first());
  }

  // Table: dense, then the runs.
  QStringList headers{tr("Method"), tr("Removed"), tr("Params")};
  headers << tasks;
  if (!tasks.isEmpty()) headers << tr("Mean");
  headers << tr("PPL");
  if (speed) headers << tr("Prefill ×") << tr("Decode ×");
  table_->clear();
  table_->setColumnCount(headers.size());
  table_->setHorizontalHeaderLabels(headers);
  const auto dense = results_.value("dense").toObject();
  const auto runs = results_.value("runs").toArray();
  table_->setRowCount(results_.isEmpty() ? 0 : runs.size() + 1);
  auto fmt = [](const QJsonValue& v, int digits, double scale = 1.0) {
    return v.isDouble() ? QString::number(v.toDouble() * scale, 'f', digits) : QString("–");
  };
  auto fill = [&](int row, const QString& method, const QString& ratio, const QJsonObject& r,
                  const QString& status) {
    int col = 0;
    // The run's state shows in its name until it is done; the error in the tooltip.
    auto* first = cell(status == "done" ? method : QString("%1 (%2)").arg(method, status), false);
    first->setData(Qt::UserRole, r.value("model_dir").toString());
    first->setToolTip(r.value("error").toString().isEmpty()
                          ? tr("%1: double-click opens its model").arg(r.value("id").toString())
                          : r.value("error").toString());
    if (status != "done") first->setForeground(palette().color(QPalette::PlaceholderText));
    table_->setItem(row, col++, first);
    auto* removed =
        cell(r.value("removed_ratio").isDouble() ? fmt(r.value("removed_ratio"), 1, 100.0) + "%"
                                                 : QString("(%1%)").arg(ratio),
             true);
    removed->setToolTip(tr("planned: %1% of the parameters").arg(ratio));
    table_->setItem(row, col++, removed);
    table_->setItem(row, col++,
                    cell(r.value("parameters").isDouble()
                             ? QString::number(r.value("parameters").toDouble() / 1e6, 'f', 3) + "M"
                             : "–",
                         true));
    for (const auto& t : tasks)
      table_->setItem(
          row, col++,
          cell(fmt(r.value("tasks").toObject().value(t).toObject().value("headline"), 2, 100.0),
               true));
    if (!tasks.isEmpty()) table_->setItem(row, col++, cell(fmt(r.value("mean"), 2, 100.0), true));
    table_->setItem(row, col++, cell(fmt(r.value("ppl"), 3), true));
    if (speed) {
      table_->setItem(row, col++, cell(fmt(r.value("prefill_speedup"), 2), true));
      table_->setItem(row, col++, cell(fmt(r.value("decode_speedup"), 2), true));
    }
  };
  if (!results_.isEmpty()) {
    auto d = dense;
    d["removed_ratio"] = 0.0;
    d["prefill_speedup"] = 1.0;
    d["decode_speedup"] = 1.0;
    fill(0, tr("dense"), "0", d, dense.isEmpty() ? tr("evaluating") : "done");
    for (int i = 0; i < runs.size(); ++i) {
      const auto r = runs[i].toObject();
      fill(i + 1, r.value("method").toString(),
           QString::number(100.0 * r.value("ratio").toDouble(), 'f', 0), r,
           r.value("status").toString());
    }
  }
  // The sections take their contents' widths once the table has laid itself out.
  QTimer::singleShot(0, this, &ExperimentsPanel::arrange);

  // Chart: the metric against the fraction removed, one line per method from the dense point.
  const auto metric = metric_->currentText();
  auto* chart = new QChart;
  // No title: the metric names the y-axis and the combo box above; the height goes to the plot.
  chart->setMargins(QMargins(2, 2, 2, 2));
  chart->layout()->setContentsMargins(0, 0, 0, 0);
  chart->setBackgroundRoundness(0);
  auto* x = new QValueAxis;
  x->setTitleText(tr("fraction removed"));
  auto* y = new QValueAxis;
  y->setTitleText(metric);
  chart->addAxis(x, Qt::AlignBottom);
  chart->addAxis(y, Qt::AlignLeft);
  point_runs_.clear();
  double xmax = 0.5, ymin = 1e300, ymax = -1e300;
  const double dense_value =
      metric == kPrefill || metric == kDecode ? 1.0 : metric_value(dense, metric);
  QStringList methods;
  for (const auto& r : runs)
    if (!methods.contains(r.toObject().value("method").toString()))
      methods << r.toObject().value("method").toString();
  for (int m = 0; m < methods.size(); ++m) {
    std::vector<std::pair<QPointF, QString>> points;
    if (std::isfinite(dense_value)) points.push_back({{0.0, dense_value}, "dense"});
    for (const auto& v : runs) {
      const auto r = v.toObject();
      if (r.value("method").toString() != methods[m] || r.value("status").toString() != "done")
        continue;
      const double value = metric_value(r, metric);
      if (!std::isfinite(value)) continue;
      points.push_back({{r.value("removed_ratio").toDouble(), value}, r.value("id").toString()});
    }
    std::sort(points.begin(), points.end(),
              [](const auto& a, const auto& b) { return a.first.x() < b.first.x(); });
    auto* series = new QLineSeries;
    series->setName(methods[m]);
    series->setPointsVisible(true);
    series->setColor(MetricChart::paletteColour(m));
    QStringList ids;
    for (const auto& [p, id] : points) {
      series->append(p);
      ids << id;
      xmax = std::max(xmax, p.x());
      ymin = std::min(ymin, p.y());
      ymax = std::max(ymax, p.y());
    }
    point_runs_[methods[m]] = ids;
    chart->addSeries(series);
    series->attachAxis(x);
    series->attachAxis(y);
    const auto method = methods[m];
    connect(series, &QLineSeries::hovered, this,
            [this, series, method](const QPointF& point, bool state) {
              if (!state) {
                hovered_run_.clear();
                return;
              }
              int best = -1;
              double best_d = 1e300;
              for (int i = 0; i < series->count(); ++i) {
                const double d = std::abs(series->at(i).x() - point.x());
                if (d < best_d) {
                  best_d = d;
                  best = i;
                }
              }
              hovered_run_ = runAt(method, best);
              QToolTip::showText(QCursor::pos(), tr("%1: %2 at %3 removed (double-click opens it)")
                                                     .arg(hovered_run_)
                                                     .arg(series->at(best).y(), 0, 'g', 4)
                                                     .arg(series->at(best).x(), 0, 'f', 3));
            });
  }
  // Ticks every 0.1 up to 0.3, else every 0.2: few enough labels for a narrow chart.
  const double step = xmax + 0.02 > 0.3 ? 0.2 : 0.1;
  const double xtop = std::min(1.0, std::ceil((xmax + 0.02) / step) * step);
  x->setRange(0.0, xtop);
  x->setTickCount(static_cast<int>(std::lround(xtop / step)) + 1);
  x->setLabelFormat("%.1f");
  if (ymin <= ymax) {
    const double pad = std::max(1e-6, (ymax - ymin) * 0.08);
    y->setRange(ymin - pad, ymax + pad);
    y->applyNiceNumbers();
  }
  chart->legend()->setAlignment(Qt::AlignBottom);
  auto* old = chart_->chart();
  chart_->setChart(chart);
  delete old;
}

void ExperimentsPanel::arrange() {
  // Beside the chart while the table takes at most 55% of the width, above it otherwise.
  int wanted = table_->verticalHeader()->isVisible() ? table_->verticalHeader()->width() : 0;
  for (int c = 0; c < table_->columnCount(); ++c)
    wanted += table_->horizontalHeader()->sectionSize(c);
  wanted += 2 * table_->frameWidth() + 12 + table_->verticalScrollBar()->sizeHint().width();
  // Beside the chart while the table takes at most 70% of the width (the chart keeps ~230 px),
  // above it otherwise, the chart keeping the height its labels need.
  const bool beside = wanted <= width() * 70 / 100;
  split_->setOrientation(beside ? Qt::Horizontal : Qt::Vertical);
  if (beside) {
    split_->setSizes({wanted, std::max(1, split_->width() - wanted)});
  } else {
    int rows = table_->horizontalHeader()->height() + 2 * table_->frameWidth() + 4;
    for (int r = 0; r < table_->rowCount(); ++r)
      rows += table_->rowHeight(r);
    rows = std::max(std::min(rows, split_->height() - 260), 60);
    split_->setSizes({rows, std::max(1, split_->height() - rows)});
  }
}

void ExperimentsPanel::resizeEvent(QResizeEvent* event) {
  QWidget::resizeEvent(event);
  arrange();
}

bool ExperimentsPanel::eventFilter(QObject* watched, QEvent* event) {
  if (watched == chart_->viewport() && event->type() == QEvent::MouseButtonDblClick &&
      !hovered_run_.isEmpty()) {
    for (const auto& r : results_.value("runs").toArray())
      if (r.toObject().value("id").toString() == hovered_run_) {
        emit openModelRequested(r.toObject().value("model_dir").toString());
        return true;
      }
  }
  return QWidget::eventFilter(watched, event);
}

bool ExperimentsPanel::exportChart(const QString& path, QString* error) {
  if (path.endsWith(".svg", Qt::CaseInsensitive)) {
    QSvgGenerator svg;
    svg.setFileName(path);
    svg.setSize(chart_->size());
    svg.setViewBox(chart_->rect());
    svg.setTitle(tr("%1 vs fraction of parameters removed").arg(metric_->currentText()));
    QPainter painter;
    if (!painter.begin(&svg)) {
      if (error) *error = tr("cannot write %1").arg(path);
      return false;
    }
    chart_->render(&painter);
    painter.end();
    return true;
  }
  if (!chart_->grab().save(path, "PNG")) {
    if (error) *error = tr("cannot write %1").arg(path);
    return false;
  }
  return true;
}

bool ExperimentsPanel::exportTable(const QString& path, QString* error) {
  try {
    const auto j =
        nlohmann::json::parse(QJsonDocument(results_).toJson(QJsonDocument::Compact).toStdString());
    io::write_file_atomic(path.toStdString(), path.endsWith(".md", Qt::CaseInsensitive)
                                                  ? sweep_markdown(j)
                                                  : sweep_csv(j));
    return true;
  } catch (const std::exception& e) {
    if (error) *error = QString::fromStdString(e.what());
    return false;
  }
}

}  // namespace lorashear
