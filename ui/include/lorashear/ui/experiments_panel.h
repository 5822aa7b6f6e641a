#pragma once
// The Experiments tab: a sweep of every chosen method at every ratio with the Run dock's settings
// (what `lorashear sweep` runs), its table filling in as runs finish (rows method × ratio, columns
// tasks + mean + ppl + speed-ups) and a chart of a chosen metric against the fraction removed, one
// line per method. Hovering a point names the run; double-clicking a row or a point opens that
// pruned model. The chart exports as PNG / SVG, the table as CSV / Markdown.

#include <QJsonObject>
#include <QWidget>

class QCheckBox;
class QChartView;
class QComboBox;
class QLabel;
class QLineEdit;
class QPushButton;
class QSpinBox;
class QSplitter;
class QTableWidget;

namespace lorashear {

class Engine;
class PlanModel;
class RunPanel;

class ExperimentsPanel : public QWidget {
  Q_OBJECT
 public:
  ExperimentsPanel(Engine* engine, RunPanel* run, PlanModel* plan, QWidget* parent = nullptr);
  void setRatios(const QString& ratios);
  void setMethods(const QStringList& methods);
  void setOutputDir(const QString& dir);
  void setTaskData(const QString& data, const QString& tasks, int limit);
  void setBench(bool on);
  /// Starts the sweep; false with a message when it cannot.
  bool start();
  /// Shows a results document (the engine's, or OUT/results.json read from disk).
  void showResults(const QJsonObject& results);
  /// "Mean accuracy", "Perplexity", a task name, "Prefill speed-up", "Decode speed-up".
  void setMetric(const QString& metric);
  QStringList metrics() const;
  QTableWidget* table() const { return table_; }
  QChartView* chartView() const { return chart_; }
  /// The run id of each chart point, per method line: for tests and hover.
  QString runAt(const QString& method, int point) const;
  bool exportChart(const QString& path, QString* error = nullptr);  ///< .png or .svg
  bool exportTable(const QString& path, QString* error = nullptr);  ///< .csv or .md
  QString messageText() const;

 signals:
  /// A run's pruned model should be opened.
  void openModelRequested(const QString& path);

 protected:
  bool eventFilter(QObject* watched, QEvent* event) override;
  void resizeEvent(QResizeEvent* event) override;

 private:
  void render();
  void arrange();
  void setMessage(const QString& text);
  Engine* engine_;
  RunPanel* run_;
  PlanModel* plan_;
  QLineEdit* ratios_ = nullptr;
  QList<QCheckBox*> methods_;
  QLineEdit* out_ = nullptr;
  QLineEdit* task_data_ = nullptr;
  QLineEdit* tasks_ = nullptr;
  QSpinBox* limit_ = nullptr;
  QCheckBox* bench_ = nullptr;
  QPushButton* start_ = nullptr;
  QComboBox* metric_ = nullptr;
  QTableWidget* table_ = nullptr;
  QChartView* chart_ = nullptr;
  QSplitter* split_ = nullptr;
  QLabel* message_ = nullptr;
  QJsonObject results_;
  QMap<QString, QStringList> point_runs_;  // method → run id per point (dense first)
  QString hovered_run_;
};

}  // namespace lorashear
