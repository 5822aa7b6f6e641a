#include "lorashear/ui/compare_panel.h"

#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QLocale>
#include <QPushButton>
#include <QResizeEvent>
#include <QSpinBox>
#include <QSplitter>
#include <QStyle>
#include <QTableWidget>
#include <QToolButton>
#include <QVBoxLayout>

#include <algorithm>

#include "lorashear/model/config.h"
#include "lorashear/ui/engine.h"
#include "lorashear/ui/node_group_model.h"

namespace lorashear {

namespace {

QTableWidgetItem* cell(const QString& text, Qt::Alignment align = Qt::AlignLeft) {
  auto* item = new QTableWidgetItem(text);
  item->setFlags(Qt::ItemIsEnabled | Qt::ItemIsSelectable);
  item->setTextAlignment(align | Qt::AlignVCenter);
  return item;
}

// Sorts by a number while it shows text.
class NumberItem : public QTableWidgetItem {
 public:
  NumberItem(double value, const QString& text) : QTableWidgetItem(text), value_(value) {
    setFlags(Qt::ItemIsEnabled | Qt::ItemIsSelectable);
    setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
  }
  bool operator<(const QTableWidgetItem& other) const override {
    if (const auto* n = dynamic_cast<const NumberItem*>(&other)) return value_ < n->value_;
    return QTableWidgetItem::operator<(other);
  }

 private:
  double value_;
};

QString change(double before, double after) {
  if (before <= 0 || after < 0) return {};
  return QString("%1%2%")
      .arg(after >= before ? "+" : "")
      .arg(100.0 * (after / before - 1.0), 0, 'f', 1);
}

// The figures beside the node groups where both fit at their contents' width, above them
// otherwise, where the figures take the height of their rows and the node groups the rest. The
// splitter stays where the user drags it until the orientation or the contents change.
class ComparisonView : public QWidget {
 public:
  ComparisonView(QLabel* header, QTableWidget* figures, QTableWidget* groups)
      : figures_(figures), groups_(groups) {
    setObjectName("comparison");
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(4, 4, 4, 4);
    layout->addWidget(header);
    split_ = new QSplitter(Qt::Horizontal);
    split_->addWidget(figures);
    split_->addWidget(groups);
    split_->setStretchFactor(0, 0);
    split_->setStretchFactor(1, 1);
    split_->setChildrenCollapsible(false);
    layout->addWidget(split_, 1);
  }

  /// Chooses the orientation and the split again (after new contents).
  void fit(bool contents_changed) {
    const int figures = wantedWidth(figures_), groups = wantedWidth(groups_);
    const int room = split_->width() > 0 ? split_->width() : width();
    const auto orientation =
        room >= figures + groups + split_->handleWidth() ? Qt::Horizontal : Qt::Vertical;
    if (orientation == split_->orientation() && !contents_changed) return;
    split_->setOrientation(orientation);
    if (orientation == Qt::Horizontal)
      split_->setSizes({figures, std::max(groups, room - figures)});
    else
      split_->setSizes({wantedHeight(figures_), std::max(1, split_->height())});
  }

 protected:
  void resizeEvent(QResizeEvent* event) override {
    QWidget::resizeEvent(event);
    fit(false);
  }

 private:
  // The width that shows every column at its contents (a long last column, the removed indices,
  // counts up to 240 px: it is stretched, and the full text is in its tool tip).
  static int wantedWidth(QTableWidget* table) {
    auto* view = static_cast<QAbstractItemView*>(table);
    int width = 2 * table->frameWidth() + table->style()->pixelMetric(QStyle::PM_ScrollBarExtent);
    for (int c = 0; c < table->columnCount(); ++c) {
      const int column =
          std::max(table->horizontalHeader()->sectionSizeHint(c), view->sizeHintForColumn(c));
      width += c + 1 == table->columnCount() ? std::min(column, 240) : column;
    }
    return width;
  }

  static int wantedHeight(QTableWidget* table) {
    return 2 * table->frameWidth() + table->horizontalHeader()->sizeHint().height() +
           table->verticalHeader()->length() +
           table->style()->pixelMetric(QStyle::PM_ScrollBarExtent);
  }

