#pragma once
// What the middle of the window shows while no model is open: open a model or the bundled demo
// model, the recent models, the four steps of the work (plan → run → compare → export) and where
// each is in the app, and a link to the user guide.

#include <QString>
#include <QStringList>
#include <QWidget>

class QLabel;
class QPushButton;
class QVBoxLayout;

namespace lorashear {

class WelcomePage : public QWidget {
  Q_OBJECT
 public:
  explicit WelcomePage(QWidget* parent = nullptr);
  /// The demo model's path; empty: the button is disabled and a note says it is not installed.
  void setDemoModel(const QString& path);
  /// The recent models, newest first (at most six are shown; missing ones are disabled).
  void setRecentFiles(const QStringList& paths);
  QPushButton* openButton() const { return open_; }
  QPushButton* demoButton() const { return demo_; }
  /// The recent models' buttons, in order.
  QList<QPushButton*> recentButtons() const;

 signals:
  /// Open a model file (or, `folder`, a Hugging Face folder) with a file dialog.
  void openModelRequested(bool folder);
  void openDemoRequested();
  void openRecentRequested(const QString& path);
  void userGuideRequested();

 protected:
  bool eventFilter(QObject* watched, QEvent* event) override;

 private:
  void elideRecent();

  QPushButton* open_ = nullptr;
  QPushButton* folder_ = nullptr;
  QPushButton* demo_ = nullptr;
  QLabel* demo_note_ = nullptr;
  QWidget* recent_box_ = nullptr;
  QVBoxLayout* recent_list_ = nullptr;
  QLabel* no_recent_ = nullptr;
};

}  // namespace lorashear
