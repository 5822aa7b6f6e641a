#pragma once
// File ▸ Preferences: where models are opened (device) and in which precision. Applies to the next
// open; stored with the other settings.

#include <QDialog>

class QComboBox;

namespace lorashear {

class PreferencesDialog : public QDialog {
  Q_OBJECT
 public:
  PreferencesDialog(const QString& device, const QString& dtype, QWidget* parent = nullptr);
  QString device() const;
  QString dtype() const;

 private:
  QComboBox* device_ = nullptr;
  QComboBox* dtype_ = nullptr;
};

}  // namespace lorashear
