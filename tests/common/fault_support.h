#pragma once
// Faults for the tests that fill disks (test_disk_full, test_export_faults): small tmpfs mounts
// (root only), snapshots of a folder's files and the staging or temporary files a failure must
// not leave behind.
#include <sys/statvfs.h>

#include <QDir>
#include <QString>
#include <QStringList>

#include <filesystem>
#include <map>
#include <string>

#include "test_support.h"

namespace lorashear::test {

/// `lorashear recover` of the demo model on `domain`, a few steps (seconds), into `out`.
inline QStringList small_recover_args(const QString& domain, const QString& out) {
  return {"recover",
          QString::fromStdString(source_path("resources/demo-model").string()),
          "--domain",
          domain,
          "--recover-steps",
          "4",
          "--seq-len",
          "32",
          "--val-sequences",
          "2",
          "--stage1-batch",
          "2",
          "--reestimate-every",
          "2",
          "--sampling",
          "uniform",
          "--quiet",
          "--threads",
          "1",
          "--out",
          out};
}

/// Runs a system command (mount, umount); false (and its stderr in `err`) when it fails.
inline bool sh(const QStringList& args, QString* err = nullptr) {
  auto r = run_process(args.front(), args.mid(1), 30000);
  if (err != nullptr) *err = r.err.trimmed();
  return r.code == 0;
}

/// A tmpfs mounted on a fresh folder for one test; unmounted when it goes.
class Tmpfs {
 public:
  Tmpfs(const QString& dir, int size_k) : dir_(dir) {
    QDir().mkpath(dir_);
    mounted_ =
        sh({"mount", "-t", "tmpfs", "-o", QString("size=%1k").arg(size_k), "tmpfs", dir_}, &error_);
  }
  ~Tmpfs() {
    if (mounted_ && !sh({"umount", dir_})) sh({"umount", "-l", dir_});
  }
  Tmpfs(const Tmpfs&) = delete;
  Tmpfs& operator=(const Tmpfs&) = delete;
  bool ok() const { return mounted_; }
  const QString& error() const { return error_; }
  QString path(const QString& rel) const { return dir_ + "/" + rel; }
  /// KiB in use.
  int64_t used_k() const {
    struct statvfs s {};
    if (::statvfs(dir_.toLocal8Bit().constData(), &s) != 0) return -1;
    return static_cast<int64_t>((s.f_blocks - s.f_bfree) * s.f_frsize / 1024);
  }
  /// Room for `extra_k` KiB more than what is there now.
  bool leaveRoom(int64_t extra_k) { return remount(QString("size=%1k").arg(used_k() + extra_k)); }
  bool remount(const QString& options) { return sh({"mount", "-o", "remount," + options, dir_}); }

 private:
  QString dir_, error_;
  bool mounted_ = false;
};

/// Every regular file below `root` (relative path → bytes); empty when `root` is absent.
inline std::map<std::string, std::string> snapshot(const QString& root) {
  namespace fs = std::filesystem;
  std::map<std::string, std::string> out;
  std::error_code ec;
  const fs::path r(root.toStdString());
  if (!fs::exists(r)) return out;
  for (const auto& e : fs::recursive_directory_iterator(r, ec))
    if (e.is_regular_file()) out[fs::relative(e.path(), r).string()] = read_all(e.path());
  return out;
}

/// Staging folders, temporary files and moved-aside outputs left below `root`.
inline QStringList leftovers(const QString& root) {
  namespace fs = std::filesystem;
  QStringList out;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(root.toStdString(), ec)) {
    const auto name = QString::fromStdString(e.path().filename().string());
    if (name.contains(".tmp-") || name.contains(".old-") || name.endsWith(".tmp") ||
        name.endsWith(".export"))
      out << QString::fromStdString(e.path().string());
  }
  return out;
}

}  // namespace lorashear::test
