#pragma once
// The node-group tree: node groups (coupled operator sets, LORASHEAR.md §1) at the top level, their
// variable groups (minimally removable structures: a kv head with its query heads, one MLP channel)
// as children, with parameter counts, FLOPs and prunability. Children are created on demand, so a
// 70B model's 2.5 million variable groups cost nothing until a node group is opened. The filter is
// built in: a QSortFilterProxyModel maps every child of a node group when a view asks whether it
// has children (110 ms on the GUI thread for a 70B model).

#include <QAbstractItemModel>

#include <memory>
#include <vector>

namespace lorashear {

struct ModelDocument;

class NodeGroupModel : public QAbstractItemModel {
  Q_OBJECT
 public:
  enum Column { Name, Kind, Layer, Groups, Parameters, Prunable, ColumnCount };
  /// Qt::UserRole on any cell: the node group index; UserRole + 1 on a child: its current index.
  static constexpr int GroupRole = Qt::UserRole;
  static constexpr int VariableRole = Qt::UserRole + 1;

  explicit NodeGroupModel(QObject* parent = nullptr);
  ~NodeGroupModel() override;
  void setDocument(std::shared_ptr<const ModelDocument> doc);

  /// The index of node group `group` (column 0), or an invalid index when filtered out.
  QModelIndex groupIndex(int group) const;
  /// Shows only node groups whose id contains `text` (case-insensitive); "" shows all.
  void setFilter(const QString& text);

  QModelIndex index(int row, int column, const QModelIndex& parent = {}) const override;
  QModelIndex parent(const QModelIndex& child) const override;
  int rowCount(const QModelIndex& parent = {}) const override;
  int columnCount(const QModelIndex& parent = {}) const override;
  QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
  QVariant headerData(int section, Qt::Orientation orientation,
                      int role = Qt::DisplayRole) const override;

 private:
  void rebuild();
  std::shared_ptr<const ModelDocument> doc_;
  QString filter_;
  std::vector<int> rows_;    // shown node groups, in graph order
  std::vector<int> row_of_;  // node group → row, -1 when filtered out
};

/// Parameter counts as "1.23 M" / "6.74 B".
QString format_count(double n);

}  // namespace lorashear
