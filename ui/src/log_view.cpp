#include "lorashear/ui/log_view.h"

#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>
#include <QComboBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QTimer>
#include <QVBoxLayout>

namespace lorashear {

namespace {

constexpr size_t kCapacity = 10000;

class StoreSink : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    LogStore::instance().add(
        static_cast<int>(msg.level),
        QString::fromUtf8(msg.payload.data(), static_cast<qsizetype>(msg.payload.size())));
  }
  void flush_() override {}
};

void qt_message(QtMsgType type, const QMessageLogContext&, const QString& text) {
  // The offscreen platform's notice on every window, noise for a user.
  if (text.contains("does not support propagateSizeHints")) return;
  spdlog::level::level_enum level = spdlog::level::info;
  switch (type) {
    case QtDebugMsg:
      level = spdlog::level::debug;
      break;
    case QtInfoMsg:
      level = spdlog::level::info;
      break;
    case QtWarningMsg:
      level = spdlog::level::warn;
      break;
    case QtCriticalMsg:
      level = spdlog::level::err;
      break;
    case QtFatalMsg:
      level = spdlog::level::critical;
      break;
  }
  spdlog::log(level, "Qt: {}", text.toStdString());
  if (type == QtFatalMsg) std::abort();
}

const char* level_name(int level) {
  static const char* names[] = {"trace", "debug", "info", "warning", "error", "critical", "off"};
  return names[std::clamp(level, 0, 6)];
}

}  // namespace

LogStore& LogStore::instance() {
  static LogStore store;
  return store;
}

void LogStore::add(int level, const QString& text) {
  std::lock_guard<std::mutex> lock(mutex_);
  entries_.push_back({level, QDateTime::currentDateTime(), text, ++serial_});
  while (entries_.size() > kCapacity)
    entries_.pop_front();
}

std::vector<LogEntry> LogStore::since(uint64_t after) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<LogEntry> out;
  for (auto it = entries_.rbegin(); it != entries_.rend() && it->serial > after; ++it)
    out.push_back(*it);
  std::reverse(out.begin(), out.end());
  return out;
}

void LogStore::clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  entries_.clear();
}

void install_log_sink() {
  static bool done = false;
  if (done) return;
  done = true;
  spdlog::default_logger()->sinks().push_back(std::make_shared<StoreSink>());
  qInstallMessageHandler(qt_message);
}

LogView::LogView(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(2, 2, 2, 2);
  auto* bar = new QHBoxLayout;
  bar->addWidget(new QLabel(tr("Show:")));
  filter_ = new QComboBox;
  for (int level = 0; level <= 4; ++level)
    filter_->addItem(QString("%1 and above").arg(level_name(level)), level);
  filter_->setCurrentIndex(2);
  bar->addWidget(filter_);
  bar->addStretch();
  auto* clear = new QPushButton(tr("Clear"));
  bar->addWidget(clear);
  layout->addLayout(bar);
  text_ = new QPlainTextEdit;
  text_->setReadOnly(true);
  text_->setMaximumBlockCount(static_cast<int>(kCapacity));
  text_->setFont(QFont("Monospace", 9));
  layout->addWidget(text_);
  connect(filter_, &QComboBox::currentIndexChanged, this,
          [this] { setMinimumLevel(filter_->currentData().toInt()); });
  connect(clear, &QPushButton::clicked, this, [this] {
    LogStore::instance().clear();
    text_->clear();
  });
  timer_ = new QTimer(this);
  timer_->setInterval(200);
  connect(timer_, &QTimer::timeout, this, &LogView::refresh);
  timer_->start();
  refresh();
}

void LogView::setMinimumLevel(int level) {
  level_ = level;
  const int index = filter_->findData(level);
  if (index >= 0 && index != filter_->currentIndex()) filter_->setCurrentIndex(index);
  rebuild();
}

QString LogView::text() const {
  return text_->toPlainText();
}

void LogView::append(const LogEntry& e) {
  if (e.level < level_) return;
  static const char* colours[] = {"#888888", "#888888", "", "#b86e00", "#d03030", "#d03030"};
  const QString colour = colours[std::clamp(e.level, 0, 5)];
  const QString line = QString("%1 %2  %3")
                           .arg(e.time.toString("HH:mm:ss.zzz"), QString(level_name(e.level)))
                           .arg(e.text.toHtmlEscaped());
  text_->appendHtml(
      colour.isEmpty() ? line : QString("<span style='color:%1'>%2</span>").arg(colour, line));
}

void LogView::refresh() {
  const auto entries = LogStore::instance().since(last_);
  for (const auto& e : entries)
    append(e);
  if (!entries.empty()) last_ = entries.back().serial;
}

void LogView::rebuild() {
  text_->clear();
  last_ = 0;
  refresh();
}

}  // namespace lorashear
