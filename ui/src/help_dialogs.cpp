#include "lorashear/ui/help_dialogs.h"

#include <QAction>
#include <QApplication>
#include <QClipboard>
#include <QCoreApplication>
#include <QDesktopServices>
#include <QDialogButtonBox>
#include <QDir>
#include <QDockWidget>
#include <QFileInfo>
#include <QHeaderView>
#include <QLabel>
#include <QMainWindow>
#include <QMenu>
#include <QMenuBar>
#include <QPushButton>
#include <QSet>
#include <QSysInfo>
#include <QTableWidget>
#include <QTextBrowser>
#include <QTimer>
#include <QToolBar>
#include <QVBoxLayout>
#include "lorashear/viewers/graph_layout.h"

#include <exception>
#include <functional>

#include "lorashear/build_info.h"
#include "lorashear/runtime.h"

namespace lorashear {

namespace {

// "Open model &file…" → "Open model file…" ("&&" is a literal ampersand).
QString without_mnemonic(QString text) {
  text.replace("&&", QChar(0x1));
  text.remove('&');
  text.replace(QChar(0x1), "&");
  return text;
}

QStringList key_texts(const QAction* a) {
  QStringList keys;
  for (const auto& k : a->shortcuts())
    if (!k.isEmpty()) keys << k.toString(QKeySequence::NativeText);
  return keys;
}

// The widgets an action lives in: those it was added to, else its parent.
QList<QWidget*> widgets_of(const QAction* a) {
  QList<QWidget*> out;
  for (auto* o : a->associatedObjects())
    if (auto* w = qobject_cast<QWidget*>(o)) out << w;
  if (out.isEmpty())
    if (auto* w = qobject_cast<QWidget*>(a->parent())) out << w;
  return out;
}

// Where an action outside the menus is: the dock or toolbar around it, else the window.
QString place_of(const QList<QWidget*>& widgets) {
  for (auto* w : widgets)
    for (auto* p = w; p; p = p->parentWidget()) {
      if (auto* dock = qobject_cast<QDockWidget*>(p)) return dock->windowTitle();
      if (auto* bar = qobject_cast<QToolBar*>(p))
        return bar->windowTitle() + QObject::tr(" toolbar");
      if (p->isWindow()) break;
    }
  return QObject::tr("Main window");
}

}  // namespace

std::vector<ShortcutEntry> shortcut_entries(const QMainWindow* window) {
  std::vector<ShortcutEntry> out;
  QSet<const QAction*> seen;
  std::function<void(const QMenu*, const QString&)> walk = [&](const QMenu* menu,
                                                               const QString& path) {
    for (const auto* a : menu->actions()) {
      if (a->isSeparator()) continue;
      if (a->menu()) {
        walk(a->menu(), path + " ▸ " + without_mnemonic(a->text()));
        continue;
      }
      seen.insert(a);
      const auto keys = key_texts(a);
      if (!keys.isEmpty()) out.push_back({path, without_mnemonic(a->text()), keys});
    }
  };
  for (const auto* a : window->menuBar()->actions())
    if (a->menu()) walk(a->menu(), without_mnemonic(a->text()));
  // Actions outside the menus (a dock's buttons, the window's own), but not those of other
  // top-level windows it owns (the user guide's Back and Forward).
  for (const auto* a : window->findChildren<QAction*>()) {
    if (seen.contains(a) || a->isSeparator() || a->menu()) continue;
    const auto keys = key_texts(a);
    if (keys.isEmpty()) continue;
    const auto widgets = widgets_of(a);
    QWidget* home = widgets.isEmpty() ? nullptr : widgets.front();
    while (qobject_cast<QMenu*>(home) && home->parentWidget())  // a menu pops up on its own
      home = home->parentWidget();
    if (home && home->window() != window) continue;
    seen.insert(a);
    out.push_back({place_of(widgets), without_mnemonic(a->text()), keys});
  }
  return out;
}

QString graphviz_runtime_version() {
  // Asked of the graph layout's Graphviz context (one per process: see graph_layout.cpp).
  static const QString version = QString::fromStdString(graphviz_library_version());
  return version;
}

QString about_text() {
  const auto info = build_info();
  QString kernel;
  try {
    kernel = QString::fromStdString(cpu_kernel_variant());
  } catch (const std::exception& e) {
    kernel = QObject::tr("unavailable: %1").arg(e.what());
  }
  const QString gv = graphviz_runtime_version();
  const QString graphviz = gv.isEmpty()
                               ? QObject::tr("%1 (built with; the library does not say its own)")
                                     .arg(QString::fromStdString(info.graphviz))
                               : QObject::tr("%1 at run time, built with %2")
                                     .arg(gv, QString::fromStdString(info.graphviz));
  const QString cuda =
      info.cuda_available
          ? QObject::tr("available, %1 device(s)").arg(info.cuda_devices)
          : (info.cuda_built ? QObject::tr("not available (LibTorch has CUDA, no device found)")
                             : QObject::tr("not available (this LibTorch was built without CUDA)"));
  QStringList lines;
  lines << QObject::tr("LoRAShear Studio %1").arg(QString::fromStdString(info.version))
        << QObject::tr("Commit: %1 (%2 build, %3)")
               .arg(QString::fromStdString(info.git_commit),
                    QString::fromStdString(info.build_type), QString::fromStdString(info.compiler))
        << QObject::tr("LibTorch: %1").arg(QString::fromStdString(info.torch))
        << QObject::tr("Qt: %1 at run time, built with %2")
               .arg(qVersion(), QString::fromStdString(info.qt))
        << QObject::tr("Graphviz: %1").arg(graphviz)
        << QObject::tr("BLAS: %1").arg(QString::fromStdString(info.blas))
        << QObject::tr("CPU attention kernel: %1").arg(kernel) << QObject::tr("CUDA: %1").arg(cuda)
        << QObject::tr("Threads: %1").arg(QString::fromStdString(runtime_description()))
        << QObject::tr("System: %1, %2 %3, %4")
               .arg(QSysInfo::prettyProductName(), QSysInfo::kernelType(),
                    QSysInfo::kernelVersion(), QSysInfo::currentCpuArchitecture());
  return lines.join('\n');
}

QStringList manual_candidates() {
  QStringList out;
  const auto exe = QString::fromStdString(executable_dir());
  if (!exe.isEmpty()) out << QDir::cleanPath(exe + "/../" + LORASHEAR_MANUAL_INSTALL_PATH);
  out << QString(LORASHEAR_MANUAL_BUILD_PATH);
  return out;
}

// ---- the user guide

UserGuideWindow::UserGuideWindow(QWidget* parent) : QWidget(parent, Qt::Window) {
  setObjectName("userGuide");
  setWindowTitle(tr("LoRAShear Studio — User guide"));
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  layout->setSpacing(0);
  auto* bar = new QToolBar;
  layout->addWidget(bar);
  browser_ = new QTextBrowser;
  browser_->setObjectName("userGuideBrowser");
  browser_->setOpenExternalLinks(true);  // http(s) links go to the desktop's browser
  browser_->setFrameShape(QFrame::NoFrame);
  // The manual is a light page in any theme, as in a web browser.
  QPalette page = browser_->palette();
  page.setColor(QPalette::Base, Qt::white);
  page.setColor(QPalette::Text, QColor(29, 31, 33));
  browser_->setPalette(page);
  layout->addWidget(browser_);

  auto* back = bar->addAction(tr("Back"), browser_, &QTextBrowser::backward);
  back->setShortcut(QKeySequence::Back);
  auto* forward = bar->addAction(tr("Forward"), browser_, &QTextBrowser::forward);
  forward->setShortcut(QKeySequence::Forward);
  back->setEnabled(false);
  forward->setEnabled(false);
  connect(browser_, &QTextBrowser::backwardAvailable, back, &QAction::setEnabled);
  connect(browser_, &QTextBrowser::forwardAvailable, forward, &QAction::setEnabled);
  bar->addAction(tr("Contents"), this, [this] {
    auto url = home_;
    url.setFragment("contents");
    browser_->setSource(url);
  });
  bar->addSeparator();
  auto* external = bar->addAction(tr("Open in web browser"), this,
                                  [this] { QDesktopServices::openUrl(currentUrl()); });
  external->setToolTip(tr("Open this page in the desktop's web browser"));
  external->setObjectName("openInBrowser");
  resize(980, 700);
}

void UserGuideWindow::showManual(const QString& file, const QString& anchor) {
  home_ = QUrl::fromLocalFile(QFileInfo(file).absoluteFilePath());
  auto url = home_;
  if (!anchor.isEmpty()) url.setFragment(anchor);
  browser_->setSource(url);
}

QUrl UserGuideWindow::currentUrl() const {
  return browser_->source().isEmpty() ? home_ : browser_->source();
}

// ---- keyboard shortcuts

ShortcutsDialog::ShortcutsDialog(const std::vector<ShortcutEntry>& entries, QWidget* parent)
    : QDialog(parent) {
  setObjectName("shortcutsDialog");
  setWindowTitle(tr("Keyboard shortcuts"));
  auto* layout = new QVBoxLayout(this);
  table_ = new QTableWidget(static_cast<int>(entries.size()), 3);
  table_->setObjectName("shortcutsTable");
  table_->setHorizontalHeaderLabels({tr("Menu"), tr("Action"), tr("Shortcut")});
  table_->verticalHeader()->hide();
  table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  table_->setSelectionBehavior(QAbstractItemView::SelectRows);
  table_->setAlternatingRowColors(true);
  table_->setShowGrid(false);
  for (int r = 0; r < static_cast<int>(entries.size()); ++r) {
    const auto& e = entries[static_cast<size_t>(r)];
    table_->setItem(r, 0, new QTableWidgetItem(e.place));
    table_->setItem(r, 1, new QTableWidgetItem(e.action));
    table_->setItem(r, 2, new QTableWidgetItem(e.keys.join(tr(" or "))));
  }
  table_->resizeColumnsToContents();
  table_->horizontalHeader()->setStretchLastSection(true);
  layout->addWidget(table_);
  auto* note =
      new QLabel(tr("Also: Enter in the find field selects the next match; double-click a "
                    "layer to expand or collapse it; wheel to zoom, drag to pan."));
  note->setWordWrap(true);
  note->setEnabled(false);
  layout->addWidget(note);
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Close);
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
  layout->addWidget(buttons);
  int width = 60;
  for (int c = 0; c < 3; ++c)
    width += table_->columnWidth(c);
  const int height = table_->horizontalHeader()->height() + 8 +
                     table_->verticalHeader()->defaultSectionSize() * table_->rowCount();
  resize(std::max(480, width), std::min(640, height + 120));
}

