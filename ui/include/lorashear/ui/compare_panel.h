#pragma once
// The compare panel (issue 7): the open model against another one of the same architecture —
// parameters, FLOPs per token, perplexity on a chosen text and measured forward tokens/s side by
// side — and the graph diff by node group id: variable groups before / after and which original
// heads (kv groups) and channels were removed. The larger model is the dense one, whichever is
// open. Double-click a node group to show it in the graph.

#include <QWidget>

class QLabel;
class QLineEdit;
class QPushButton;
class QTableWidget;

namespace lorashear {

class Engine;

class ComparePanel : public QWidget {
  Q_OBJECT
 public:
  explicit ComparePanel(Engine* engine, QWidget* parent = nullptr);
  void setOtherModel(const QString& path);
  QString otherModel() const;
  void setTextPath(const QString& path);
  /// Starts the comparison; false with a message when it cannot.
  bool compare();
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
  QPushButton* compare_ = nullptr;
  QLabel* header_ = nullptr;
  QLabel* message_ = nullptr;
  QTableWidget* figures_ = nullptr;
  QTableWidget* groups_ = nullptr;
};

}  // namespace lorashear
