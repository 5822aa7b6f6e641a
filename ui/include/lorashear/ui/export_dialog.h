#pragma once
// File ▸ Export model: the open (e.g. pruned) model in the Hugging Face layout, float32 / bfloat16
// / float16, one file or shards with an index, an attached LoRA adapter merged or kept as a PEFT
// adapter — or as one GGUF file for llama.cpp (f32 / f16 / bf16 / q8_0, adapter merged); progress
// and a cancel button in the dialog; the export is loaded back and its logits checked before the
// dialog reports success (and before it replaces an existing folder or file). The dialog says
// where the model loads.

#include <QDialog>

class QCheckBox;
class QComboBox;
class QLabel;
class QLineEdit;
class QProgressBar;
class QSpinBox;
class QPushButton;

namespace lorashear {

class Engine;
struct EngineProgress;

class ExportDialog : public QDialog {
  Q_OBJECT
 public:
  ExportDialog(Engine* engine, QWidget* parent = nullptr);
  /// "hf" (a Hugging Face folder) or "gguf" (a file for llama.cpp).
  void setFormat(const QString& format);
  /// The folder (hf) or file (gguf) to write.
  void setFolder(const QString& dir);
  void setDtype(const QString& dtype);
  void setKeepAdapter(bool keep);
  /// Largest shard in MiB; 0: one model.safetensors.
  void setShardMiB(int mib);
  /// Cancels a running export (the folder is left as it was).
  void cancel();
  /// Starts the export; false (with the reason shown) when it cannot start.
  bool start();
  QString resultText() const;
  /// "llama.cpp ✓ (deci) · transformers / vLLM: needs the same size in every layer".
  QString loadsInText() const;
  bool succeeded() const { return succeeded_; }

 signals:
  /// The export ended (succeeded or not).
  void done();

 private:
  void formatChanged();
  Engine* engine_;
  QComboBox* format_ = nullptr;
  QLabel* path_label_ = nullptr;
  QLabel* loads_in_ = nullptr;
  QLineEdit* folder_ = nullptr;
  QComboBox* dtype_ = nullptr;
  QCheckBox* keep_adapter_ = nullptr;
  QSpinBox* shard_ = nullptr;
  QPushButton* cancel_ = nullptr;
  QProgressBar* progress_ = nullptr;
  QLabel* result_ = nullptr;
  QPushButton* export_ = nullptr;
  bool running_ = false;
  bool succeeded_ = false;
};

}  // namespace lorashear
