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
#include <QSplitter>
#include <QTableWidget>
#include <QVBoxLayout>

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

}  // namespace

ComparePanel::ComparePanel(Engine* engine, QWidget* parent) : QWidget(parent), engine_(engine) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(2, 2, 2, 2);
  auto* form = new QFormLayout;
  auto path_row = [](QLineEdit* edit, std::initializer_list<QPushButton*> buttons) {
    auto* row = new QHBoxLayout;
    row->addWidget(edit, 1);
    for (auto* b : buttons)
      row->addWidget(b);
    return row;
  };
  other_ = new QLineEdit;
  other_->setPlaceholderText(tr("the dense (or pruned) model to compare the open one with"));
  auto* other_file = new QPushButton(tr("File…"));
  auto* other_folder = new QPushButton(tr("Folder…"));
  form->addRow(tr("Compare with"), path_row(other_, {other_file, other_folder}));
  text_ = new QLineEdit;
  text_->setPlaceholderText(tr("text for the perplexity (optional; up to 200 windows of 128)"));
  auto* text_browse = new QPushButton(tr("…"));
  compare_ = new QPushButton(tr("Compare"));
  form->addRow(tr("Text"), path_row(text_, {text_browse, compare_}));
  layout->addLayout(form);
  header_ = new QLabel;
  header_->setWordWrap(true);
  header_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  layout->addWidget(header_);
  message_ = new QLabel;
  message_->setWordWrap(true);
  layout->addWidget(message_);

  figures_ = new QTableWidget(0, 4);
  figures_->setHorizontalHeaderLabels({tr(""), tr("Dense"), tr("Pruned"), tr("Change")});
  figures_->verticalHeader()->hide();
  figures_->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
  figures_->horizontalHeader()->setStretchLastSection(true);
  groups_ = new QTableWidget(0, 6);
  groups_->setHorizontalHeaderLabels({tr("Node group"), tr("Kind"), tr("Before"), tr("After"),
                                      tr("Removed"), tr("Removed (original indices)")});
  groups_->verticalHeader()->hide();
  groups_->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
  groups_->horizontalHeader()->setStretchLastSection(true);
  groups_->setSelectionBehavior(QAbstractItemView::SelectRows);
  groups_->setToolTip(tr("Double-click a node group to show it in the graph"));
  auto* split = new QSplitter(Qt::Horizontal);
  split->addWidget(figures_);
  split->addWidget(groups_);
  split->setStretchFactor(0, 2);
  split->setStretchFactor(1, 3);
  layout->addWidget(split, 1);

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

void ComparePanel::setOtherModel(const QString& path) {
  other_->setText(path);
}

QString ComparePanel::otherModel() const {
  return other_->text();
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
  if (problem.isEmpty() && !engine_->compareWith(other_->text(), text_->text()))
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
                         ? tr("Choose a model to compare the open one with (after a run: the "
                              "model it started from).")
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
      {tr("Tokens/s (forward, %1 × %2)").arg(c.batch).arg(c.seq_len), c.dense.tokens_per_second,
       c.pruned.tokens_per_second, [](double v) { return QString::number(v, 'f', 0); }}};
  if (c.dense.perplexity >= 0)
    rows.push_back({tr("Perplexity (%1)").arg(QFileInfo(c.text).fileName()), c.dense.perplexity,
                    c.pruned.perplexity, [](double v) { return QString::number(v, 'f', 3); }});
  figures_->setRowCount(static_cast<int>(rows.size()));
  for (int r = 0; r < static_cast<int>(rows.size()); ++r) {
    const auto& row = rows[static_cast<size_t>(r)];
    figures_->setItem(r, 0, cell(row.name));
    figures_->setItem(r, 1, cell(row.format(row.dense), Qt::AlignRight));
    figures_->setItem(r, 2, cell(row.format(row.pruned), Qt::AlignRight));
    figures_->setItem(r, 3, cell(change(row.dense, row.pruned), Qt::AlignRight));
  }
  if (c.dense.perplexity >= 0)
    figures_->item(figures_->rowCount() - 1, 0)->setToolTip(c.dense.perplexity_protocol);
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
}

}  // namespace lorashear
