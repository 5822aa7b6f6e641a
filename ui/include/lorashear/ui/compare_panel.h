#pragma once
// The compare panel (issue 7): the open model against another one of the same architecture —
// parameters, FLOPs per token, perplexity on a chosen text, zero-shot accuracy per task and
// prefill / decode speed (`lorashear bench --compare`: alternating repetitions) side by side — and
// the graph diff by node group id: variable groups before / after and which original heads (kv
// groups) and channels were removed. The larger model is the dense one, whichever is open.
// Double-click a node group to show it in the graph. The panel is the form; the comparison itself
// is a separate widget the window places where there is room.

#include <QPointer>
#include <QWidget>

class QLabel;
class QLineEdit;
class QPushButton;
class QSpinBox;
class QTableWidget;

namespace lorashear {

class Engine;

class ComparePanel : public QWidget {
  Q_OBJECT
 public:
  explicit ComparePanel(Engine* engine, QWidget* parent = nullptr);
  ~ComparePanel() override;
  void setOtherModel(const QString& path);
  QString otherModel() const;
  void setTextPath(const QString& path);
  /// Zero-shot tasks to score on both models (folders / files, comma-separated; names optional).
  void setTasks(const QString& data, const QString& names = {}, int limit = 0);
  /// Starts the comparison; false with a message when it cannot.
  bool compare();
  /// The models compared, the figures and the node groups, for the window to show apart from the
  /// form (its Compare tab): the figures beside the node groups where both fit, above them
  /// otherwise. The panel deletes it when it goes.
  QWidget* results() const { return results_; }
  QTableWidget* figuresTable() const { return figures_; }
  QTableWidget* groupsTable() const { return groups_; }
  QString messageText() const;

 signals:
  /// A node group (id) was double-clicked.
  void nodeGroupActivated(const QString& id);

 private:
  void render();
  Engine* engine_;
  QLineEdit* other_ = nullptr;
  QLineEdit* text_ = nullptr;
  QLineEdit* tasks_data_ = nullptr;
  QLineEdit* tasks_names_ = nullptr;
  QSpinBox* limit_ = nullptr;
  QPushButton* compare_ = nullptr;
  QPointer<QWidget> results_;  // usually owned by a tab of the window; see ~ComparePanel
  QLabel* header_ = nullptr;
  QLabel* message_ = nullptr;
  QTableWidget* figures_ = nullptr;
  QTableWidget* groups_ = nullptr;
};

}  // namespace lorashear
