// Help and first start: the Help menu (User guide, Keyboard shortcuts, About); the shortcuts table
// lists every action that has a shortcut; About names the version, commit and components; the
// manual the build makes holds the app, CLI, method and file-formats chapters with working anchors
// and images, and the guide window shows it and follows its links; the welcome page on a first
// start, after a failed open, and gone once a model opens; `lorashear-studio --version / --help`
// without a display, and without one the app explains itself (exit 2) or takes a screenshot
// off screen.
#include <QtTest>

#include <QClipboard>
#include <QDockWidget>
#include <QLabel>
#include <QMenuBar>
#include <QMessageBox>
#include <QPushButton>
#include <QScrollArea>
#include <QScrollBar>
#include <QSettings>
#include <QTableWidget>
#include <QTemporaryDir>
#include <QTextBlock>
#include <QTextBrowser>

#include "lorashear/build_info.h"
#include "lorashear/runtime.h"
#include "lorashear/ui/engine.h"
#include "lorashear/ui/help_dialogs.h"
#include "lorashear/ui/main_window.h"
#include "lorashear/ui/welcome_page.h"
#include "test_support.h"

using namespace lorashear;

namespace {

// Opens through `start` and waits for the engine to be idle and the graph drawn.
template <typename Start>
bool opens(MainWindow& w, Start start, int timeout_ms = 60000) {
  QSignalSpy shown(&w, &MainWindow::graphShown);
  QSignalSpy idle(&w, &MainWindow::engineIdle);
  start();
  if (!idle.wait(timeout_ms) || !w.lastError().isEmpty()) return false;
  return shown.count() > 0 || shown.wait(timeout_ms);
}

QString plain(QString text) {
  return text.remove('&');
}

// The actions of `w` with a shortcut, as the user sees them (not those of other windows).
QList<QAction*> actions_with_shortcuts(MainWindow& w) {
  QList<QAction*> out;
  for (auto* a : w.findChildren<QAction*>()) {
    if (a->shortcut().isEmpty()) continue;
    const auto objects = a->associatedObjects();
    auto* widget = objects.isEmpty() ? nullptr : qobject_cast<QWidget*>(objects.front());
    while (qobject_cast<QMenu*>(widget) && widget->parentWidget())  // a menu pops up on its own
      widget = widget->parentWidget();
    if (widget && widget->window() != &w) continue;
    out << a;
  }
  return out;
}

// lorashear-studio run the way a terminal without a display (or help2man) runs it.
test::ProcessResult studio(const QStringList& args, const QString& config_home) {
  auto env = QProcessEnvironment::systemEnvironment();
  for (const auto* v : {"QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"})
    env.remove(v);
  env.insert("XDG_CONFIG_HOME", config_home);  // not the user's settings
  return test::run_process(LORASHEAR_STUDIO_PATH, args, 120000, env);
}

}  // namespace

