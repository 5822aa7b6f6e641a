#include "lorashear/ui/plan_editor.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QPainter>
#include <QPushButton>
#include <QSlider>
#include <QStyledItemDelegate>
#include <QTableView>
#include <QVBoxLayout>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "document.h"
#include "lorashear/errors.h"
#include "lorashear/graph/export.h"
#include "lorashear/io/gguf.h"
#include "lorashear/prune/plan.h"
#include "lorashear/ui/node_group_model.h"

namespace lorashear {

namespace {

QString percent(double r) {
  return QString::number(100.0 * r, 'f', 1) + " %";
}

}  // namespace

// Two bars per layer in the Knowledge column: attention (its kind's colour) above MLP.
class ImportanceDelegate : public QStyledItemDelegate {
 public:
  using QStyledItemDelegate::QStyledItemDelegate;
  void paint(QPainter* p, const QStyleOptionViewItem& option,
             const QModelIndex& index) const override {
    QStyledItemDelegate::paint(p, option, index);
    const auto values = index.data(PlanModel::ImportanceRole).toList();
    if (values.size() != 2) return;
    const QRect r = option.rect.adjusted(4, 3, -4, -3);
    const int h = (r.height() - 2) / 2;
    const char* colours[] = {node_group_colour("attention"), node_group_colour("mlp")};
    for (int i = 0; i < 2; ++i) {
      const double v = values[i].toDouble();
      if (v < 0) continue;
      const QRect bar(r.left(), r.top() + i * (h + 2),
                      static_cast<int>(r.width() * std::clamp(v, 0.0, 1.0)), h);
      p->fillRect(bar, QColor(colours[i]).darker(120));
    }
  }
  QSize sizeHint(const QStyleOptionViewItem& option, const QModelIndex& index) const override {
    return QSize(120, QStyledItemDelegate::sizeHint(option, index).height());
  }
};

// A ratio cell edited with a slider (whole percentages, applied live as it moves, so the estimates
// follow) beside a field for typing an exact percentage (empty: the target again).
class RatioDelegate : public QStyledItemDelegate {
 public:
  using QStyledItemDelegate::QStyledItemDelegate;
  QWidget* createEditor(QWidget* parent, const QStyleOptionViewItem&,
                        const QModelIndex&) const override {
    auto* editor = new QWidget(parent);
    editor->setAutoFillBackground(true);
    auto* row = new QHBoxLayout(editor);
    row->setContentsMargins(0, 0, 0, 0);
    row->setSpacing(2);
    auto* slider = new QSlider(Qt::Horizontal);
    slider->setObjectName("ratioSlider");
    slider->setRange(0, 100);
    slider->setToolTip(tr("Drag to set the fraction removed; the estimates follow"));
    auto* edit = new QLineEdit;
    edit->setObjectName("ratioEdit");
    edit->setMaximumWidth(52);
    edit->setToolTip(tr("Type a percentage; empty: follow the target"));
    row->addWidget(slider, 1);
    row->addWidget(edit);
    editor->setFocusProxy(edit);
    auto* self = const_cast<RatioDelegate*>(this);
    connect(slider, &QSlider::valueChanged, editor, [self, editor, edit](int v) {
      edit->setText(QString::number(v));
      emit self->commitData(editor);
    });
    return editor;
  }
  void setEditorData(QWidget* editor, const QModelIndex& index) const override {
    auto* edit = editor->findChild<QLineEdit*>("ratioEdit");
    auto* slider = editor->findChild<QSlider*>("ratioSlider");
    const auto text = index.data(Qt::EditRole).toString();
    edit->setText(text);
    bool ok = false;
    const double v = QString(text).remove('%').trimmed().toDouble(&ok);
    const QSignalBlocker block(slider);
    slider->setValue(ok ? static_cast<int>(std::lround(v)) : 0);
  }
  void setModelData(QWidget* editor, QAbstractItemModel* model,
                    const QModelIndex& index) const override {
    const auto text = editor->findChild<QLineEdit*>("ratioEdit")->text();
    if (text != index.data(Qt::EditRole).toString()) model->setData(index, text, Qt::EditRole);
  }
  void updateEditorGeometry(QWidget* editor, const QStyleOptionViewItem& option,
                            const QModelIndex&) const override {
    QRect r = option.rect;
    r.setWidth(std::max(r.width(), 180));
    editor->setGeometry(r);
  }
};

struct PlanModel::Impl {
  std::shared_ptr<const ModelDocument> doc;
  std::map<std::string, double> importance;
  PruningPlan plan;
  ResolvedPlan resolved;
  std::vector<int64_t> attention, mlp;  // node group index per layer, -1 if none
};

PlanModel::PlanModel(QObject* parent) : QAbstractTableModel(parent), d_(std::make_unique<Impl>()) {}
PlanModel::~PlanModel() = default;

void PlanModel::setDocument(std::shared_ptr<const ModelDocument> doc) {
  beginResetModel();
  auto d = std::make_unique<Impl>();
  d->doc = std::move(doc);
  if (d->doc) {
    const auto& deps = d->doc->deps;
    const auto n = d->doc->trace.config.n_layers();
    d->attention.assign(static_cast<size_t>(n), -1);
    d->mlp.assign(static_cast<size_t>(n), -1);
    for (size_t g = 0; g < deps.node_groups.size(); ++g) {
      const auto& group = deps.node_groups[g];
      if (!group.prunable || group.layer < 0 || group.layer >= n) continue;
      if (group.kind == "attention") d->attention[static_cast<size_t>(group.layer)] = g;
      if (group.kind == "mlp") d->mlp[static_cast<size_t>(group.layer)] = g;
    }
    try {
      d->resolved = resolve_plan(d->plan, deps);
    } catch (const std::exception& e) {
      last_error_ = QString::fromStdString(e.what());
    }
  }
  d_ = std::move(d);
  endResetModel();
  emit planChanged();
}

bool PlanModel::commit(std::unique_ptr<Impl> candidate) {
  if (!candidate->doc) return false;
  try {
    candidate->resolved = resolve_plan(candidate->plan, candidate->doc->deps);
  } catch (const std::exception& e) {
    last_error_ = QString::fromStdString(e.what());
    emit editRefused(last_error_);
    return false;
  }
  last_error_.clear();
  d_ = std::move(candidate);
  if (rowCount() > 0) emit dataChanged(index(0, 0), index(rowCount() - 1, ColumnCount - 1));
  emit planChanged();
  return true;
}

void PlanModel::setImportance(const std::map<std::string, double>& importance) {
  d_->importance = importance;
  if (rowCount() > 0) emit dataChanged(index(0, Knowledge), index(rowCount() - 1, Knowledge));
}

double PlanModel::targetRatio() const {
  return d_->plan.target_ratio;
}

bool PlanModel::setTargetRatio(double ratio) {
  auto c = std::make_unique<Impl>(*d_);
  c->plan.target_ratio = ratio;
  return commit(std::move(c));
}

bool PlanModel::setNodeGroupRatio(const QString& id, double ratio) {
  auto c = std::make_unique<Impl>(*d_);
  const auto key = id.toStdString();
  if (ratio < 0)
    c->plan.node_group_ratios.erase(key);
  else
    c->plan.node_group_ratios[key] = ratio;
  c->plan.unprunable.erase(key);
  return commit(std::move(c));
}

bool PlanModel::setLocked(const QString& id, bool locked) {
  auto c = std::make_unique<Impl>(*d_);
  const auto key = id.toStdString();
  if (locked) {
    c->plan.unprunable.insert(key);
    c->plan.node_group_ratios.erase(key);
  } else {
    c->plan.unprunable.erase(key);
  }
  return commit(std::move(c));
}

bool PlanModel::uniform() const {
  return d_->plan.uniform;
}

bool PlanModel::setUniform(bool uniform) {
  auto c = std::make_unique<Impl>(*d_);
  c->plan.uniform = uniform;
  return commit(std::move(c));
}

bool PlanModel::presetUniform() {
  auto c = std::make_unique<Impl>(*d_);
  c->plan.node_group_ratios.clear();
  c->plan.layer_ratios.clear();
  c->plan.unprunable.clear();
  return commit(std::move(c));
}

bool PlanModel::presetProtectEnds() {
  auto c = std::make_unique<Impl>(*d_);
  const auto n = static_cast<int64_t>(c->attention.size());
  for (const int64_t layer : {int64_t(0), n - 1})
    for (const auto* groups : {&c->attention, &c->mlp})
      if (layer >= 0 && (*groups)[static_cast<size_t>(layer)] >= 0) {
        const auto& id =
            c->doc->deps.node_groups[static_cast<size_t>((*groups)[static_cast<size_t>(layer)])].id;
        c->plan.unprunable.insert(id);
        c->plan.node_group_ratios.erase(id);
      }
  return commit(std::move(c));
}

bool PlanModel::presetFromImportance(const std::map<std::string, double>& importance,
                                     double gamma) {
  if (importance.empty()) {
    last_error_ = tr("run the knowledge analysis first");
    emit editRefused(last_error_);
    return false;
  }
  auto c = std::make_unique<Impl>(*d_);
  std::vector<std::pair<double, std::string>> ranked;
  for (const auto& [id, v] : importance)
    ranked.emplace_back(v, id);
  std::sort(ranked.rbegin(), ranked.rend());
  const auto n = static_cast<size_t>(std::ceil(gamma * static_cast<double>(ranked.size())));
  c->plan.unprunable.clear();
  for (size_t i = 0; i < n && i < ranked.size(); ++i) {
    c->plan.unprunable.insert(ranked[i].second);
    c->plan.node_group_ratios.erase(ranked[i].second);
  }
  return commit(std::move(c));
}

bool PlanModel::roundMlpWidths(int multiple) {
  if (multiple <= 1 || !d_->doc) return true;
  auto c = std::make_unique<Impl>(*d_);
  const auto& deps = c->doc->deps;
  for (auto g : c->mlp) {
    if (g < 0) continue;
    const auto& group = deps.node_groups[static_cast<size_t>(g)];
    if (c->plan.unprunable.count(group.id)) continue;
    const int64_t kept = group.size - d_->resolved.count(static_cast<size_t>(g));
    int64_t rounded = std::llround(static_cast<double>(kept) / multiple) * multiple;
    rounded = std::clamp<int64_t>(rounded, std::min<int64_t>(multiple, group.size), group.size);
    c->plan.node_group_ratios[group.id] =
        static_cast<double>(group.size - rounded) / static_cast<double>(group.size);
  }
  return commit(std::move(c));
}

PlanEstimate PlanModel::estimate() const {
  PlanEstimate e;
  if (!d_->doc) return e;
  const auto& deps = d_->doc->deps;
  e.params_before = deps.total.params;
  e.flops_before = deps.total.flops;
  if (!last_error_.isEmpty() && d_->resolved.entries.empty()) {
    e.error = last_error_;
    return e;
  }
  // Indices, not ids: a 7B plan removes some 70 000 variable groups, and formatting and parsing
  // their ids cost the GUI thread tens of milliseconds. Every variable group of a node group costs
  // the same, so which ones go does not change the figures.
  RemovalPlan removal;
  qint64 removed = 0;
  for (const auto& entry : d_->resolved.entries) {
    if (entry.remove == 0) continue;
    auto& indices = removal[entry.node_group];
    indices.resize(static_cast<size_t>(entry.remove));
    std::iota(indices.begin(), indices.end(), int64_t(0));
    removed += entry.remove;
  }
  const auto cost = deps.removal_cost(removal);
  e.valid = true;
  e.params_after = e.params_before - cost.total.params;
  e.flops_after = e.flops_before - cost.total.flops;
  e.achieved_ratio = static_cast<double>(cost.total.params) / static_cast<double>(e.params_before);
  e.speedup = e.flops_after > 0 ? e.flops_before / e.flops_after : 1.0;
  e.removed_groups = removed;
  e.total_groups = deps.prunable_variable_groups();
  // The pruned model's shape, for where it will load.
  ModelConfig cfg = d_->doc->trace.config;
  for (const auto& entry : d_->resolved.entries) {
    const auto& g = deps.node_groups[entry.node_group];
    if (g.layer < 0 || g.layer >= cfg.n_layers() || entry.remove == 0) continue;
    auto& d = cfg.layers[static_cast<size_t>(g.layer)];
    if (g.kind == "attention" && d.n_kv_heads > 0) {
      const int64_t per_kv = d.n_heads / d.n_kv_heads;
      d.n_kv_heads -= entry.remove;
      d.n_heads = d.n_kv_heads * per_kv;
    } else if (g.kind == "mlp") {
      d.intermediate_size -= entry.remove;
    }
  }
  for (const auto& t : load_targets(cfg))
    e.loads_in << QString::fromStdString(t.text());
  for (const auto& n : d_->resolved.notes)
    e.uniform_notes << QString::fromStdString(n);
  return e;
}

bool PlanModel::save(const QString& path) {
  try {
    d_->plan.save(path.toStdString());
    return true;
  } catch (const std::exception& e) {
    last_error_ = QString::fromStdString(e.what());
    return false;
  }
}

bool PlanModel::load(const QString& path) {
  try {
    auto c = std::make_unique<Impl>(*d_);
    c->plan = PruningPlan::load(path.toStdString());
    return commit(std::move(c));
  } catch (const std::exception& e) {
    last_error_ = QString::fromStdString(e.what());
    emit editRefused(last_error_);
    return false;
  }
}

bool PlanModel::setPlanJson(const QString& json) {
  try {
    auto c = std::make_unique<Impl>(*d_);
    c->plan = PruningPlan::from_json(nlohmann::json::parse(json.toStdString()), "the saved plan");
    return commit(std::move(c));
  } catch (const std::exception& e) {
    last_error_ = QString::fromStdString(e.what());
    emit editRefused(last_error_);
    return false;
  }
}

QString PlanModel::planJson() const {
  return QString::fromStdString(d_->plan.to_json().dump(2));
}

int PlanModel::rowCount(const QModelIndex& parent) const {
  return parent.isValid() || !d_->doc ? 0 : static_cast<int>(d_->attention.size());
}

int PlanModel::columnCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : ColumnCount;
}

