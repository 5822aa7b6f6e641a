#pragma once
// The plan editor (issue 7, first part): a per-layer table of attention kv groups and MLP channels
// kept / total with editable removal ratios and locks, a global target, presets (uniform, protect
// the first and last layers, from the knowledge analysis), rounding of MLP widths to a multiple,
// and live estimates from the engine's own accounting (resolve_plan + removal_cost): parameters,
// FLOPs per token, memory and the expected speed-up. Saves and loads the plan JSON the CLI reads.
// An edit the plan cannot meet is refused with the reason (never clamped).

#include <QAbstractTableModel>
#include <QString>
#include <QStringList>
#include <QWidget>

#include <map>
#include <memory>
#include <string>

class QCheckBox;
class QDoubleSpinBox;
class QComboBox;
class QLabel;
class QSlider;
class QTableView;

namespace lorashear {

struct ModelDocument;

/// What the current plan does to the model, by the accounting (exact, before anything runs).
struct PlanEstimate {
  bool valid = false;
  QString error;  ///< why the plan cannot be met (when !valid)
  qint64 params_before = 0, params_after = 0;
  double flops_before = 0, flops_after = 0;     ///< per token
  double achieved_ratio = 0;                    ///< parameters removed / parameters
  double speedup = 1;                           ///< FLOPs before / after
  qint64 removed_groups = 0, total_groups = 0;  ///< variable groups removed / prunable
  /// Where the pruned model will load ("llama.cpp ✓ (deci)", "transformers / vLLM: needs …").
  QStringList loads_in;
  /// Same size in every layer: each kind's kept count and what fixed it.
  QStringList uniform_notes;
};

class PlanModel : public QAbstractTableModel {
  Q_OBJECT
 public:
  enum Column {
    Layer,
    KvKept,
    AttentionRatio,
    AttentionLock,
    MlpKept,
    MlpRatio,
    MlpLock,
    ParamsRemoved,
    Knowledge,
    ColumnCount
  };
  /// On the Knowledge column: QVariantList {attention, mlp} normalised importance, -1 if unknown.
  static constexpr int ImportanceRole = Qt::UserRole + 10;
  explicit PlanModel(QObject* parent = nullptr);
  ~PlanModel() override;
  /// A new model: the plan starts at a uniform 20% target.
  void setDocument(std::shared_ptr<const ModelDocument> doc);

  double targetRatio() const;
  /// False with lastError() set when the plan cannot be met with it.
  bool setTargetRatio(double ratio);
  /// Removal ratio of one node group (`L3.mlp`); < 0 clears it (it shares the target again).
  bool setNodeGroupRatio(const QString& id, double ratio);
  bool setLocked(const QString& id, bool locked);
  /// Same size in every layer (kv groups, MLP width), so transformers / vLLM load the result.
  bool uniform() const;
  bool setUniform(bool uniform);
  /// Presets: every ratio from the target; first and last layers locked; the top `gamma` of node
  /// groups by knowledge importance locked (LORASHEAR.md §2).
  bool presetUniform();
  bool presetProtectEnds();
  bool presetFromImportance(const std::map<std::string, double>& importance, double gamma = 0.2);
  /// The knowledge analysis' normalised importance per node group, shown as bars.
  void setImportance(const std::map<std::string, double>& importance);
  /// Kept MLP widths rounded to a multiple of `multiple` (1 = off), as fixed ratios.
  bool roundMlpWidths(int multiple);

  PlanEstimate estimate() const;
  QString lastError() const { return last_error_; }
  /// The plan as the CLI's JSON; load replaces the plan (false with lastError() on bad input).
  bool save(const QString& path);
  bool load(const QString& path);
  QString planJson() const;
  /// Replaces the plan with one in the CLI's JSON (false with lastError() when it cannot be met).
  bool setPlanJson(const QString& json);

  int rowCount(const QModelIndex& parent = {}) const override;
  int columnCount(const QModelIndex& parent = {}) const override;
  QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
  bool setData(const QModelIndex& index, const QVariant& value, int role = Qt::EditRole) override;
  Qt::ItemFlags flags(const QModelIndex& index) const override;
  QVariant headerData(int section, Qt::Orientation orientation,
                      int role = Qt::DisplayRole) const override;

 signals:
  /// The plan or its estimate changed.
  void planChanged();
  /// An edit was refused: the reason, for the user.
  void editRefused(const QString& reason);

 private:
  struct Impl;
  /// Resolves the edited copy; makes it current on success, else refuses it with the reason.
  bool commit(std::unique_ptr<Impl> candidate);
  std::unique_ptr<Impl> d_;
  QString last_error_;
};

/// The dock around the table: target, presets, rounding, estimates, save / load.
class PlanEditor : public QWidget {
  Q_OBJECT
 public:
  explicit PlanEditor(QWidget* parent = nullptr);
  PlanModel* model() const { return model_; }
  QTableView* table() const { return table_; }
  QSlider* targetSlider() const { return target_slider_; }
  /// The estimates line, where the result loads, and the message line (for tests).
  QString estimateText();
  QString loadsInText();
  QCheckBox* uniformBox() const { return uniform_; }
  QString messageText() const;
  /// Knowledge importance for the "from the analysis" preset (empty: preset disabled).
  void setImportance(const std::map<std::string, double>& importance);

 signals:
  /// The user asked for the knowledge analysis (the window runs it in the engine).
  void analysisRequested();

 protected:
  void showEvent(QShowEvent* event) override;

 private:
  void refresh();
  void render();
  bool stale_ = true;
  PlanModel* model_ = nullptr;
  QTableView* table_ = nullptr;
  QDoubleSpinBox* target_ = nullptr;
  QSlider* target_slider_ = nullptr;
  QComboBox* rounding_ = nullptr;
  QCheckBox* uniform_ = nullptr;
  QLabel* estimate_ = nullptr;
  QLabel* targets_ = nullptr;
  QLabel* message_ = nullptr;
  QWidget* from_analysis_ = nullptr;
  std::map<std::string, double> importance_;
};

}  // namespace lorashear
