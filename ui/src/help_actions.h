#pragma once
// The Help menu: the user guide (in its own window), the keyboard shortcuts and About. GUI thread
// only.

#include <QObject>
#include <QString>

class QAction;
class QMenu;

namespace lorashear {

class MainWindow;
class UserGuideWindow;

class HelpActions : public QObject {
  Q_OBJECT
 public:
  /// `window` (the dialogs' parent) must outlive it.
  explicit HelpActions(MainWindow* window);

  /// Help ▸ User guide (F1), Keyboard shortcuts, About.
  void fillMenu(QMenu* help);
  /// The manual (manual_path()) in the guide window, at `anchor` when given; false, with a
  /// message naming where it was expected, when it is missing.
  bool showUserGuide(const QString& anchor = {});
  /// The guide window (null until the guide was first shown).
  UserGuideWindow* userGuide() const { return guide_; }
  /// Non-modal; closed with the window.
  void showShortcuts();
  void showAbout();

 private:
  MainWindow* window_;
  UserGuideWindow* guide_ = nullptr;
  QAction* guide_action_ = nullptr;
  QAction* shortcuts_ = nullptr;
  QAction* about_ = nullptr;
};

}  // namespace lorashear
