#pragma once
// The log dock: every spdlog message (the engine's, the core's, Qt's warnings) collected by a
// thread-safe sink and shown in a view with a level filter. The sink keeps the last 10 000
// entries; the view drains it on a GUI-thread timer, so logging from the worker never blocks on
// the GUI.

#include <QDateTime>
#include <QString>
#include <QWidget>

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

class QComboBox;
class QPlainTextEdit;
class QTimer;

namespace lorashear {

struct LogEntry {
  int level = 2;  ///< spdlog::level: 0 trace … 2 info, 3 warn, 4 error, 5 critical
  QDateTime time;
  QString text;
  uint64_t serial = 0;
};

/// The entries the sink collected; shared by every LogView.
class LogStore {
 public:
  static LogStore& instance();
  void add(int level, const QString& text);
  /// Entries with serial > `after`.
  std::vector<LogEntry> since(uint64_t after) const;
  void clear();

 private:
  mutable std::mutex mutex_;
  std::deque<LogEntry> entries_;
  uint64_t serial_ = 0;
};

/// Adds the sink to spdlog's default logger and routes Qt's messages to spdlog (once).
void install_log_sink();

class LogView : public QWidget {
  Q_OBJECT
 public:
  explicit LogView(QWidget* parent = nullptr);
  /// Shows entries at this level and above (spdlog numbering).
  void setMinimumLevel(int level);
  int minimumLevel() const { return level_; }
  /// The shown text (for tests).
  QString text() const;
  /// Takes the entries logged since the last call (the timer does this every 200 ms).
  void refresh();

 private:
  void rebuild();
  void append(const LogEntry& e);
  QComboBox* filter_ = nullptr;
  QPlainTextEdit* text_ = nullptr;
  QTimer* timer_ = nullptr;
  int level_ = 2;
  uint64_t last_ = 0;
};

}  // namespace lorashear