// ---- about

AboutDialog::AboutDialog(QWidget* parent) : QDialog(parent) {
  setObjectName("aboutDialog");
  setWindowTitle(tr("About LoRAShear Studio"));
  text_ = about_text();
  auto lines = text_.split('\n');
  const QString title = lines.takeFirst();
  QString rows;
  for (const auto& line : lines) {
    const auto colon = line.indexOf(": ");
    rows += QString("<tr><td style='padding-right:12px'><b>%1</b></td><td>%2</td></tr>")
                .arg(line.left(colon).toHtmlEscaped(), line.mid(colon + 2).toHtmlEscaped());
  }
  auto* layout = new QVBoxLayout(this);
  auto* label = new QLabel(
      tr("<h3>%1</h3><p>Structured pruning with knowledge recovery for LLaMA-family language "
         "models (LoRAShear, arXiv 2310.18356).</p><table cellspacing='2'>%2</table>")
          .arg(title.toHtmlEscaped(), rows));
  label->setObjectName("aboutText");
  label->setTextInteractionFlags(Qt::TextSelectableByMouse);
  label->setWordWrap(true);
  layout->addWidget(label);
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Close);
  auto* copy = buttons->addButton(tr("Copy"), QDialogButtonBox::ActionRole);
  copy->setObjectName("copyAbout");
  copy->setToolTip(tr("Copy these lines to the clipboard, for a bug report"));
  connect(copy, &QPushButton::clicked, this, [this, copy] {
    QApplication::clipboard()->setText(text_);
    copy->setText(tr("Copied"));
    QTimer::singleShot(1500, copy, [copy] { copy->setText(tr("Copy")); });
  });
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
  layout->addWidget(buttons);
  setMinimumWidth(560);
}

}  // namespace lorashear
