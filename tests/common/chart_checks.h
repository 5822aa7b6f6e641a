#pragma once
// What a reader would see wrong in a Qt Charts view: text elided to "…" or cut by the edge, an
// axis without a title or with its title not drawn, a legend entry not drawn, a plot too small.

#include <QChart>
#include <QChartView>
#include <QGraphicsItem>
#include <QGraphicsSimpleTextItem>
#include <QGraphicsTextItem>
#include <QLegend>
#include <QLegendMarker>
#include <QString>
#include <QStringList>

namespace lorashear::test {

inline QString text_of(QGraphicsItem* item) {
  if (auto* t = qgraphicsitem_cast<QGraphicsTextItem*>(item)) return t->toPlainText();
  if (auto* s = qgraphicsitem_cast<QGraphicsSimpleTextItem*>(item)) return s->text();
  return {};
}

// What is wrong with how `view` shows its chart ("" when nothing): elided or clipped text, an axis
// without a title or whose title is not drawn, a legend entry not drawn in full, a plot too small
// to read.
inline QString chart_problems(QChartView* view) {
  QStringList problems;
  auto* chart = view->chart();
  const QString name = chart->title().isEmpty() ? view->objectName() : chart->title();
  if (!view->isVisible()) return name + ": not on screen";
  const QRectF area = QRectF(view->viewport()->rect()).adjusted(-1, -1, 1, 1);
  QStringList shown;  // the texts drawn in full
  for (auto* item : view->scene()->items()) {
    const auto text = text_of(item);
    if (text.isEmpty() || !item->isVisible()) continue;
    if (text.contains(QChar(0x2026)) || text.contains("..."))
      problems << QString("'%1' is elided").arg(text);
    else if (!area.contains(view->mapFromScene(item->sceneBoundingRect()).boundingRect()))
      problems << QString("'%1' is cut by the chart's edge").arg(text);
    else
      shown << text;
  }
  for (auto* axis : chart->axes()) {
    if (axis->titleText().isEmpty())
      problems << QString("an axis (%1) has no title")
                      .arg(axis->orientation() == Qt::Horizontal ? "x" : "y");
    else if (!shown.contains(axis->titleText()))
      problems << QString("the axis title '%1' is not drawn in full").arg(axis->titleText());
  }
  if (!chart->series().isEmpty() && !chart->legend()->isVisible())
    problems << "the legend is hidden";
  for (auto* marker : chart->legend()->markers())
    if (marker->isVisible() && !shown.contains(marker->label()))
      problems << QString("the legend entry '%1' is not drawn in full").arg(marker->label());
  const auto plot = chart->plotArea();
  if (plot.width() < 120 || plot.height() < 70)
    problems << QString("the plot is %1×%2 px").arg(plot.width()).arg(plot.height());
  return problems.isEmpty() ? QString() : name + ": " + problems.join("; ");
}

}  // namespace lorashear::test