QVariant PlanModel::data(const QModelIndex& index, int role) const {
  if (!index.isValid() || !d_->doc) return {};
  const auto& deps = d_->doc->deps;
  const auto layer = static_cast<size_t>(index.row());
  const int col = index.column();
  const bool attention = col == KvKept || col == AttentionRatio || col == AttentionLock;
  const auto g = (attention ? d_->attention : d_->mlp)[layer];
  if (col == Layer)
    return role == Qt::DisplayRole ? QVariant(tr("layer %1").arg(layer)) : QVariant();
  if (col == Knowledge) {
    auto value = [&](int64_t gi) -> double {
      if (gi < 0) return -1;
      auto it = d_->importance.find(deps.node_groups[static_cast<size_t>(gi)].id);
      return it == d_->importance.end() ? -1 : it->second;
    };
    const double a = value(d_->attention[layer]), m = value(d_->mlp[layer]);
    if (role == ImportanceRole) return QVariantList{a, m};
    if (role == Qt::ToolTipRole && (a >= 0 || m >= 0))
      return tr("knowledge importance (loss increase when half the node group is zeroed, "
                "normalised): attention %1, MLP %2")
          .arg(a, 0, 'f', 2)
          .arg(m, 0, 'f', 2);
    if (role == Qt::DisplayRole && a < 0 && m < 0) return tr("run the analysis");
    if (role == Qt::ForegroundRole) return QColor(150, 150, 150);
    return {};
  }
  if (col == ParamsRemoved) {
    if (role != Qt::DisplayRole) return {};
    int64_t removed = 0;
    for (auto gi : {d_->attention[layer], d_->mlp[layer]})
      if (gi >= 0)
        removed += d_->resolved.count(static_cast<size_t>(gi)) *
                   deps.node_groups[static_cast<size_t>(gi)].per_group.params;
    return format_count(static_cast<double>(removed));
  }
  if (g < 0) return role == Qt::DisplayRole ? QVariant(tr("—")) : QVariant();
  const auto& group = deps.node_groups[static_cast<size_t>(g)];
  const auto removed = d_->resolved.count(static_cast<size_t>(g));
  const bool locked = d_->plan.unprunable.count(group.id) > 0;
  const bool fixed = d_->plan.node_group_ratios.count(group.id) > 0;
  switch (col) {
    case KvKept:
    case MlpKept:
      if (role == Qt::DisplayRole)
        return QString("%1 / %2").arg(group.size - removed).arg(group.size);
      if (role == Qt::TextAlignmentRole) return int(Qt::AlignRight | Qt::AlignVCenter);
      return {};
    case AttentionRatio:
    case MlpRatio:
      if (role == Qt::DisplayRole)
        return percent(static_cast<double>(removed) / static_cast<double>(group.size)) +
               (locked  ? tr(" (locked)")
                : fixed ? QString()
                        : tr(" (target)"));
      if (role == Qt::EditRole)  // edited as a percentage
        return QString::number(
            100.0 * static_cast<double>(removed) / static_cast<double>(group.size), 'g', 4);
      if (role == Qt::ToolTipRole)
        return tr("%1: fraction of its %2 removed; type a percentage, or clear the cell to follow "
                  "the target")
            .arg(QString::fromStdString(group.id))
            .arg(group.kind == "attention" ? tr("kv groups") : tr("channels"));
      if (role == Qt::TextAlignmentRole) return int(Qt::AlignRight | Qt::AlignVCenter);
      if (role == Qt::ForegroundRole && !fixed && !locked) return QColor(120, 120, 120);
      return {};
    case AttentionLock:
    case MlpLock:
      if (role == Qt::CheckStateRole) return locked ? Qt::Checked : Qt::Unchecked;
      if (role == Qt::ToolTipRole) return tr("keep %1 whole").arg(QString::fromStdString(group.id));
      return {};
  }
  return {};
}

