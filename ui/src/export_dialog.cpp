#include "lorashear/ui/export_dialog.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDialogButtonBox>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSpinBox>

#include <algorithm>

#include "lorashear/ui/engine.h"

namespace lorashear {

ExportDialog::ExportDialog(Engine* engine, QWidget* parent) : QDialog(parent), engine_(engine) {
  setWindowTitle(tr("Export the model"));
  auto* form = new QFormLayout(this);
  format_ = new QComboBox;
  format_->addItem(tr("Hugging Face folder (transformers, vLLM, this app)"), "hf");
  format_->addItem(tr("GGUF file (llama.cpp, Ollama, LM Studio)"), "gguf");
  form->addRow(tr("Format"), format_);
  loads_in_ = new QLabel;
  loads_in_->setWordWrap(true);
  loads_in_->setText(tr("This model loads in: %1")
                         .arg(engine_->documentLoadTargets().join(QString::fromUtf8(" · "))));
  form->addRow(loads_in_);
  folder_ = new QLineEdit;
  auto* browse = new QPushButton(tr("…"));
  auto* row = new QHBoxLayout;
  row->addWidget(folder_, 1);
  row->addWidget(browse);
  path_label_ = new QLabel(tr("Folder"));
  form->addRow(path_label_, row);
  dtype_ = new QComboBox;
  form->addRow(tr("Weights"), dtype_);
  shard_ = new QSpinBox;
  shard_->setRange(0, 1 << 20);
  shard_->setSingleStep(1024);
  shard_->setSuffix(tr(" MiB"));
  shard_->setSpecialValueText(tr("one file"));
  shard_->setValue(0);
  shard_->setToolTip(
      tr("Split the weights into model-0000i-of-0000n.safetensors of at most this "
         "size, with model.safetensors.index.json"));
  form->addRow(tr("Shards"), shard_);
  keep_adapter_ = new QCheckBox(tr("Keep the LoRA adapter apart (PEFT layout in adapter/)"));
  keep_adapter_->setEnabled(engine_->documentHasAdapter());
  keep_adapter_->setToolTip(engine_->documentHasAdapter()
                                ? tr("Unchecked: the adapter is merged into the weights")
                                : tr("The open model has no adapter"));
  form->addRow(keep_adapter_);
  progress_ = new QProgressBar;
  progress_->setRange(0, 3);
  progress_->setValue(0);
  form->addRow(progress_);
  result_ =
      new QLabel(tr("Hugging Face layout: config.json, model.safetensors, tokenizer.model. "
                    "The export is loaded back and checked before it is reported."));
  result_->setWordWrap(true);
  form->addRow(result_);
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Close);
  export_ = buttons->addButton(tr("Export"), QDialogButtonBox::AcceptRole);
  cancel_ = buttons->addButton(tr("Cancel export"), QDialogButtonBox::ActionRole);
  cancel_->setEnabled(false);
  form->addRow(buttons);
  connect(browse, &QPushButton::clicked, this, [this] {
    const bool gguf = format_->currentData() == "gguf";
    const auto dir = QFileDialog::getSaveFileName(
        this, gguf ? tr("GGUF file for the model") : tr("Folder for the model"), folder_->text(),
        gguf ? tr("GGUF files (*.gguf)") : QString());
    if (!dir.isEmpty()) folder_->setText(dir);
  });
  connect(format_, &QComboBox::currentIndexChanged, this, &ExportDialog::formatChanged);
  formatChanged();
  connect(export_, &QPushButton::clicked, this, &ExportDialog::start);
  connect(cancel_, &QPushButton::clicked, this, &ExportDialog::cancel);
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
  connect(engine_, &Engine::progressChanged, this, [this](const EngineProgress& p) {
    if (running_ && p.stage == "export") progress_->setValue(static_cast<int>(p.done));
  });
  connect(engine_, &Engine::taskFinished, this, [this](const QString& task, const QString& text) {
    if (!running_ || task != "Export") return;
    running_ = false;
    succeeded_ = true;
    progress_->setValue(3);
    result_->setText(tr("Done: %1").arg(text));
    export_->setEnabled(true);
    cancel_->setEnabled(false);
    emit done();
  });
  auto failed = [this](const QString& task, const QString& message) {
    if (!running_ || task != "Export") return;
    running_ = false;
    // A GGUF file is written as ".NAME.export" beside the chosen one: name the chosen file (the
    // staging file is gone by now).
    QString shown = message;
    const QFileInfo target(property("exportTarget").toString());
    if (!target.fileName().isEmpty())
      shown.replace(target.dir().filePath("." + target.fileName() + ".export"), target.filePath());
    result_->setText(message.isEmpty() ? tr("Cancelled; nothing was replaced.")
                                       : tr("Failed: %1").arg(shown));
    progress_->setValue(0);
    export_->setEnabled(true);
    cancel_->setEnabled(false);
    emit done();
  };
  connect(engine_, &Engine::taskFailed, this, failed);
  connect(engine_, &Engine::taskCancelled, this,
          [failed](const QString& task) { failed(task, {}); });
}

