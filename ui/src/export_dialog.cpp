#include "lorashear/ui/export_dialog.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDialogButtonBox>
#include <QFileDialog>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSpinBox>

#include "lorashear/ui/engine.h"

namespace lorashear {

ExportDialog::ExportDialog(Engine* engine, QWidget* parent) : QDialog(parent), engine_(engine) {
  setWindowTitle(tr("Export the model"));
  auto* form = new QFormLayout(this);
  folder_ = new QLineEdit;
  auto* browse = new QPushButton(tr("…"));
  auto* row = new QHBoxLayout;
  row->addWidget(folder_, 1);
  row->addWidget(browse);
  form->addRow(tr("Folder"), row);
  dtype_ = new QComboBox;
  dtype_->addItem(tr("float32"), "float32");
  dtype_->addItem(tr("bfloat16"), "bfloat16");
  dtype_->addItem(tr("float16"), "float16");
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
    const auto dir =
        QFileDialog::getSaveFileName(this, tr("Folder for the model"), folder_->text());
    if (!dir.isEmpty()) folder_->setText(dir);
  });
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
    result_->setText(message.isEmpty() ? tr("Cancelled; the folder is as it was.")
                                       : tr("Failed: %1").arg(message));
    progress_->setValue(0);
    export_->setEnabled(true);
    cancel_->setEnabled(false);
    emit done();
  };
  connect(engine_, &Engine::taskFailed, this, failed);
  connect(engine_, &Engine::taskCancelled, this,
          [failed](const QString& task) { failed(task, {}); });
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
    result_->setText(tr("Choose a folder first."));
    return false;
  }
  if (!engine_->exportModel(folder_->text().trimmed(), dtype_->currentData().toString(),
                            keep_adapter_->isChecked(),
                            static_cast<qint64>(shard_->value()) << 20)) {
    result_->setText(tr("The engine is busy with %1.").arg(engine_->currentTask()));
    return false;
  }
  running_ = true;
  progress_->setValue(0);
  export_->setEnabled(false);
  cancel_->setEnabled(true);
  result_->setText(tr("Exporting…"));
  return true;
}

}  // namespace lorashear