  QTableWidget* figures_;
  QTableWidget* groups_;
  QSplitter* split_ = nullptr;
};

}  // namespace

ComparePanel::ComparePanel(Engine* engine, QWidget* parent) : QWidget(parent), engine_(engine) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(2, 2, 2, 2);
  auto* form = new QFormLayout;
  form->setRowWrapPolicy(QFormLayout::WrapAllRows);  // a narrow dock: the paths get its width
  auto path_row = [](QLineEdit* edit, std::initializer_list<QAbstractButton*> buttons) {
    auto* row = new QHBoxLayout;
    row->addWidget(edit, 1);
    for (auto* b : buttons)
      row->addWidget(b);
    return row;
  };
  auto tool = [](const QString& text, const QString& tip) {
    auto* button = new QToolButton;
    button->setText(text);
    button->setToolTip(tip);
    return button;
  };
  other_ = new QLineEdit;
  other_->setPlaceholderText(tr("the dense (or pruned) model to compare the open one with"));
  auto* other_file = tool(tr("File…"), tr("A model file"));
  auto* other_folder = tool(tr("Folder…"), tr("A Hugging Face model folder"));
  form->addRow(tr("Compare with"), path_row(other_, {other_file, other_folder}));
  text_ = new QLineEdit;
  text_->setPlaceholderText(tr("text for the perplexity (optional; up to 200 windows of 128)"));
  auto* text_browse = tool(tr("…"), tr("Choose…"));
  form->addRow(tr("Text"), path_row(text_, {text_browse}));
  tasks_data_ = new QLineEdit;
  tasks_data_->setPlaceholderText(tr("zero-shot task files or folder (optional)"));
  auto* tasks_browse = tool(tr("…"), tr("A folder of task files (ARC, BoolQ, PIQA, …)"));
  form->addRow(tr("Tasks"), path_row(tasks_data_, {tasks_browse}));
  auto* limit_row = new QHBoxLayout;
  tasks_names_ = new QLineEdit;
  tasks_names_->setPlaceholderText(tr("all tasks there"));
  limit_row->addWidget(tasks_names_, 1);
  limit_row->addWidget(new QLabel(tr("items")));
  limit_ = new QSpinBox;
  limit_->setRange(0, 1000000);
  limit_->setSpecialValueText(tr("all"));
  limit_->setToolTip(tr("Items per task (all: the whole file)"));
  limit_row->addWidget(limit_);
  form->addRow(tr("Task names"), limit_row);
  connect(tasks_browse, &QToolButton::clicked, this, [this] {
    const auto dir =
        QFileDialog::getExistingDirectory(this, tr("Task folder"), tasks_data_->text());
    if (!dir.isEmpty()) tasks_data_->setText(dir);
  });
  compare_ = new QPushButton(tr("Compare"));
  auto* buttons = new QHBoxLayout;
  buttons->addStretch(1);
  buttons->addWidget(compare_);
  form->addRow(buttons);
  layout->addLayout(form);
  message_ = new QLabel;
  message_->setWordWrap(true);
  layout->addWidget(message_);
  layout->addStretch(1);

  header_ = new QLabel;
  header_->setWordWrap(true);
  header_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  figures_ = new QTableWidget(0, 4);
  figures_->setObjectName("comparisonFigures");
  figures_->setHorizontalHeaderLabels({tr(""), tr("Dense"), tr("Pruned"), tr("Change")});
  figures_->verticalHeader()->hide();
  figures_->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
  figures_->horizontalHeader()->setStretchLastSection(true);
  groups_ = new QTableWidget(0, 6);
  groups_->setObjectName("comparisonGroups");
  groups_->setHorizontalHeaderLabels({tr("Node group"), tr("Kind"), tr("Before"), tr("After"),
                                      tr("Removed"), tr("Removed (original indices)")});
  groups_->verticalHeader()->hide();
  groups_->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
  groups_->horizontalHeader()->setStretchLastSection(true);
  groups_->setSelectionBehavior(QAbstractItemView::SelectRows);
  groups_->setToolTip(tr("Double-click a node group to show it in the graph"));
  results_ = new ComparisonView(header_, figures_, groups_);

