#pragma once
// The model summary dock: where the model comes from, its configuration, per-layer dimensions,
// parameters, FLOPs per token and memory (weights in their dtype and in 16 bits, KV cache).

#include <QWidget>

#include <memory>

class QTableWidget;
class QTextBrowser;

namespace lorashear {

struct ModelDocument;

class SummaryView : public QWidget {
  Q_OBJECT
 public:
  explicit SummaryView(QWidget* parent = nullptr);
  /// Shown now when visible, else the next time the dock is shown (rich text costs milliseconds
  /// of GUI thread; a hidden tab need not pay them).
  void setDocument(const std::shared_ptr<const ModelDocument>& doc);
  /// The summary text (for tests).
  QString text();
  /// The per-layer table: one row per decoder layer.
  QTableWidget* layerTable() const { return layers_; }

 protected:
  void showEvent(QShowEvent* event) override;

 private:
  void render();
  std::shared_ptr<const ModelDocument> doc_;
  bool stale_ = false;
  QTextBrowser* text_ = nullptr;
  QTableWidget* layers_ = nullptr;
};

}  // namespace lorashear
