#include "lorashear/ui/welcome_page.h"

#include <QDir>
#include <QFileInfo>
#include <QGridLayout>
#include <QLabel>
#include <QPushButton>
#include <QScrollArea>
#include <QStyle>
#include <QVBoxLayout>

#include <array>

namespace lorashear {

namespace {

constexpr int kMaxRecent = 5;

QLabel* heading(const QString& text) {
  auto* label = new QLabel(text);
  QFont f = label->font();
  f.setBold(true);
  f.setPointSizeF(f.pointSizeF() * 1.15);
  label->setFont(f);
  return label;
}

QLabel* wrapped(const QString& html) {
  auto* label = new QLabel(html);
  label->setWordWrap(true);
  label->setTextFormat(Qt::RichText);
  return label;
}

}  // namespace

WelcomePage::WelcomePage(QWidget* parent) : QWidget(parent) {
  setObjectName("welcomePage");
  setBackgroundRole(QPalette::Base);
  setAutoFillBackground(true);

  // Centred, at most ~900 px wide; it scrolls rather than squeezes in a small window.
  auto* content = new QWidget;
  content->setObjectName("welcomeContent");
  content->setMaximumWidth(900);
  auto* column = new QVBoxLayout(content);
  column->setContentsMargins(24, 20, 24, 20);
  column->setSpacing(6);
  auto* title = new QLabel(tr("LoRAShear Studio"));
  QFont tf = title->font();
  tf.setBold(true);
  tf.setPointSizeF(tf.pointSizeF() * 1.9);
  title->setFont(tf);
  column->addWidget(title);
  auto* subtitle = new QLabel(
      tr("Structured pruning with knowledge recovery for LLaMA-family language models."));
  subtitle->setWordWrap(true);
  column->addWidget(subtitle);
  column->addSpacing(14);

  auto* grid = new QGridLayout;
  grid->setHorizontalSpacing(36);
  grid->setVerticalSpacing(6);
  column->addLayout(grid);

  // Left: open something.
  auto* start = new QVBoxLayout;
  start->setSpacing(6);
  start->addWidget(heading(tr("Start")));
  open_ = new QPushButton(style()->standardIcon(QStyle::SP_DialogOpenButton), tr("Open a model…"));
  open_->setObjectName("welcomeOpen");
  open_->setToolTip(
      tr("A llama2.c .bin, a .gguf, a config.json, or a Hugging Face folder's "
         "model.safetensors (Ctrl+O); or drop a file or folder on the window"));
  folder_ = new QPushButton(style()->standardIcon(QStyle::SP_DirOpenIcon), tr("Folder…"));
  folder_->setObjectName("welcomeFolder");
  folder_->setToolTip(tr("Open a Hugging Face model folder"));
  demo_ = new QPushButton(style()->standardIcon(QStyle::SP_DirHomeIcon), tr("Open the demo model"));
  demo_->setObjectName("welcomeDemo");
  for (auto* b : {open_, folder_, demo_}) {
    b->setMinimumHeight(32);
    b->setStyleSheet("text-align: left; padding-left: 10px; padding-right: 10px;");
  }
  auto* open_row = new QHBoxLayout;
  open_row->setSpacing(6);
  open_row->addWidget(open_, 1);
  open_row->addWidget(folder_);
  start->addLayout(open_row);
  start->addWidget(demo_);
  demo_note_ = new QLabel;
  demo_note_->setObjectName("welcomeDemoNote");
  demo_note_->setWordWrap(true);
  demo_note_->setEnabled(false);
  demo_note_->hide();
  start->addWidget(demo_note_);
  start->addSpacing(12);
  start->addWidget(heading(tr("Recent models")));
  recent_box_ = new QWidget;
  recent_list_ = new QVBoxLayout(recent_box_);
  recent_list_->setContentsMargins(0, 0, 0, 0);
  recent_list_->setSpacing(0);
  recent_box_->installEventFilter(this);
  start->addWidget(recent_box_);
  no_recent_ = new QLabel(tr("None yet."));
  no_recent_->setEnabled(false);
  start->addWidget(no_recent_);
  start->addStretch(1);
  grid->addLayout(start, 0, 0);

  // Right: the work, in four steps, and where each is.
  auto* steps = new QVBoxLayout;
  steps->setSpacing(8);
  steps->addWidget(heading(tr("How it works")));
  // What each step does, then where it is.
  const QList<std::array<QString, 3>> items = {
      {tr("Plan"), tr("what to remove and what to protect, with live estimates."),
       tr("Plan dock, at the bottom")},
      {tr("Run"), tr("LHSPG prunes while LoRA training keeps the knowledge, then recovery."),
       tr("Run dock, on the right; charts in the Dashboard tab")},
      {tr("Compare"), tr("size, speed, perplexity and accuracy against the original."),
       tr("Tools ▸ Compare with another model")},
      {tr("Export"), tr("a Hugging Face folder, or one GGUF file for llama.cpp."),
       tr("File ▸ Export model")}};
  int n = 0;
  for (const auto& [name, text, where] : items) {
    auto* row = new QHBoxLayout;
    row->setSpacing(10);
    auto* number = new QLabel(QString::number(++n));
    QFont nf = number->font();
    nf.setBold(true);
    nf.setPointSizeF(nf.pointSizeF() * 1.3);
    number->setFont(nf);
    number->setForegroundRole(QPalette::Link);
    number->setFixedWidth(18);
    number->setAlignment(Qt::AlignTop | Qt::AlignHCenter);
    row->addWidget(number);
    auto* label = wrapped(QString("<b>%1</b> — %2<br><span style=\"color:#7a7f85\">%3</span>")
                              .arg(name, text, where));
    label->setObjectName("welcomeStep");
    row->addWidget(label, 1);
    steps->addLayout(row);
  }
  steps->addSpacing(6);
  auto* guide =
      wrapped(tr("<a href=\"guide\">Read the user guide</a> (F1): the method, every "
                 "setting and the file formats."));
  guide->setObjectName("welcomeGuide");
  connect(guide, &QLabel::linkActivated, this, &WelcomePage::userGuideRequested);
  steps->addWidget(guide);
  steps->addStretch(1);
  grid->addLayout(steps, 0, 1);
  grid->setColumnStretch(0, 1);
  grid->setColumnStretch(1, 1);
  column->addStretch(1);

  auto* scroll = new QScrollArea;
  scroll->setObjectName("welcomeScroll");
  scroll->setFrameShape(QFrame::NoFrame);
  scroll->setWidgetResizable(true);
  scroll->setBackgroundRole(QPalette::Base);
  auto* centred = new QWidget;
  auto* h = new QHBoxLayout(centred);
  h->setContentsMargins(0, 0, 0, 0);
  h->addStretch(1);
  h->addWidget(content, 30);  // nearly all the width, up to its maximum
  h->addStretch(1);
  scroll->setWidget(centred);
  auto* page = new QVBoxLayout(this);
  page->setContentsMargins(0, 0, 0, 0);
  page->addWidget(scroll);

  connect(open_, &QPushButton::clicked, this, [this] { emit openModelRequested(false); });
  connect(folder_, &QPushButton::clicked, this, [this] { emit openModelRequested(true); });
  connect(demo_, &QPushButton::clicked, this, &WelcomePage::openDemoRequested);
  setDemoModel({});
  setRecentFiles({});
}

void WelcomePage::setDemoModel(const QString& path) {
  demo_->setEnabled(!path.isEmpty());
  demo_->setToolTip(path.isEmpty() ? QString()
                                   : tr("A small LLaMA trained for this app: %1").arg(path));
  demo_note_->setText(
      tr("The demo model is not installed (it belongs in share/lorashear/demo-model beside the "
         "program)."));
  demo_note_->setVisible(path.isEmpty());
}

void WelcomePage::setRecentFiles(const QStringList& paths) {
  for (auto* b : recentButtons())
    delete b;
  for (const auto& path : paths.mid(0, kMaxRecent)) {
    const QFileInfo info(path);
    const QString name = info.fileName().isEmpty() ? path : info.fileName();
    auto* b = new QPushButton;
    b->setObjectName("welcomeRecent");
    b->setFlat(true);
    b->setCursor(Qt::PointingHandCursor);
    b->setStyleSheet("text-align: left; padding: 3px 6px;");
    b->setToolTip(path);
    // The column decides the width; the text is elided to it (see eventFilter).
    b->setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Fixed);
    b->setProperty("fullText",
                   QString("%1    %2").arg(name, QDir::toNativeSeparators(info.absolutePath())));
    b->setEnabled(info.exists());
    connect(b, &QPushButton::clicked, this, [this, path] { emit openRecentRequested(path); });
    recent_list_->addWidget(b);
  }
  no_recent_->setVisible(paths.isEmpty());
  elideRecent();
}

void WelcomePage::elideRecent() {
  const int width = std::max(60, recent_box_->width() - 16);
  for (auto* b : recentButtons())
    b->setText(
        b->fontMetrics().elidedText(b->property("fullText").toString(), Qt::ElideMiddle, width));
}

bool WelcomePage::eventFilter(QObject* watched, QEvent* event) {
  if (watched == recent_box_ && event->type() == QEvent::Resize) elideRecent();
  return QWidget::eventFilter(watched, event);
}

QList<QPushButton*> WelcomePage::recentButtons() const {
  return recent_box_->findChildren<QPushButton*>("welcomeRecent", Qt::FindDirectChildrenOnly);
}

}  // namespace lorashear