  connect(other_file, &QPushButton::clicked, this, [this] {
    const auto path =
        QFileDialog::getOpenFileName(this, tr("Model to compare with"), other_->text(),
                                     tr("Models (*.safetensors *.bin *.pt *.json);;All files (*)"));
    if (!path.isEmpty()) other_->setText(path);
  });
  connect(other_folder, &QPushButton::clicked, this, [this] {
    const auto path =
        QFileDialog::getExistingDirectory(this, tr("Model folder to compare with"), other_->text());
    if (!path.isEmpty()) other_->setText(path);
  });
  connect(text_browse, &QPushButton::clicked, this, [this] {
    const auto path = QFileDialog::getOpenFileName(
        this, tr("Text for the perplexity"), text_->text(), tr("Text (*.txt *.raw);;All (*)"));
    if (!path.isEmpty()) text_->setText(path);
  });
  connect(compare_, &QPushButton::clicked, this, [this] { compare(); });
  connect(engine_, &Engine::comparisonChanged, this, &ComparePanel::render);
  connect(engine_, &Engine::documentChanged, this, &ComparePanel::render);
  connect(engine_, &Engine::taskFailed, this, [this](const QString& task, const QString& message) {
    if (task == "Compare") message_->setText(tr("Failed: %1").arg(message));
  });
  connect(engine_, &Engine::taskCancelled, this, [this](const QString& task) {
    if (task == "Compare") message_->setText(tr("Cancelled."));
  });
  connect(groups_, &QTableWidget::cellDoubleClicked, this, [this](int row, int) {
    if (auto* item = groups_->item(row, 0)) emit nodeGroupActivated(item->text());
  });
  render();
}

ComparePanel::~ComparePanel() {
  delete results_;  // null when the window that showed it went first
}

void ComparePanel::setOtherModel(const QString& path) {
  other_->setText(path);
}

QString ComparePanel::otherModel() const {
  return other_->text();
}

void ComparePanel::setTasks(const QString& data, const QString& names, int limit) {
  tasks_data_->setText(data);
  tasks_names_->setText(names);
  limit_->setValue(limit);
}

void ComparePanel::setTextPath(const QString& path) {
  text_->setText(path);
}

QString ComparePanel::messageText() const {
  return message_->text();
}

bool ComparePanel::compare() {
  QString problem;
  if (!engine_->document())
    problem = tr("open a model first");
  else if (other_->text().isEmpty())
    problem = tr("choose the model to compare with");
  else if (!QFileInfo::exists(other_->text()))
    problem = tr("%1 does not exist").arg(other_->text());
  else if (!text_->text().isEmpty() && !QFileInfo::exists(text_->text()))
    problem = tr("the text %1 does not exist").arg(text_->text());
  CompareSettings settings;
  settings.text = text_->text();
  for (const auto& p : tasks_data_->text().split(',', Qt::SkipEmptyParts))
    settings.task_data << p.trimmed();
  for (const auto& t : tasks_names_->text().split(',', Qt::SkipEmptyParts))
    settings.tasks << t.trimmed();
  settings.task_limit = limit_->value();
  for (const auto& p : settings.task_data)
    if (problem.isEmpty() && !QFileInfo::exists(p))
      problem = tr("the task data %1 does not exist").arg(p);
  if (problem.isEmpty() && !settings.tasks.isEmpty() && settings.task_data.isEmpty())
    problem = tr("the tasks need their files: choose the task folder");
  if (problem.isEmpty() && !engine_->compareWith(other_->text(), settings))
    problem = tr("the engine is busy with %1").arg(engine_->currentTask());
  if (!problem.isEmpty()) {
    message_->setText(tr("Not compared: %1").arg(problem));
    return false;
  }
  message_->setText(tr("Comparing: loading, perplexity and speed of both models…"));
  return true;
}