class TestHelp : public QObject {
  Q_OBJECT
  QTemporaryDir dir_;
  QString demo_;

 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    QSettings().clear();
    init_runtime();
    demo_ = QString::fromStdString(demo_model_path());
    QVERIFY2(!demo_.isEmpty(), "the demo model is found (source tree)");
  }

  void init() { QSettings().clear(); }

  void helpMenuHasGuideShortcutsAbout() {
    MainWindow w;
    QMenu* help = nullptr;
    for (auto* a : w.menuBar()->actions())
      if (plain(a->text()) == "Help") help = a->menu();
    QVERIFY(help);
    QStringList items;
    for (auto* a : help->actions())
      if (!a->isSeparator()) items << plain(a->text());
    QCOMPARE(items, QStringList({"User guide", "Keyboard shortcuts", "About LoRAShear Studio"}));
    QCOMPARE(help->actions().front()->shortcut(), QKeySequence(Qt::Key_F1));
  }

  void shortcutsListEveryActionWithAShortcut() {
    MainWindow w;
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    w.showShortcuts();
    auto* dialog = w.findChild<ShortcutsDialog*>("shortcutsDialog");
    QVERIFY(dialog);
    QTRY_VERIFY(dialog->isVisible());
    auto* table = dialog->table();
    QStringList rows;
    for (int r = 0; r < table->rowCount(); ++r)
      rows << table->item(r, 0)->text() + " | " + table->item(r, 1)->text() + " | " +
                  table->item(r, 2)->text();
    // Esc cancels the running task, from the Tools menu.
    const auto esc = QKeySequence(Qt::Key_Escape).toString(QKeySequence::NativeText);
    QVERIFY2(rows.contains("Tools | Cancel the running task | " + esc),
             qPrintable(rows.join('\n')));
    QVERIFY2(rows.contains("Help | User guide | F1"), qPrintable(rows.join('\n')));
    QVERIFY2(rows.contains("View | Find… | " +
                           QKeySequence(QKeySequence::Find).toString(QKeySequence::NativeText)),
             qPrintable(rows.join('\n')));
    // One row per action that has a shortcut, each with its menu, name and keys.
    const auto actions = actions_with_shortcuts(w);
    QCOMPARE(table->rowCount(), actions.size());
    for (auto* a : actions) {
      bool listed = false;
      for (int r = 0; r < table->rowCount(); ++r)
        listed |=
            table->item(r, 1)->text() == plain(a->text()) &&
            table->item(r, 2)->text().contains(a->shortcut().toString(QKeySequence::NativeText));
      QVERIFY2(listed, qPrintable(a->text()));
    }
    // A shortcut added later is listed the next time: the table is made from the actions.
    auto* extra = new QAction("Something new", &w);
    extra->setShortcut(Qt::CTRL | Qt::SHIFT | Qt::Key_Y);
    w.addAction(extra);
    w.showShortcuts();
    dialog = w.findChild<ShortcutsDialog*>("shortcutsDialog");
    QCOMPARE(dialog->table()->rowCount(), actions.size() + 1);
  }

  void aboutSaysWhatABugReportNeeds() {
    const auto info = build_info();
    const auto text = about_text();
    for (const auto& needle :
         {QString::fromStdString(info.version), QString::fromStdString(info.git_commit),
          QString("LibTorch: ") + QString::fromStdString(info.torch), QString("Qt: "),
          QString(qVersion()), QString("Graphviz: "), QString("BLAS: "),
          QString("CPU attention kernel: ") + QString::fromStdString(cpu_kernel_variant()),
          QString("CUDA: ")})
      QVERIFY2(text.contains(needle), qPrintable(needle + " in:\n" + text));
    QVERIFY(text.startsWith("LoRAShear Studio " + QString::fromStdString(info.version)));
    QVERIFY(!graphviz_runtime_version().isEmpty());  // Debian's libgvc says its version

    MainWindow w;
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    w.showAbout();
    auto* about = w.findChild<AboutDialog*>("aboutDialog");
    QVERIFY(about);
    QTRY_VERIFY(about->isVisible());
    auto* label = about->findChild<QLabel*>("aboutText");
    QVERIFY(label->text().contains("LibTorch"));
    QVERIFY(label->text().contains(QString::fromStdString(info.git_commit)));
    auto* copy = about->findChild<QPushButton*>("copyAbout");
    QVERIFY(copy);
    copy->click();
    QCOMPARE(QApplication::clipboard()->text(), text);
  }

  void manualIsBuiltWithEveryChapter() {
    const auto path = QString::fromStdString(manual_path());
    QVERIFY2(!path.isEmpty(), "manual/index.html is built (target manual)");
    QFile f(path);
    QVERIFY(f.open(QIODevice::ReadOnly));
    const auto html = QString::fromUtf8(f.readAll());
    // The app, the CLI, the method and the file formats, each a chapter with an anchor.
    for (const auto* id : {"the-desktop-app-lorashear-studio", "the-lorashear-command-line",
                           "the-lorashear-method", "file-formats", "the-demo-model"})
      QVERIFY2(html.contains(QString("<h2 id=\"%1\">").arg(id)), id);
    for (const auto* heading :
         {"The desktop app", "The <code>lorashear</code> command line", "The LoRAShear method",
          "File formats", "Knowledge distribution analysis", "LHSPG", "Dynamic knowledge recovery",
          "Plans", "Sweeps", "pruning_report.json", "results.json"})
      QVERIFY2(html.contains(heading), heading);
    // Every link to an anchor has its target, every image is beside the page.
    const QDir dir = QFileInfo(path).dir();
    QRegularExpression href("href=\"#([^\"]+)\""), img("<img src=\"([^\"]+)\"");
    int links = 0, images = 0;
    for (auto m = href.globalMatch(html); m.hasNext(); ++links) {
      const auto id = m.next().captured(1);
      QVERIFY2(html.contains(QString("id=\"%1\"").arg(id)), qPrintable(id));
    }
    for (auto m = img.globalMatch(html); m.hasNext(); ++images) {
      const auto src = m.next().captured(1);
      QVERIFY2(QFileInfo(dir.filePath(src)).isFile(), qPrintable(src));
    }
    QVERIFY(links >= 20);               // the contents
    QVERIFY(images >= 5);               // the README's screenshots
    QVERIFY(html.contains("<table>"));  // tables converted
    QVERIFY(html.contains("<pre class=\"language-sh\"><code>"));
    QVERIFY(!html.contains("```"));
  }

  void userGuideShowsTheManualAndFollowsLinks() {
    MainWindow w;
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    QVERIFY(w.showUserGuide());
    auto* guide = w.userGuide();
    QVERIFY(guide);
    QVERIFY(QTest::qWaitForWindowExposed(guide));
    auto* browser = guide->browser();
    QTRY_VERIFY(!browser->document()->isEmpty());
    QVERIFY(browser->toPlainText().contains("File formats"));
    QVERIFY(browser->toPlainText().contains("LHSPG"));
    // The images are found beside the page.
    QVERIFY(!browser->loadResource(QTextDocument::ImageResource, QUrl("studio-run.png")).isNull());
    QCOMPARE(browser->verticalScrollBar()->value(), 0);
    if (const auto out = qEnvironmentVariable("LORASHEAR_SCREENSHOT_GUIDE"); !out.isEmpty()) {
      QTest::qWait(200);
      guide->grab().save(out);
    }

    // Click "File formats" in the contents: the page scrolls to that chapter.
    QTextCursor link;
    for (auto block = browser->document()->begin(); block.isValid() && link.isNull();
         block = block.next())
      for (auto it = block.begin(); !it.atEnd(); ++it)
        if (it.fragment().charFormat().anchorHref() == "#file-formats") {
          link = QTextCursor(browser->document());
          link.setPosition(it.fragment().position() + 1);
          break;
        }
    QVERIFY(!link.isNull());
    browser->setTextCursor(link);
    browser->ensureCursorVisible();
    const QPoint at = browser->cursorRect(link).center();
    QTest::mouseClick(browser->viewport(), Qt::LeftButton, {}, at);
    QTRY_VERIFY(browser->verticalScrollBar()->value() > 500);
    // The chapter's heading is at the top of the view.
    QTextCursor heading;
    for (auto block = browser->document()->begin(); block.isValid(); block = block.next())
      if (block.blockFormat().headingLevel() == 2 && block.text() == "File formats")
        heading = QTextCursor(block);
    QVERIFY(!heading.isNull());
    const int y = browser->cursorRect(heading).top();
    QVERIFY2(y >= -5 && y < 80, qPrintable(QString::number(y)));
    QVERIFY(guide->currentUrl().toString().endsWith("index.html#file-formats"));
    if (const auto out = qEnvironmentVariable("LORASHEAR_SCREENSHOT_GUIDE"); !out.isEmpty()) {
      QTest::qWait(200);
      guide->grab().save(QString(out).replace(".png", "-formats.png"));
    }

    // An anchor given directly.
    QVERIFY(w.showUserGuide("the-lorashear-method"));
    QTRY_VERIFY(guide->currentUrl().fragment() == "the-lorashear-method");
  }

  void missingManualIsExplained() {
    // Hide the build's manual for a moment (nothing is installed beside the test).
    const auto path = QString::fromStdString(manual_path());
    QVERIFY(!path.isEmpty());
    const QString folder = QFileInfo(path).absolutePath();
    const QString hidden =
        folder + ".hidden-" + QString::number(QCoreApplication::applicationPid());
    QVERIFY(QDir().rename(folder, hidden));
    struct Restore {
      QString from, to;
      ~Restore() { QDir().rename(from, to); }
    } restore{hidden, folder};
    MainWindow w;
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    QVERIFY(!w.showUserGuide());
    auto* box = w.findChild<QMessageBox*>("manualMissing");
    QVERIFY(box);
    // Both places it looks: installed beside the program, and the build's.
    QVERIFY2(box->text().contains(path), qPrintable(box->text()));
    QCOMPARE(manual_candidates().size(), 2);
    for (const auto& candidate : manual_candidates())
      QVERIFY2(box->text().contains(candidate), qPrintable(box->text()));
    QVERIFY(manual_candidates().front().endsWith("/manual/index.html"));
    QVERIFY(!w.userGuide());
  }

  void welcomePageOnFirstStart() {
    // Five recent models, one missing: the page must still fit at 1366×768.
    QStringList recent = {demo_};
    for (int i = 0; i < 4; ++i)
      recent << dir_.filePath(QString("models/a-model-with-a-longer-name-%1").arg(i));
    QSettings().setValue("recentFiles", recent);
    MainWindow w;
    w.resize(1366, 768);
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    QVERIFY(!w.openAtStart({}));  // the very first start opens nothing
    auto* welcome = w.welcomePage();
    QVERIFY(welcome->isVisible());
    QVERIFY(!w.document());
    // It covers the middle of the window, over the tabs.
    QCOMPARE(welcome->geometry(), w.centralTabs()->geometry());
    QVERIFY(welcome->demoButton()->isEnabled());
    QVERIFY(!welcome->findChild<QLabel*>("welcomeDemoNote")->isVisible());
    const auto buttons = welcome->recentButtons();
    QCOMPARE(buttons.size(), 5);
    QVERIFY(buttons[0]->isEnabled());
    QVERIFY(!buttons[1]->isEnabled());  // not there any more
    QCOMPARE(welcome->findChildren<QLabel*>("welcomeStep").size(), 4);
    // Everything visible without scrolling, nothing cut.
    auto* scroll = welcome->findChild<QScrollArea*>("welcomeScroll");
    QTRY_VERIFY(scroll->widget()->height() <= scroll->viewport()->height());
    QVERIFY(!scroll->verticalScrollBar()->isVisible());
    QVERIFY(!scroll->horizontalScrollBar()->isVisible());
    for (auto* label : welcome->findChildren<QLabel*>("welcomeStep"))
      QVERIFY2(label->height() >= label->heightForWidth(label->width()), qPrintable(label->text()));
    QTRY_VERIFY(QSettings().value("welcome/shown").toBool());  // written in the background

    // Open the demo model: the page goes.
    QVERIFY(opens(w, [&] { welcome->demoButton()->click(); }));
    QCOMPARE(QFileInfo(w.documentPath()).canonicalFilePath(), QFileInfo(demo_).canonicalFilePath());
    QVERIFY(!welcome->isVisible());
    QVERIFY(w.centralTabs()->isVisible());
  }

  // docs/studio-welcome.png: LORASHEAR_SCREENSHOT_WELCOME=docs/studio-welcome.png test_help
  // welcomeScreenshot (the recent models are those of ../shared that exist).
  void welcomeScreenshot() {
    const auto out = qEnvironmentVariable("LORASHEAR_SCREENSHOT_WELCOME");
    if (out.isEmpty()) QSKIP("set LORASHEAR_SCREENSHOT_WELCOME=FILE.png to take it");
    QStringList recent = {demo_};
    for (const auto* rel : {"models/stories260K/stories260K.bin", "configs/qwen3-8b/config.json",
                            "configs/llama-3.1-8b/config.json"}) {
      const auto p = QString::fromStdString(test::shared_path(rel).lexically_normal().string());
      if (QFileInfo::exists(p)) recent << p;
    }
    QSettings().setValue("recentFiles", recent);
    MainWindow w;
    w.resize(1366, 768);
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    QVERIFY(!w.openAtStart({}));
    QVERIFY(w.welcomePage()->isVisible());
    QTest::qWait(300);
    QVERIFY(w.grab().save(out));
  }

  void laterStartsOpenTheDemoModel() {
    QSettings().setValue("welcome/shown", true);
    MainWindow w;
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    QVERIFY(opens(w, [&] { QVERIFY(w.openAtStart({})); }));
    QCOMPARE(QFileInfo(w.documentPath()).canonicalFilePath(), QFileInfo(demo_).canonicalFilePath());
    QVERIFY(!w.welcomePage()->isVisible());
  }

  void modelGivenOpensWithoutWelcome() {
    MainWindow w;
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    QSignalSpy shown(&w, &MainWindow::graphShown);
    QVERIFY(w.openAtStart(demo_ + "/config.json"));
    QVERIFY(!w.welcomePage()->isVisible());  // not even while it opens
    QVERIFY(shown.wait(60000));
    QVERIFY(!w.welcomePage()->isVisible());
  }

  void welcomePageComesBackAfterAFailedOpen() {
    MainWindow w;
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    QVERIFY(w.welcomePage()->isVisible());
    QSignalSpy idle(&w, &MainWindow::engineIdle);
    QVERIFY(w.openModel(dir_.filePath("no-such-model.gguf")));
    QVERIFY(idle.wait(30000));
    QVERIFY(!w.lastError().isEmpty());
    QVERIFY(!w.document());
    QVERIFY(w.welcomePage()->isVisible());
  }

  void recentModelOpensFromTheWelcomePage() {
    QSettings().setValue("recentFiles", QStringList{demo_});
    MainWindow w;
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    const auto buttons = w.welcomePage()->recentButtons();
    QCOMPARE(buttons.size(), 1);
    QCOMPARE(buttons[0]->toolTip(), demo_);
    QVERIFY(opens(w, [&] { buttons[0]->click(); }));
    QVERIFY(!w.welcomePage()->isVisible());
  }

  // ---- the binary, as a terminal without a display runs it

  void versionAndHelpNeedNoDisplay() {
    QTemporaryDir config;
    auto r = studio({"--version"}, config.path());
    QVERIFY2(r.code == 0, qPrintable(r.err));
    const auto first = r.out.section('\n', 0, 0);
    QVERIFY2(first.startsWith("lorashear-studio " + QString::fromStdString(version())),
             qPrintable(r.out));
    QVERIFY(r.out.contains("(commit "));  // which one depends on when the binary was linked
    QVERIFY(r.out.contains("LibTorch"));
    QVERIFY(r.out.contains("CPU attention kernel: "));
    r = studio({"--help"}, config.path());
    QVERIFY2(r.code == 0, qPrintable(r.err));
    QVERIFY(r.out.startsWith("Usage: lorashear-studio [options] [model]"));
    for (const auto* option : {"--screenshot", "--export-graph", "--version", "--theme"})
      QVERIFY2(r.out.contains(option), option);
  }

  void withoutADisplayTheAppSaysWhatToDo() {
    QTemporaryDir config;
    auto r = studio({}, config.path());
    QCOMPARE(r.code, 2);
    QVERIFY2(r.err.contains("no display"), qPrintable(r.err));
    QVERIFY(r.err.contains("--screenshot"));
    QVERIFY(r.err.contains("--export-graph"));
    QVERIFY(r.err.contains("QT_QPA_PLATFORM=offscreen"));
    // A model given changes nothing: still no window to show it in.
    r = studio({demo_}, config.path());
    QCOMPARE(r.code, 2);
  }

  void screenshotWithoutADisplay() {
    QTemporaryDir config;
    const auto png = dir_.filePath("shot.png");
    const auto r = studio({"--screenshot", png}, config.path());  // the demo model
    QVERIFY2(r.code == 0, qPrintable(r.err + r.out));
    QImage image(png);
    QVERIFY(!image.isNull());
    QVERIFY(image.width() > 600);
  }
};

QTEST_MAIN(TestHelp)
#include "test_help.moc"