bool PlanModel::setData(const QModelIndex& index, const QVariant& value, int role) {
  if (!index.isValid() || !d_->doc) return false;
  const auto layer = static_cast<size_t>(index.row());
  const int col = index.column();
  const bool attention = col == AttentionRatio || col == AttentionLock;
  const auto g = (attention ? d_->attention : d_->mlp)[layer];
  if (g < 0) return false;
  const auto id = QString::fromStdString(d_->doc->deps.node_groups[static_cast<size_t>(g)].id);
  if ((col == AttentionLock || col == MlpLock) && role == Qt::CheckStateRole)
    return setLocked(id, value.toInt() == Qt::Checked);
  if ((col == AttentionRatio || col == MlpRatio) && role == Qt::EditRole) {
    // A double is a fraction; typed text a percentage ("25" or "25 %"); empty text follows the
    // target again.
    if (value.typeId() == QMetaType::Double) return setNodeGroupRatio(id, value.toDouble());
    QString text = value.toString().trimmed();
    if (text.isEmpty()) return setNodeGroupRatio(id, -1);
    text.remove('%');
    bool ok = false;
    const double v = text.trimmed().toDouble(&ok);
    if (!ok || v < 0 || v > 100) {
      last_error_ = tr("“%1” is not a percentage between 0 and 100").arg(value.toString());
      emit editRefused(last_error_);
      return false;
    }
    return setNodeGroupRatio(id, v / 100.0);
  }
  return false;
}

