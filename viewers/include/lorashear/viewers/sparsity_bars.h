#pragma once
// Per-layer sparsity as bars (Qt Charts): for each decoder layer, the fraction of its attention kv
// groups and of its MLP channels at zero, updated live during a run.

#include <QChartView>

#include <vector>

class QBarSet;
class QBarCategoryAxis;

namespace lorashear {

class SparsityBars : public QChartView {
  Q_OBJECT
 public:
  explicit SparsityBars(QWidget* parent = nullptr);
  /// One value per layer in [0, 1] (negative: the layer has no such node group).
  void setValues(const std::vector<double>& attention, const std::vector<double>& mlp);
  double attention(int layer) const;
  double mlp(int layer) const;
  int layers() const;

 private:
  QBarSet* attention_ = nullptr;
  QBarSet* mlp_ = nullptr;
  QBarCategoryAxis* x_ = nullptr;
};

}  // namespace lorashear
