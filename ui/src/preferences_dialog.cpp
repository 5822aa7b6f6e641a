#include "lorashear/ui/preferences_dialog.h"

#include <QComboBox>
#include <QDialogButtonBox>
#include <QFormLayout>
#include <QLabel>

#include "lorashear/ui/engine.h"

namespace lorashear {

PreferencesDialog::PreferencesDialog(const QString& device, const QString& dtype, QWidget* parent)
    : QDialog(parent) {
  setWindowTitle(tr("Preferences"));
  auto* form = new QFormLayout(this);
  device_ = new QComboBox;
  device_->addItems(Engine::availableDevices());
  if (device_->findText(device) < 0) device_->addItem(device);  // a saved GPU not visible now
  device_->setCurrentText(device);
  form->addRow(tr("Device"), device_);
  dtype_ = new QComboBox;
  dtype_->addItem(tr("float32 (exact)"), "float32");
  dtype_->addItem(tr("bfloat16 (half the memory)"), "bfloat16");
  dtype_->addItem(tr("float16 (half the memory; GPU)"), "float16");
  dtype_->addItem(tr("as stored in the checkpoint (bf16 stays bf16; fp16 on a GPU)"), "auto");
  dtype_->setCurrentIndex(std::max(0, dtype_->findData(dtype)));
  form->addRow(tr("Precision of the weights"), dtype_);
  auto* note = new QLabel(tr("Applies to the next model opened."));
  note->setEnabled(false);
  form->addRow(note);
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel);
  connect(buttons, &QDialogButtonBox::accepted, this, &QDialog::accept);
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
  form->addRow(buttons);
}

QString PreferencesDialog::device() const {
  return device_->currentText();
}

QString PreferencesDialog::dtype() const {
  return dtype_->currentData().toString();
}

}  // namespace lorashear