Qt::ItemFlags PlanModel::flags(const QModelIndex& index) const {
  auto f = QAbstractTableModel::flags(index);
  if (!index.isValid() || !d_->doc) return f;
  const int col = index.column();
  const bool attention = col == AttentionRatio || col == AttentionLock;
  const auto g = (attention ? d_->attention : d_->mlp)[static_cast<size_t>(index.row())];
  if (g < 0) return f;
  if (col == AttentionRatio || col == MlpRatio) f |= Qt::ItemIsEditable;
  if (col == AttentionLock || col == MlpLock) f |= Qt::ItemIsUserCheckable;
  return f;
}

QVariant PlanModel::headerData(int section, Qt::Orientation orientation, int role) const {
  if (orientation != Qt::Horizontal || role != Qt::DisplayRole) return {};
  switch (section) {
    case Layer:
      return tr("Layer");
    case KvKept:
      return tr("kv groups kept");
    case AttentionRatio:
      return tr("attention removed");
    case AttentionLock:
      return tr("lock");
    case MlpKept:
      return tr("MLP channels kept");
    case MlpRatio:
      return tr("MLP removed");
    case MlpLock:
      return tr("lock");
    case ParamsRemoved:
      return tr("parameters removed");
    case Knowledge:
      return tr("knowledge (attention / MLP)");
  }
  return {};
}