void ExportDialog::formatChanged() {
  const bool gguf = format_->currentData() == "gguf";
  const auto previous = dtype_->currentIndex();
  dtype_->clear();
  if (gguf) {
    dtype_->addItem(tr("f32"), "f32");
    dtype_->addItem(tr("bf16"), "bf16");
    dtype_->addItem(tr("f16"), "f16");
    dtype_->addItem(tr("q8_0 (8-bit blocks)"), "q8_0");
  } else {
    dtype_->addItem(tr("float32"), "float32");
    dtype_->addItem(tr("bfloat16"), "bfloat16");
    dtype_->addItem(tr("float16"), "float16");
  }
  dtype_->setCurrentIndex(std::clamp(previous, 0, 2));
  path_label_->setText(gguf ? tr("File") : tr("Folder"));
  shard_->setEnabled(!gguf);
  keep_adapter_->setEnabled(!gguf && engine_->documentHasAdapter());
  if (gguf) keep_adapter_->setChecked(false);
  // A folder name typed for one format gets the other's shape.
  auto path = folder_->text().trimmed();
  if (gguf && !path.isEmpty() && !path.endsWith(".gguf")) folder_->setText(path + ".gguf");
  if (!gguf && path.endsWith(".gguf")) folder_->setText(path.chopped(5));
  result_->setText(gguf ? tr("One GGUF file with the tokenizer (adapter merged): architecture "
                             "“llama” when every layer has the same size, “deci” otherwise. It "
                             "is loaded back and checked before it is reported.")
                        : tr("Hugging Face layout: config.json, model.safetensors, "
                             "tokenizer.model. The export is loaded back and checked before it "
                             "is reported."));
}

void ExportDialog::setFormat(const QString& format) {
  format_->setCurrentIndex(std::max(0, format_->findData(format)));
}

QString ExportDialog::loadsInText() const {
  return loads_in_->text();
}

void ExportDialog::setFolder(const QString& dir) {
  folder_->setText(dir);
}

void ExportDialog::setDtype(const QString& dtype) {
  dtype_->setCurrentIndex(std::max(0, dtype_->findData(dtype)));
}

void ExportDialog::setKeepAdapter(bool keep) {
  keep_adapter_->setChecked(keep);
}

void ExportDialog::setShardMiB(int mib) {
  shard_->setValue(mib);
}

void ExportDialog::cancel() {
  if (running_) engine_->cancel();
}

QString ExportDialog::resultText() const {
  return result_->text();
}

bool ExportDialog::start() {
  succeeded_ = false;
  if (folder_->text().trimmed().isEmpty()) {
    result_->setText(format_->currentData() == "gguf" ? tr("Choose a file first.")
                                                      : tr("Choose a folder first."));
    return false;
  }
  const bool gguf = format_->currentData() == "gguf";
  if (gguf && !folder_->text().trimmed().endsWith(".gguf", Qt::CaseInsensitive))
    folder_->setText(folder_->text().trimmed() + ".gguf");
  const bool started =
      gguf ? engine_->exportGguf(folder_->text().trimmed(), dtype_->currentData().toString())
           : engine_->exportModel(folder_->text().trimmed(), dtype_->currentData().toString(),
                                  keep_adapter_->isChecked(),
                                  static_cast<qint64>(shard_->value()) << 20);
  if (!started) {
    result_->setText(tr("The engine is busy with %1.").arg(engine_->currentTask()));
    return false;
  }
  running_ = true;
  setProperty("exportTarget", gguf ? folder_->text().trimmed() : QString());
  progress_->setValue(0);
  export_->setEnabled(false);
  cancel_->setEnabled(true);
  result_->setText(tr("Exporting…"));
  return true;
}

}  // namespace lorashear
