// LibTorch (through export.h) before the Qt headers: ATen has members called `slots`.
#include "lorashear/graph/export.h"
// clang-format off
#include "lorashear/viewers/sparsity_bars.h"
// clang-format on

#include <QBarCategoryAxis>
#include <QBarSeries>
#include <QBarSet>
#include <QChart>
#include <QValueAxis>

#include <algorithm>

namespace lorashear {

SparsityBars::SparsityBars(QWidget* parent) : QChartView(parent) {
  auto* chart = new QChart;
  chart->setTitle(tr("Sparsity per layer"));
  chart->legend()->setAlignment(Qt::AlignBottom);
  chart->setMargins(QMargins(4, 4, 4, 4));
  attention_ = new QBarSet(tr("attention kv groups"));
  attention_->setColor(QColor(node_group_colour("attention")).darker(115));
  mlp_ = new QBarSet(tr("MLP channels"));
  mlp_->setColor(QColor(node_group_colour("mlp")).darker(115));
  auto* series = new QBarSeries;
  series->append(attention_);
  series->append(mlp_);
  chart->addSeries(series);
  x_ = new QBarCategoryAxis;
  x_->setTitleText(tr("layer"));
  auto* y = new QValueAxis;
  y->setTitleText(tr("fraction"));
  y->setRange(0, 1);
  y->setLabelFormat("%.1f");
  chart->addAxis(x_, Qt::AlignBottom);
  chart->addAxis(y, Qt::AlignLeft);
  series->attachAxis(x_);
  series->attachAxis(y);
  auto* made = this->chart();  // QChartView's own, which setChart does not delete
  setChart(chart);
  delete made;
  setMinimumHeight(180);
}

void SparsityBars::setValues(const std::vector<double>& attention, const std::vector<double>& mlp) {
  const auto n = static_cast<int>(std::max(attention.size(), mlp.size()));
  if (x_->count() != n) {
    QStringList names;
    for (int i = 0; i < n; ++i)
      names << QString::number(i);
    x_->clear();
    x_->append(names);
  }
  auto fill = [n](QBarSet* set, const std::vector<double>& v) {
    QList<qreal> values;
    for (int i = 0; i < n; ++i)
      values << (static_cast<size_t>(i) < v.size() ? std::max(0.0, v[static_cast<size_t>(i)])
                                                   : 0.0);
    if (set->count() == n) {
      for (int i = 0; i < n; ++i)
        set->replace(i, values[i]);
    } else {
      set->remove(0, set->count());
      set->append(values);
    }
  };
  fill(attention_, attention);
  fill(mlp_, mlp);
}

double SparsityBars::attention(int layer) const {
  return layer < attention_->count() ? attention_->at(layer) : 0.0;
}

double SparsityBars::mlp(int layer) const {
  return layer < mlp_->count() ? mlp_->at(layer) : 0.0;
}

int SparsityBars::layers() const {
  return x_->count();
}

}  // namespace lorashear