// ---- PlanEditor

PlanEditor::PlanEditor(QWidget* parent) : QWidget(parent) {
  model_ = new PlanModel(this);
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(2, 2, 2, 2);
  auto* top = new QHBoxLayout;
  top->addWidget(new QLabel(tr("Remove")));
  target_ = new QDoubleSpinBox;
  target_->setRange(0.1, 99.0);
  target_->setDecimals(1);
  target_->setSuffix(" %");
  target_->setValue(20.0);
  target_->setToolTip(tr("Fraction of the model's parameters to remove"));
  top->addWidget(target_);
  target_slider_ = new QSlider(Qt::Horizontal);
  target_slider_->setRange(1, 990);  // tenths of a percent, as the spin box
  target_slider_->setValue(200);
  target_slider_->setMinimumWidth(160);
  target_slider_->setToolTip(target_->toolTip());
  top->addWidget(target_slider_);
  top->addWidget(new QLabel(tr("of the parameters; round MLP widths to")));
  rounding_ = new QComboBox;
  for (int m : {1, 8, 64})
    rounding_->addItem(m == 1 ? tr("any width") : tr("multiples of %1").arg(m), m);
  top->addWidget(rounding_);
  uniform_ = new QCheckBox(tr("Same size in every layer"));
  uniform_->setToolTip(
      tr("Keep the same number of kv groups and the same MLP width in every layer (each layer "
         "still chooses which ones go), so transformers and vLLM load the result as a plain "
         "LLaMA. A locked node group then keeps every layer of its kind whole."));
  top->addWidget(uniform_);
  top->addStretch();
  layout->addLayout(top);
  auto* presets = new QHBoxLayout;
  auto* uniform = new QPushButton(tr("Uniform"));
  auto* ends = new QPushButton(tr("Protect first and last layers"));
  auto* analysis = new QPushButton(tr("From the analysis"));
  auto* run_analysis = new QPushButton(tr("Run the analysis…"));
  from_analysis_ = analysis;
  analysis->setEnabled(false);
  auto* load = new QPushButton(tr("Load…"));
  auto* save = new QPushButton(tr("Save…"));
  for (auto* b : {uniform, ends, analysis, run_analysis})
    presets->addWidget(b);
  presets->addStretch();
  presets->addWidget(load);
  presets->addWidget(save);
  layout->addLayout(presets);
  table_ = new QTableView;
  table_->setModel(model_);
  table_->setItemDelegateForColumn(PlanModel::Knowledge, new ImportanceDelegate(table_));
  table_->setItemDelegateForColumn(PlanModel::AttentionRatio, new RatioDelegate(table_));
  table_->setItemDelegateForColumn(PlanModel::MlpRatio, new RatioDelegate(table_));
  table_->verticalHeader()->hide();
  table_->verticalHeader()->setDefaultSectionSize(22);
  table_->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
  layout->addWidget(table_, 1);
  estimate_ = new QLabel;
  estimate_->setWordWrap(true);
  layout->addWidget(estimate_);
  targets_ = new QLabel;
  targets_->setWordWrap(true);
  layout->addWidget(targets_);
  message_ = new QLabel;
  message_->setWordWrap(true);
  message_->setStyleSheet("color: #c03030");
  layout->addWidget(message_);

  connect(target_, &QDoubleSpinBox::valueChanged, this, [this](double v) {
    {
      const QSignalBlocker block(target_slider_);
      target_slider_->setValue(static_cast<int>(std::lround(v * 10.0)));
    }
    if (std::abs(model_->targetRatio() - v / 100.0) > 1e-9) model_->setTargetRatio(v / 100.0);
  });
  connect(target_slider_, &QSlider::valueChanged, this,
          [this](int v) { target_->setValue(v / 10.0); });
  connect(rounding_, &QComboBox::currentIndexChanged, this,
          [this] { model_->roundMlpWidths(rounding_->currentData().toInt()); });
  connect(uniform, &QPushButton::clicked, model_, &PlanModel::presetUniform);
  connect(uniform_, &QCheckBox::toggled, this, [this](bool on) {
    if (on != model_->uniform() && !model_->setUniform(on)) {
      const QSignalBlocker block(uniform_);
      uniform_->setChecked(model_->uniform());
    }
  });
  connect(ends, &QPushButton::clicked, model_, &PlanModel::presetProtectEnds);
  connect(analysis, &QPushButton::clicked, this,
          [this] { model_->presetFromImportance(importance_); });
  connect(run_analysis, &QPushButton::clicked, this, &PlanEditor::analysisRequested);
  connect(save, &QPushButton::clicked, this, [this] {
    const auto path =
        QFileDialog::getSaveFileName(this, tr("Save the plan"), "plan.json", tr("Plans (*.json)"));
    if (!path.isEmpty() && !model_->save(path)) message_->setText(model_->lastError());
  });
  connect(load, &QPushButton::clicked, this, [this] {
    const auto path =
        QFileDialog::getOpenFileName(this, tr("Load a plan"), {}, tr("Plans (*.json)"));
    if (!path.isEmpty()) model_->load(path);
  });
  connect(model_, &PlanModel::planChanged, this, &PlanEditor::refresh);
  connect(model_, &PlanModel::editRefused, this,
          [this](const QString& reason) { message_->setText(tr("Not applied: %1").arg(reason)); });
  refresh();
}

