#pragma once
// Helpers shared by the test suites: where ../shared is, skipping when it is absent, temp dirs.

#include <QProcess>
#include <QString>
#include <QStringList>
#include <QTest>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace lorashear::test {

/// ../shared beside the source tree (LORASHEAR_SHARED_DIR overrides).
inline std::filesystem::path shared_dir() {
  if (const char* env = std::getenv("LORASHEAR_SHARED_DIR")) return env;
  return std::filesystem::path(LORASHEAR_SOURCE_DIR).parent_path() / "shared";
}

inline std::filesystem::path shared_path(const std::string& rel) {
  return shared_dir() / rel;
}

inline std::filesystem::path source_path(const std::string& rel) {
  return std::filesystem::path(LORASHEAR_SOURCE_DIR) / rel;
}

/// A whole file as bytes ("" when it cannot be read).
inline std::string read_all(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void write_all(const std::filesystem::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary);
  out << s;
}

/// A finished program: exit code (-2 when it crashed, -1 when it timed out and was killed) and its
/// output.
struct ProcessResult {
  int code = -1;
  QString out, err;
};

inline ProcessResult run_process(
    const QString& program, const QStringList& args, int timeout_ms = 300000,
    const QProcessEnvironment& env = QProcessEnvironment::systemEnvironment()) {
  QProcess p;
  p.setProcessEnvironment(env);
  p.start(program, args);
  if (!p.waitForFinished(timeout_ms)) {
    p.kill();
    p.waitForFinished(5000);
    return {};
  }
  return {p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -2,
          QString::fromUtf8(p.readAllStandardOutput()),
          QString::fromUtf8(p.readAllStandardError())};
}

}  // namespace lorashear::test

/// Skips the current test with a message when a file from ../shared is missing.
#define LORASHEAR_REQUIRE_SHARED(rel)                                                     \
  do {                                                                                    \
    if (!std::filesystem::exists(lorashear::test::shared_path(rel)))                      \
      QSKIP(qPrintable(                                                                   \
          QString("needs %1 (../shared is absent)")                                       \
              .arg(QString::fromStdString(lorashear::test::shared_path(rel).string())))); \
  } while (0)
