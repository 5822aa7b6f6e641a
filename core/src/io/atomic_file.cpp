#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <utility>
#include <vector>

#include "io/io_internal.h"
#include "lorashear/errors.h"
#include "lorashear/io/archive.h"

namespace lorashear::io {

namespace {

// The staging folders of this process's live StagedDirectory objects and the folders they stand
// for: a message about a file written in one names the file's final place (the staging folder is
// gone once the error is reported).
std::mutex g_staging_mutex;
std::vector<std::pair<std::string, std::string>> g_staging;  // staging folder, target

void register_staging(const std::string& tmp, const std::string& target) {
  std::lock_guard<std::mutex> lock(g_staging_mutex);
  g_staging.emplace_back(tmp, target);
}

void unregister_staging(const std::string& tmp) {
  std::lock_guard<std::mutex> lock(g_staging_mutex);
  for (auto it = g_staging.begin(); it != g_staging.end(); ++it)
    if (it->first == tmp) {
      g_staging.erase(it);
      return;
    }
}

// The staging folder `path` is in (itself or below), or nullptr.
const std::pair<std::string, std::string>* staging_of(const std::string& path) {
  for (const auto& entry : g_staging) {
    const auto& tmp = entry.first;
    if (path.size() >= tmp.size() && path.compare(0, tmp.size(), tmp) == 0 &&
        (path.size() == tmp.size() || path[tmp.size()] == '/'))
      return &entry;
  }
  return nullptr;
}

// "PATH: cannot create: REASON", where a missing folder says which one is missing.
std::string cannot_create(const std::string& path, int err) {
  namespace fs = std::filesystem;
  std::string text = shown_path(path) + ": cannot create: " + std::strerror(err);
  if (err == ENOENT) {
    std::error_code ec;
    const fs::path parent = fs::path(path).parent_path();
    std::lock_guard<std::mutex> lock(g_staging_mutex);
    if (const auto* s = staging_of(parent.string()); s != nullptr && !fs::exists(s->first, ec))
      text += " (the folder being written, " + s->first + ", vanished)";
    else if (!parent.empty() && !fs::exists(parent, ec))
      text += " (the folder " + parent.string() + " does not exist)";
  }
  return text;
}

}  // namespace

std::string shown_path(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_staging_mutex);
  const auto* s = staging_of(path);
  return s == nullptr ? path : s->second + path.substr(s->first.size());
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp") {
  f_ = std::fopen(tmp_.c_str(), "wb");
  if (f_ == nullptr) throw Error(cannot_create(path_, errno));
}

AtomicFile::~AtomicFile() {
  if (f_ != nullptr) std::fclose(f_);
  if (!committed_) std::remove(tmp_.c_str());
}

void AtomicFile::fail(const std::string& what) {
  const int err = errno;
  if (f_ != nullptr) std::fclose(f_);
  f_ = nullptr;
  std::remove(tmp_.c_str());
  throw Error(shown_path(path_) + ": " + what + ": " + std::strerror(err));
}

void AtomicFile::write(const void* data, size_t len) {
  if (len == 0) return;
  if (f_ == nullptr) throw Error(shown_path(path_) + ": write after failure");
  if (std::fwrite(data, 1, len, f_) != len) fail("write failed");
  written_ += len;
}

void AtomicFile::commit() {
  if (f_ == nullptr) throw Error(shown_path(path_) + ": commit after failure");
  // stdio buffers: a full disk often shows up only here (on network filesystems only at close).
  if (std::fflush(f_) != 0) fail("write failed");
  if (::fsync(::fileno(f_)) != 0 && errno != EINVAL) fail("sync failed");
  const int rc = std::fclose(f_);
  f_ = nullptr;
  if (rc != 0) fail("write failed");
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) fail("cannot put the new file in place");
  committed_ = true;
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  AtomicFile f(path);
  f.write(bytes.data(), bytes.size());
  f.commit();
}

void save_archive_atomic(torch::serialize::OutputArchive& archive, const std::string& path) {
  AtomicFile out(path);
  std::string error;
  // LibTorch's zip writer throws from its destructor when a write comes up short, which ends the
  // process (std::terminate): the writer is told every byte was taken and the error is raised
  // here once it is done.
  archive.save_to([&](const void* data, size_t n) -> size_t {
    if (error.empty()) {
      try {
        out.write(data, n);
      } catch (const std::exception& e) {
        error = e.what();
      }
    }
    return n;
  });
  if (!error.empty()) throw Error(error);
  out.commit();
}

std::string read_small_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open: " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw InputError(path + ": read failed");
  return ss.str();
}

namespace {

// This host's name: staging folders carry it, so that on a shared filesystem one host never
// sweeps another's.
std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == 0) return "host";
  std::string h(buf);
  for (auto& c : h)
    if (c == '/' || c == '.') c = '_';
  return h;
}

