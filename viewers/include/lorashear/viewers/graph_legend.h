#pragma once
// The graph's legend: node group kinds with their colours, or, while an overlay is shown, its
// colour scale with the title and the ends' values.

#include <QColor>
#include <QString>
#include <QWidget>

#include <utility>
#include <vector>

namespace lorashear {

class GraphLegend : public QWidget {
  Q_OBJECT
 public:
  explicit GraphLegend(QWidget* parent = nullptr);
  void setKinds(const std::vector<std::pair<QString, QColor>>& kinds);
  void setScale(const QString& title, double low, double high);
  /// Kind names or "title: low … high", for tests.
  QString text() const;
  QSize sizeHint() const override;

 protected:
  void paintEvent(QPaintEvent* event) override;

 private:
  std::vector<std::pair<QString, QColor>> kinds_;
  bool scale_ = false;
  QString title_;
  double low_ = 0, high_ = 1;
};

}  // namespace lorashear
