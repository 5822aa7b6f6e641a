#pragma once
// The Help menu's windows: the user guide (the HTML manual the build makes, in a browser window of
// its own), the keyboard shortcuts (a table generated from the main window's actions, so it cannot
// go stale) and About (versions of everything a bug report needs, with a Copy button).

#include <QDialog>
#include <QString>
#include <QStringList>
#include <QUrl>
#include <QWidget>

#include <vector>

class QMainWindow;
class QTextBrowser;
class QTableWidget;

namespace lorashear {

/// One action with a keyboard shortcut: where it is ("View ▸ Zoom in", or the dock holding it),
/// its name and its key sequences in the platform's native text ("Ctrl+F").
struct ShortcutEntry {
  QString place;
  QString action;
  QStringList keys;
};

/// Every QAction of `window` (menus, toolbars, docks) that has a shortcut, in menu order, then the
/// others.
std::vector<ShortcutEntry> shortcut_entries(const QMainWindow* window);

/// About's text, one item per line: the version and commit, LibTorch, Qt (run time and build
/// time), Graphviz (run time when the library says, else build time), BLAS, the CPU attention
/// kernel, CUDA, threads and the platform.
QString about_text();

/// The Graphviz library's own version ("" when it does not say). The first call creates a Graphviz
/// context, which touches Graphviz's global state: make it before any layout runs (MainWindow's
/// constructor does).
QString graphviz_runtime_version();

/// The manual's paths, in the order they are tried: installed beside the executable
/// (`<prefix>/share/doc/lorashear-studio/manual/index.html`), then the build tree's.
QStringList manual_candidates();

/// Help ▸ User guide: the manual in a QTextBrowser (links inside it work, images show), with
/// Back / Forward / Contents and a button that opens the page in the desktop's web browser.
class UserGuideWindow : public QWidget {
  Q_OBJECT
 public:
  explicit UserGuideWindow(QWidget* parent = nullptr);
  /// Shows `file` (an HTML file), at `anchor` when given.
  void showManual(const QString& file, const QString& anchor = {});
  QTextBrowser* browser() const { return browser_; }
  /// The page shown, as a file:// URL with its anchor (what the desktop's browser is given).
  QUrl currentUrl() const;

 private:
  QTextBrowser* browser_ = nullptr;
  QUrl home_;
};

/// Help ▸ Keyboard shortcuts: one row per action, columns Menu / Action / Shortcut.
class ShortcutsDialog : public QDialog {
  Q_OBJECT
 public:
  ShortcutsDialog(const std::vector<ShortcutEntry>& entries, QWidget* parent = nullptr);
  QTableWidget* table() const { return table_; }

 private:
  QTableWidget* table_ = nullptr;
};

/// Help ▸ About: about_text() laid out as a table, with Copy (plain text to the clipboard) and
/// Close.
class AboutDialog : public QDialog {
  Q_OBJECT
 public:
  explicit AboutDialog(QWidget* parent = nullptr);
  QString text() const { return text_; }

 private:
  QString text_;
};

}  // namespace lorashear
