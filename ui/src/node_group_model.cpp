#include "lorashear/ui/node_group_model.h"

#include <QBrush>
#include <QColor>

#include "document.h"
#include "lorashear/graph/export.h"

namespace lorashear {

// internalId: 0 for a node group row, node group index + 1 for a variable group row (its parent).

QString format_count(double n) {
  const double a = std::abs(n);
  if (a >= 1e9) return QString::number(n / 1e9, 'f', 2) + " B";
  if (a >= 1e6) return QString::number(n / 1e6, 'f', 2) + " M";
  if (a >= 1e4) return QString::number(n / 1e3, 'f', 1) + " K";
  return QString::number(n, 'g', 6);
}

NodeGroupModel::NodeGroupModel(QObject* parent) : QAbstractItemModel(parent) {}
NodeGroupModel::~NodeGroupModel() = default;

void NodeGroupModel::setDocument(std::shared_ptr<const ModelDocument> doc) {
  beginResetModel();
  doc_ = std::move(doc);
  rebuild();
  endResetModel();
}

void NodeGroupModel::setFilter(const QString& text) {
  beginResetModel();
  filter_ = text.trimmed();
  rebuild();
  endResetModel();
}

void NodeGroupModel::rebuild() {
  rows_.clear();
  row_of_.clear();
  if (!doc_) return;
  row_of_.assign(doc_->deps.node_groups.size(), -1);
  for (size_t g = 0; g < doc_->deps.node_groups.size(); ++g)
    if (filter_.isEmpty() || QString::fromStdString(doc_->deps.node_groups[g].id)
                                 .contains(filter_, Qt::CaseInsensitive)) {
      row_of_[g] = static_cast<int>(rows_.size());
      rows_.push_back(static_cast<int>(g));
    }
}

QModelIndex NodeGroupModel::groupIndex(int group) const {
  if (group < 0 || group >= static_cast<int>(row_of_.size()) ||
      row_of_[static_cast<size_t>(group)] < 0)
    return {};
  return createIndex(row_of_[static_cast<size_t>(group)], 0, quintptr(0));
}

QModelIndex NodeGroupModel::index(int row, int column, const QModelIndex& parent) const {
  if (!hasIndex(row, column, parent)) return {};
  if (!parent.isValid()) return createIndex(row, column, quintptr(0));
  if (parent.internalId() != 0) return {};
  return createIndex(row, column, quintptr(rows_[static_cast<size_t>(parent.row())] + 1));
}

QModelIndex NodeGroupModel::parent(const QModelIndex& child) const {
  if (!child.isValid() || child.internalId() == 0) return {};
  return groupIndex(static_cast<int>(child.internalId() - 1));
}

int NodeGroupModel::rowCount(const QModelIndex& parent) const {
  if (!doc_) return 0;
  if (!parent.isValid()) return static_cast<int>(rows_.size());
  if (parent.internalId() != 0 || parent.column() != 0) return 0;
  const auto& g =
      doc_->deps.node_groups[static_cast<size_t>(rows_[static_cast<size_t>(parent.row())])];
  return static_cast<int>(g.size);
}

int NodeGroupModel::columnCount(const QModelIndex&) const {
  return ColumnCount;
}

QVariant NodeGroupModel::data(const QModelIndex& index, int role) const {
  if (!doc_ || !index.isValid()) return {};
  const bool child = index.internalId() != 0;
  const int group =
      child ? static_cast<int>(index.internalId() - 1) : rows_[static_cast<size_t>(index.row())];
  const auto& g = doc_->deps.node_groups[static_cast<size_t>(group)];
  if (role == GroupRole) return group;
  if (role == VariableRole) return child ? QVariant(index.row()) : QVariant();
  if (child) {
    const int64_t k = index.row();
    if (role == Qt::DisplayRole) {
      switch (index.column()) {
        case Name:
          return QString::fromStdString(g.variable_group_id(k));
        case Kind:
          return g.kind == "attention" ? tr("kv group") : tr("channel");
        case Layer:
          return g.layer >= 0 ? QVariant(qint64(g.layer)) : QVariant();
        case Groups:
          return 1;
        case Parameters:
          return format_count(static_cast<double>(g.per_group.params));
        case Prunable:
          return g.prunable ? tr("yes") : tr("no");
      }
    }
    if (role == Qt::ToolTipRole)
      return QString("%1: %2 parameters, %3 FLOPs per token")
          .arg(QString::fromStdString(g.variable_group_id(k)))
          .arg(g.per_group.params)
          .arg(format_count(g.per_group.flops));
    return {};
  }
  switch (role) {
    case Qt::DisplayRole:
      switch (index.column()) {
        case Name:
          return QString::fromStdString(g.id);
        case Kind:
          return QString::fromStdString(g.kind);
        case Layer:
          return g.layer >= 0 ? QVariant(qint64(g.layer)) : QVariant();
        case Groups:
          return qint64(g.size);
        case Parameters:
          return format_count(static_cast<double>(g.total().params));
        case Prunable:
          return g.prunable ? tr("yes") : tr("no: %1").arg(QString::fromStdString(g.reason));
      }
      return {};
    case Qt::DecorationRole:
      if (index.column() == Name) return QColor(node_group_colour(g.kind));
      return {};
    case Qt::ForegroundRole:
      if (!g.prunable && index.column() == Prunable) return QBrush(QColor(150, 150, 150));
      return {};
    case Qt::ToolTipRole:
      return QString("%1 (%2): %3 variable groups of %4 parameters each; %5")
          .arg(QString::fromStdString(g.id), QString::fromStdString(g.kind))
          .arg(g.size)
          .arg(g.per_group.params)
          .arg(g.prunable ? tr("prunable")
                          : tr("not prunable: ") + QString::fromStdString(g.reason));
    case Qt::TextAlignmentRole:
      if (index.column() == Groups || index.column() == Parameters || index.column() == Layer)
        return int(Qt::AlignRight | Qt::AlignVCenter);
      return {};
  }
  return {};
}

QVariant NodeGroupModel::headerData(int section, Qt::Orientation orientation, int role) const {
  if (orientation != Qt::Horizontal || role != Qt::DisplayRole) return {};
  switch (section) {
    case Name:
      return tr("Node group");
    case Kind:
      return tr("Kind");
    case Layer:
      return tr("Layer");
    case Groups:
      return tr("Variable groups");
    case Parameters:
      return tr("Parameters");
    case Prunable:
      return tr("Prunable");
  }
  return {};
}

}  // namespace lorashear