void PlanEditor::setImportance(const std::map<std::string, double>& importance) {
  importance_ = importance;
  model_->setImportance(importance);
  from_analysis_->setEnabled(!importance_.empty());
}

QString PlanEditor::estimateText() {
  if (stale_) render();
  return estimate_->text();
}

QString PlanEditor::loadsInText() {
  if (stale_) render();
  return targets_->text();
}

QString PlanEditor::messageText() const {
  return message_->text();
}

void PlanEditor::showEvent(QShowEvent* event) {
  QWidget::showEvent(event);
  if (stale_) render();
}

void PlanEditor::refresh() {
  stale_ = true;
  if (isVisible()) render();  // a hidden tab computes its estimates when shown
}

void PlanEditor::render() {
  stale_ = false;
  message_->clear();
  {
    const QSignalBlocker block(target_);
    const QSignalBlocker block_slider(target_slider_);
    target_->setValue(100.0 * model_->targetRatio());
    target_slider_->setValue(static_cast<int>(std::lround(1000.0 * model_->targetRatio())));
    const QSignalBlocker block_uniform(uniform_);
    uniform_->setChecked(model_->uniform());
  }
  const auto e = model_->estimate();
  if (!e.valid) {
    estimate_->setText(e.error.isEmpty() ? tr("Open a model to plan its pruning.") : QString());
    targets_->clear();
    if (!e.error.isEmpty()) message_->setText(e.error);
    return;
  }
  QString where = tr("The result loads in: %1").arg(e.loads_in.join(tr("; ")));
  if (model_->uniform()) {
    where += tr("<br>Same size in every layer: %1").arg(e.uniform_notes.join(tr("; ")));
    // What the constraint costs: the target met only in steps of one group in every layer.
    if (std::abs(e.achieved_ratio - model_->targetRatio()) > 0.005)
      where += tr(" — removes %1 instead of the target %2 (one step removes a group in every "
                  "layer)")
                   .arg(percent(e.achieved_ratio), percent(model_->targetRatio()));
  }
  targets_->setText(where);
  estimate_->setText(
      tr("Parameters %1 → %2 (%3 removed) · FLOPs per token %4 → %5 · weights in 16 bits %6 → %7 "
         "· expected speed-up ×%8 · %9 of %10 variable groups removed")
          .arg(format_count(static_cast<double>(e.params_before)),
               format_count(static_cast<double>(e.params_after)), percent(e.achieved_ratio),
               format_count(e.flops_before), format_count(e.flops_after))
          .arg(format_count(2.0 * static_cast<double>(e.params_before)) + "B")
          .arg(format_count(2.0 * static_cast<double>(e.params_after)) + "B")
          .arg(e.speedup, 0, 'f', 2)
          .arg(e.removed_groups)
          .arg(e.total_groups));
}

}  // namespace lorashear
