#include "help_actions.h"

#include <QAction>
#include <QMenu>
#include <QMessageBox>

#include "lorashear/build_info.h"
#include "lorashear/ui/help_dialogs.h"
#include "lorashear/ui/main_window.h"
#include "lorashear/ui/welcome_page.h"

namespace lorashear {

HelpActions::HelpActions(MainWindow* window) : QObject(window), window_(window) {
  guide_action_ = new QAction(tr("&User guide"), this);
  guide_action_->setObjectName("userGuideAction");
  guide_action_->setShortcut(Qt::Key_F1);
  connect(guide_action_, &QAction::triggered, this, [this] { showUserGuide(); });
  shortcuts_ = new QAction(tr("&Keyboard shortcuts"), this);
  shortcuts_->setObjectName("shortcutsAction");
  connect(shortcuts_, &QAction::triggered, this, &HelpActions::showShortcuts);
  about_ = new QAction(tr("&About LoRAShear Studio"), this);
  about_->setObjectName("aboutAction");
  about_->setMenuRole(QAction::AboutRole);
  connect(about_, &QAction::triggered, this, &HelpActions::showAbout);
  connect(window->welcomePage(), &WelcomePage::userGuideRequested, this,
          [this] { showUserGuide(); });
}

void HelpActions::fillMenu(QMenu* help) {
  help->addAction(guide_action_);
  help->addAction(shortcuts_);
  help->addSeparator();
  help->addAction(about_);
}

bool HelpActions::showUserGuide(const QString& anchor) {
  const auto path = QString::fromStdString(manual_path());
  if (path.isEmpty()) {
    auto* box = new QMessageBox(
        QMessageBox::Warning, tr("User guide not found"),
        tr("The user guide is not installed. It was expected at:\n\n%1\n\nIn a build tree, "
           "build it with: cmake --build build --target manual")
            .arg(manual_candidates().join("\n")),
        QMessageBox::Ok, window_);
    box->setObjectName("manualMissing");
    box->setAttribute(Qt::WA_DeleteOnClose);
    box->open();
    return false;
  }
  if (!guide_) guide_ = new UserGuideWindow(window_);
  guide_->showManual(path, anchor);
  guide_->show();
  guide_->raise();
  guide_->activateWindow();
  return true;
}

void HelpActions::showShortcuts() {
  // Built from the actions each time, so it lists what the window has now.
  delete window_->findChild<ShortcutsDialog*>("shortcutsDialog");
  auto* dialog = new ShortcutsDialog(shortcut_entries(window_), window_);
  dialog->setAttribute(Qt::WA_DeleteOnClose);
  dialog->show();
}

void HelpActions::showAbout() {
  auto* dialog = new AboutDialog(window_);
  dialog->setAttribute(Qt::WA_DeleteOnClose);
  dialog->open();
}

}  // namespace lorashear
