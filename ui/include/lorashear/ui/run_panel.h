#pragma once
// The run panel (issue 7): LHSPG settings (training text, output folder, steps, periods, learning
// rate, epsilon, lambda, LoRA rank and targets) and knowledge recovery (domains, instruction data,
// budget, sampling); Start, Pause / Resume, Cancel. Its dashboard, a separate widget the window
// places where there is room: training loss (raw and EMA, the recovery's after the pruning's),
// groups zeroed against scheduled, per-layer sparsity, validation loss per category and the
// category sampling weights during recovery, learning rate and tokens/s, in as many columns as its
// width allows; x-axis by step or wall time. The plan comes from the plan editor; the engine runs
// it on its worker thread. Under the settings, the memory the run needs per process (the
// accounting of `lorashear plan-memory`), updated as the settings change, with a warning when it
// exceeds the device's available memory.

#include <QList>
#include <QPointF>
#include <QPointer>
#include <QString>
#include <QWidget>

#include <map>
#include <string>

#include "lorashear/ui/run_memory.h"

class QCheckBox;
class QComboBox;
class QDoubleSpinBox;
class QGroupBox;
class QLabel;
class QLineEdit;
class QListWidget;
class QPushButton;
class QSpinBox;

namespace lorashear {

class Engine;
class MetricChart;
class SparsityBars;
class PlanModel;
struct MetricPoint;
struct RunSettings;

/// A series' new points (x: step) with their wall seconds, for the dashboard's charts.
struct MetricBatch {
  QList<QPointF> points;
  QList<double> seconds;
};
/// Series name ("loss", "recovery", "zeroed", "validation:CATEGORY", …) → its new points.
using MetricBatches = std::map<QString, MetricBatch>;

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
  ~RunPanel() override;
  RunSettings settings() const;
  void setSettings(const RunSettings& settings);
  void setTextPath(const QString& path);
  void setOutputDir(const QString& path);
  void setSteps(int steps);
  /// Starts the run with the current settings and plan (continuing from OUT.checkpoint when
  /// `resume`); false with a message when it cannot.
  bool start(bool resume = false);
  /// The charts, the sparsity bars, the x-axis choice and the run's latest figures, for the window
  /// to show apart from the settings (its Dashboard tab). The panel deletes it when it goes.
  QWidget* dashboard() const { return dashboard_; }
  MetricChart* lossChart() const { return loss_; }
  MetricChart* groupsChart() const { return groups_; }
  MetricChart* categoryChart() const { return categories_; }
  MetricChart* weightsChart() const { return weights_; }
  MetricChart* lrChart() const { return lr_chart_; }
  MetricChart* speedChart() const { return speed_; }
  /// Every chart's x-axis: steps, or seconds since the run started.
  void setWallTime(bool wall);
  SparsityBars* sparsityBars() const { return bars_; }
  /// The latest sparsity per node group (for the graph overlay).
  const std::map<std::string, double>& sparsity() const { return sparsity_; }
  QString messageText() const;
  /// The memory plan of the open model with the current settings (recomputed when either
  /// changes), the line that shows it (plain text) and whether it warns that the run will not fit.
  const RunMemory& memoryPlan() const { return memory_plan_; }
  QString memoryText() const;
  bool memoryWarning() const;
  /// Computes the memory plan again (also the available memory, which the panel otherwise reads
  /// when the settings or the model change, or it is shown).
  void updateMemory();

  /// A run followed from its OUT.run folder (File ▸ Open run…) on the same charts: begin clears
  /// them and shows `title` above them; a local run's start ends the following.
  void beginFollowing(const QString& title);
  void endFollowing();
  bool following() const { return following_; }
  /// Appends a followed run's points; `sparsity` holds the node groups whose sparsity changed.
  void showMetrics(const MetricBatches& batches, const std::map<std::string, double>& sparsity);
  /// The followed run's state (running / finished / failed / stale, lines read, problems).
  void setFollowStatus(const QString& text, const QString& tooltip = {});
  QString followStatusText() const;

 signals:
  void sparsityChanged();
  /// A run started (the window records it, to offer to resume it after a restart).
  void runStarted();
  /// The run will not be resumed: it finished, failed, or the user cancelled it.
  void runEnded();

 protected:
  void showEvent(QShowEvent* event) override;

 private:
  void metrics(const QVector<MetricPoint>& points);
  void apply(const MetricBatches& batches, bool sparsity_changed);
  void clearCharts();
  void updateButtons();
  /// The run's state in the panel and on the dashboard.
  void setMessage(const QString& text);
  QWidget* pruningTab();
  QWidget* recoveryTab();
  QWidget* buildDashboard();
  std::vector<MetricChart*> charts() const;
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
  QComboBox* activations_ = nullptr;  // activation checkpointing: auto, on, off
  QDoubleSpinBox* lr_ = nullptr;
  QDoubleSpinBox* epsilon_ = nullptr;
  QDoubleSpinBox* lambda_ = nullptr;
  std::vector<QCheckBox*> targets_;
  QGroupBox* recover_ = nullptr;
  QListWidget* domains_ = nullptr;
  QLineEdit* instruct_ = nullptr;
  QSpinBox* recover_steps_ = nullptr;
  QComboBox* sampling_ = nullptr;
  QComboBox* axis_ = nullptr;
  QPushButton* start_ = nullptr;
  QPushButton* pause_ = nullptr;
  QPushButton* cancel_ = nullptr;
  QLabel* status_ = nullptr;
  QLabel* memory_icon_ = nullptr;
  QLabel* memory_ = nullptr;
  RunMemory memory_plan_;
  QPointer<QWidget> dashboard_;  // usually owned by a tab of the window; see ~RunPanel
  QLabel* dashboard_status_ = nullptr;
  MetricChart* loss_ = nullptr;
  MetricChart* groups_ = nullptr;
  MetricChart* categories_ = nullptr;
  MetricChart* weights_ = nullptr;
  MetricChart* lr_chart_ = nullptr;
  MetricChart* speed_ = nullptr;
  SparsityBars* bars_ = nullptr;
  std::map<std::string, double> sparsity_;
  bool running_ = false;
  bool following_ = false;
  QLabel* follow_status_ = nullptr;
};

}  // namespace lorashear