void ComparePanel::render() {
  const auto& c = engine_->comparison();
  figures_->setRowCount(0);
  groups_->setSortingEnabled(false);
  groups_->setRowCount(0);
  if (c.empty()) {
    header_->setText(engine_->document()
                         ? tr("No comparison yet: choose a model to compare the open one with "
                              "in the Compare panel (after a run, the model it started from).")
                         : QString());
    return;
  }
  message_->clear();
  header_->setText(tr("Dense: %1%2\nPruned: %3%4")
                       .arg(c.dense.path, c.open_is_dense ? tr(" (open)") : QString(),
                            c.pruned.path, c.open_is_dense ? QString() : tr(" (open)")));
  struct Row {
    QString name;
    double dense, pruned;
    QString (*format)(double);
  };
  const QLocale locale;
  std::vector<Row> rows{
      {tr("Parameters"), double(c.dense.parameters), double(c.pruned.parameters), &format_count},
      {tr("FLOPs per token"), c.dense.flops_per_token, c.pruned.flops_per_token, &format_count},
      {tr("Prefill tokens/s"), c.dense.prefill_tokens_per_second,
       c.pruned.prefill_tokens_per_second, [](double v) { return QString::number(v, 'f', 0); }},
      {tr("Decode tokens/s"), c.dense.decode_tokens_per_second, c.pruned.decode_tokens_per_second,
       [](double v) { return QString::number(v, 'f', 1); }},
      {tr("Time to first token (ms)"), c.dense.ttft_ms, c.pruned.ttft_ms,
       [](double v) { return QString::number(v, 'f', 1); }}};
  const int speed_row = 2;
  if (c.dense.perplexity >= 0)
    rows.push_back({tr("Perplexity (%1)").arg(QFileInfo(c.text).fileName()), c.dense.perplexity,
                    c.pruned.perplexity, [](double v) { return QString::number(v, 'f', 3); }});
  const int ppl_row = c.dense.perplexity >= 0 ? static_cast<int>(rows.size()) - 1 : -1;
  const auto percent = [](double v) { return QString::number(100.0 * v, 'f', 2) + " %"; };
  for (const auto& t : c.tasks)
    rows.push_back({tr("%1 accuracy").arg(t), c.dense.task_accuracy.value(t),
                    c.pruned.task_accuracy.value(t), percent});
  if (c.tasks.size() > 1)
    rows.push_back({tr("Mean accuracy (%1 tasks)").arg(c.tasks.size()), c.dense.task_mean,
                    c.pruned.task_mean, percent});
  figures_->setRowCount(static_cast<int>(rows.size()));
  for (int r = 0; r < static_cast<int>(rows.size()); ++r) {
    const auto& row = rows[static_cast<size_t>(r)];
    figures_->setItem(r, 0, cell(row.name));
    figures_->setItem(r, 1, cell(row.format(row.dense), Qt::AlignRight));
    figures_->setItem(r, 2, cell(row.format(row.pruned), Qt::AlignRight));
    figures_->setItem(r, 3, cell(change(row.dense, row.pruned), Qt::AlignRight));
  }
  if (ppl_row >= 0) figures_->item(ppl_row, 0)->setToolTip(c.dense.perplexity_protocol);
  // Speed: the speed-up is the median of the per-repetition ratios, with its range.
  const auto ratio = [](double m, double lo, double hi) {
    return QString("×%1 (%2–%3)").arg(m, 0, 'f', 2).arg(lo, 0, 'f', 2).arg(hi, 0, 'f', 2);
  };
  figures_->setItem(
      speed_row, 3,
      cell(ratio(c.prefill_speedup, c.prefill_speedup_min, c.prefill_speedup_max), Qt::AlignRight));
  figures_->setItem(
      speed_row + 1, 3,
      cell(ratio(c.decode_speedup, c.decode_speedup_min, c.decode_speedup_max), Qt::AlignRight));
  for (int r = speed_row; r < speed_row + 3; ++r)
    figures_->item(r, 0)->setToolTip(c.speed_protocol);
  // Accuracy changes in percentage points, as the papers' tables state them.
  for (int r = ppl_row >= 0 ? ppl_row + 1 : speed_row + 3; r < figures_->rowCount(); ++r) {
    figures_->item(r, 0)->setToolTip(c.task_protocol);
    const auto& row = rows[static_cast<size_t>(r)];
    figures_->setItem(
        r, 3,
        cell(tr("%1 points").arg(QString::asprintf("%+.2f", 100.0 * (row.pruned - row.dense))),
             Qt::AlignRight));
  }
  groups_->setRowCount(static_cast<int>(c.groups.size()));
  for (int r = 0; r < static_cast<int>(c.groups.size()); ++r) {
    const auto& g = c.groups[r];
    const qint64 removed = g.before - g.after;
    groups_->setItem(r, 0, cell(g.id));
    groups_->setItem(r, 1, cell(g.kind));
    groups_->setItem(r, 2, new NumberItem(double(g.before), QString::number(g.before)));
    groups_->setItem(r, 3, new NumberItem(double(g.after), QString::number(g.after)));
    groups_->setItem(r, 4,
                     new NumberItem(double(removed), removed ? QString::number(removed) : ""));
    // The ranges of the config's lorashear_original_indices, spaced so that the cell wraps.
    auto* indices = cell(
        g.indices_known ? QString::fromStdString(format_index_ranges(g.removed)).replace(",", ", ")
                        : tr("(not recorded by the pruned model)"));
    indices->setToolTip(indices->text());
    groups_->setItem(r, 5, indices);
    if (removed > 0)
      for (int col = 0; col < 6; ++col)
        groups_->item(r, col)->setForeground(QColor(200, 40, 40));
  }
  // Model order first; a click on a header sorts.
  groups_->horizontalHeader()->setSortIndicator(-1, Qt::AscendingOrder);
  groups_->setSortingEnabled(true);
  static_cast<ComparisonView*>(results_.data())->fit(true);
}

}  // namespace lorashear
