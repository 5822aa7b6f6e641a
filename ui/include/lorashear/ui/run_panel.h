#pragma once
// The run panel (issue 7): LHSPG settings, training text and output folder; Start, Pause / Resume,
// Cancel; live charts of the training loss (raw and EMA) and of the groups zeroed against those
// scheduled, with the learning rate and tokens/s. The plan comes from the plan editor; the engine
// runs it on its worker thread.

#include <QWidget>

#include <map>
#include <string>

class QComboBox;
class QDoubleSpinBox;
class QLabel;
class QLineEdit;
class QPushButton;
class QSpinBox;

namespace lorashear {

class Engine;
class MetricChart;
class SparsityBars;
class PlanModel;
struct MetricPoint;
struct RunSettings;

/// A run as JSON (settings, plan, model) and back, for resuming it after a restart.
QString run_record(const RunSettings& settings, const QString& plan_json, const QString& model,
                   const QString& device, const QString& dtype);
/// False when `record` is not one.
bool parse_run_record(const QString& record, RunSettings* settings, QString* plan_json,
                      QString* model, QString* device, QString* dtype);

class RunPanel : public QWidget {
  Q_OBJECT
 public:
  RunPanel(Engine* engine, PlanModel* plan, QWidget* parent = nullptr);
  RunSettings settings() const;
  void setSettings(const RunSettings& settings);
  void setTextPath(const QString& path);
  void setOutputDir(const QString& path);
  void setSteps(int steps);
  /// Starts the run with the current settings and plan (continuing from OUT.checkpoint when
  /// `resume`); false with a message when it cannot.
  bool start(bool resume = false);
  MetricChart* lossChart() const { return loss_; }
  MetricChart* groupsChart() const { return groups_; }
  SparsityBars* sparsityBars() const { return bars_; }
  /// The latest sparsity per node group (for the graph overlay).
  const std::map<std::string, double>& sparsity() const { return sparsity_; }
  QString messageText() const;

 signals:
  void sparsityChanged();
  /// A run started (the window records it, to offer to resume it after a restart).
  void runStarted();
  /// The run will not be resumed: it finished, failed, or the user cancelled it.
  void runEnded();

 private:
  void metrics(const QVector<MetricPoint>& points);
  void updateButtons();
  Engine* engine_;
  PlanModel* plan_;
  QLineEdit* text_ = nullptr;
  QLineEdit* out_ = nullptr;
  QComboBox* method_ = nullptr;
  QSpinBox* steps_ = nullptr;
  QSpinBox* periods_ = nullptr;
  QSpinBox* rank_ = nullptr;
  QSpinBox* batch_ = nullptr;
  QSpinBox* checkpoint_ = nullptr;
  QDoubleSpinBox* lr_ = nullptr;
  QDoubleSpinBox* epsilon_ = nullptr;
  QDoubleSpinBox* lambda_ = nullptr;
  QPushButton* start_ = nullptr;
  QPushButton* pause_ = nullptr;
  QPushButton* cancel_ = nullptr;
  QLabel* status_ = nullptr;
  MetricChart* loss_ = nullptr;
  MetricChart* groups_ = nullptr;
  SparsityBars* bars_ = nullptr;
  std::map<std::string, double> sparsity_;
  bool running_ = false;
};

}  // namespace lorashear
