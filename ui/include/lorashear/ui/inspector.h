#pragma once
// The inspector dock: what is selected — an operator (kind, module, input and output shapes,
// parameters, its node group and the variable groups its parameters belong to) or a node group
// (kind, prunability, variable groups, cost, operators). Links inside move to the named item; Back
// and Forward walk the history like a browser.

#include <QWidget>

#include <memory>
#include <vector>

class QTextBrowser;
class QToolButton;

namespace lorashear {

struct ModelDocument;

class Inspector : public QWidget {
  Q_OBJECT
 public:
  struct Entry {
    enum Kind { Operator, NodeGroup } kind = Operator;
    qint64 index = -1;
    bool operator==(const Entry& o) const { return kind == o.kind && index == o.index; }
  };

  explicit Inspector(QWidget* parent = nullptr);
  ~Inspector() override;
  /// Clears the history.
  void setDocument(std::shared_ptr<const ModelDocument> doc);

  void showOperator(qint64 op);
  void showNodeGroup(qint64 group);
  bool canGoBack() const { return position_ > 0; }
  bool canGoForward() const { return position_ + 1 < static_cast<int>(history_.size()); }
  void back();
  void forward();
  /// The entry on screen, or kind Operator with index -1 when nothing is.
  Entry current() const;
  /// The shown text (for tests).
  QString text() const;

 signals:
  /// The user moved to an entry (link, back, forward): the window syncs the graph and the tree.
  void operatorActivated(qint64 op);
  void nodeGroupActivated(qint64 group);

 private:
  void push(const Entry& e);
  void render();
  void activate();
  std::shared_ptr<const ModelDocument> doc_;
  std::vector<Entry> history_;
  int position_ = -1;
  QTextBrowser* browser_ = nullptr;
  QToolButton* back_ = nullptr;
  QToolButton* forward_ = nullptr;
};

}  // namespace lorashear