// Whether process `pid` of this host is gone.
bool process_gone(const std::string& pid_text) {
  if (pid_text.empty() || pid_text.find_first_not_of("0123456789") != std::string::npos)
    return false;
  const long pid = std::strtol(pid_text.c_str(), nullptr, 10);
  return pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
}

// Staging left by a killed run writing `out`: `.NAME.tmp-HOST-PID` folders are removed;
// `.NAME.old-HOST-PID` — the previous output, moved aside just before the new one was renamed
// into place — is put back when the kill came between the two renames, removed otherwise.
// Only this host's dead processes' folders are touched (and the host-less names of older
// versions).
void sweep_stale_staging(const std::filesystem::path& out) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const std::string name = out.filename().string(), host = host_name();
  std::vector<std::pair<fs::path, bool>> stale;  // path, is an old output
  for (const auto& e : fs::directory_iterator(out.parent_path(), ec)) {
    const std::string f = e.path().filename().string();
    for (const bool old : {false, true}) {
      const std::string prefix = "." + name + (old ? ".old-" : ".tmp-");
      if (f.rfind(prefix, 0) != 0) continue;
      std::string owner = f.substr(prefix.size());
      if (owner.rfind(host + "-", 0) == 0)
        owner = owner.substr(host.size() + 1);
      else if (owner.find('-') != std::string::npos)
        continue;  // another host's
      if (process_gone(owner)) stale.emplace_back(e.path(), old);
    }
  }
  for (const auto& [p, old] : stale) {
    if (old && !fs::exists(out, ec)) {
      fs::rename(p, out, ec);
      if (!ec) continue;
    }
    fs::remove_all(p, ec);
  }
}

}  // namespace

void sweep_staging(const std::string& dir) {
  sweep_stale_staging(std::filesystem::absolute(std::filesystem::path(dir)).lexically_normal());
}

StagedDirectory::StagedDirectory(const std::string& dir, bool overwrite) {
  namespace fs = std::filesystem;
  const fs::path out = fs::absolute(fs::path(dir)).lexically_normal();
  if (out.filename().empty()) throw UsageError("bad output directory '" + dir + "'");
  sweep_stale_staging(out);
  if (fs::exists(out) && !overwrite)
    throw UsageError(dir + " already exists (pass --overwrite to replace it)");
  std::error_code ec;
  // The highest missing folder above the target: made now, removed again (when still empty) if
  // nothing is committed, so a failed run leaves no empty folders behind.
  for (fs::path p = out.parent_path(); !p.empty() && !fs::exists(p, ec); p = p.parent_path()) {
    created_ = p.string();
    if (p == p.parent_path()) break;
  }
  fs::create_directories(out.parent_path(), ec);
  const fs::path tmp = out.parent_path() / ("." + out.filename().string() + ".tmp-" + host_name() +
                                            "-" + std::to_string(::getpid()));
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec)
    throw Error(dir + ": cannot create the folder it is written in, " + tmp.string() + ": " +
                ec.message());
  target_ = out.string();
  tmp_ = tmp.string();
  register_staging(tmp_, target_);
}

StagedDirectory::~StagedDirectory() {
  unregister_staging(tmp_);
  if (committed_) return;
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::remove_all(tmp_, ec);
  if (created_.empty()) return;
  for (fs::path p = fs::path(tmp_).parent_path(); !p.empty(); p = p.parent_path()) {
    if (!fs::remove(p, ec) || ec) break;  // not empty (or gone): stop
    if (p == created_) break;
  }
}

void StagedDirectory::commit() {
  namespace fs = std::filesystem;
  const fs::path out(target_);
  std::error_code ec;
  // Deleted from outside while it was written (or its parent was): nothing to put in place, and
  // the previous output must not be moved aside for nothing.
  if (!fs::is_directory(tmp_, ec))
    throw Error(
        target_ + ": the folder being written, " + tmp_ + ", vanished before it was complete" +
        (fs::exists(out.parent_path(), ec) ? "" : " (so did " + out.parent_path().string() + ")"));
  if (fs::exists(out)) {
    const fs::path old = out.parent_path() / ("." + out.filename().string() + ".old-" +
                                              host_name() + "-" + std::to_string(::getpid()));
    fs::remove_all(old, ec);
    fs::rename(out, old, ec);
    if (ec) throw Error(target_ + ": cannot move the old directory aside: " + ec.message());
    fs::rename(tmp_, out, ec);
    if (ec) {
      const std::string why = ec.message();
      std::error_code back;
      fs::rename(old, out, back);
      throw Error(target_ + ": cannot put the new directory in place: " + why);
    }
    fs::remove_all(old, ec);
  } else {
    fs::rename(tmp_, out, ec);
    if (ec) throw Error(target_ + ": cannot put the new directory in place: " + ec.message());
  }
  committed_ = true;
}

}  // namespace lorashear::io
