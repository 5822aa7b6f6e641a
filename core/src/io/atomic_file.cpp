#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "io/io_internal.h"
#include "lorashear/errors.h"

namespace lorashear::io {

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp") {
  f_ = std::fopen(tmp_.c_str(), "wb");
  if (f_ == nullptr) throw Error(path_ + ": cannot create " + tmp_ + ": " + std::strerror(errno));
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
  throw Error(path_ + ": " + what + ": " + std::strerror(err));
}

void AtomicFile::write(const void* data, size_t len) {
  if (len == 0) return;
  if (f_ == nullptr) throw Error(path_ + ": write after failure");
  if (std::fwrite(data, 1, len, f_) != len) fail("write failed");
  written_ += len;
}

void AtomicFile::commit() {
  if (f_ == nullptr) throw Error(path_ + ": commit after failure");
  // stdio buffers: a full disk often shows up only here.
  if (std::fflush(f_) != 0) fail("write failed");
  if (::fsync(::fileno(f_)) != 0 && errno != EINVAL) fail("sync failed");
  const int rc = std::fclose(f_);
  f_ = nullptr;
  if (rc != 0) fail("write failed");
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) fail("cannot rename " + tmp_);
  committed_ = true;
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  AtomicFile f(path);
  f.write(bytes.data(), bytes.size());
  f.commit();
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

StagedDirectory::StagedDirectory(const std::string& dir, bool overwrite) {
  namespace fs = std::filesystem;
  const fs::path out = fs::absolute(fs::path(dir)).lexically_normal();
  if (out.filename().empty()) throw UsageError("bad output directory '" + dir + "'");
  sweep_stale_staging(out);
  if (fs::exists(out) && !overwrite)
    throw UsageError(dir + " already exists (pass --overwrite to replace it)");
  std::error_code ec;
  fs::create_directories(out.parent_path(), ec);
  const fs::path tmp = out.parent_path() / ("." + out.filename().string() + ".tmp-" + host_name() +
                                            "-" + std::to_string(::getpid()));
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) throw Error(dir + ": cannot create " + tmp.string() + ": " + ec.message());
  target_ = out.string();
  tmp_ = tmp.string();
}

StagedDirectory::~StagedDirectory() {
  if (committed_) return;
  std::error_code ec;
  std::filesystem::remove_all(tmp_, ec);
}

void StagedDirectory::commit() {
  namespace fs = std::filesystem;
  const fs::path out(target_);
  std::error_code ec;
  if (fs::exists(out)) {
    const fs::path old = out.parent_path() / ("." + out.filename().string() + ".old-" +
                                              host_name() + "-" + std::to_string(::getpid()));
    fs::remove_all(old, ec);
    fs::rename(out, old, ec);
    if (ec) throw Error(target_ + ": cannot move the old directory aside: " + ec.message());
    fs::rename(tmp_, out, ec);
    if (ec) {
      fs::rename(old, out);
      throw Error(target_ + ": cannot put the new directory in place: " + ec.message());
    }
    fs::remove_all(old, ec);
  } else {
    fs::rename(tmp_, out, ec);
    if (ec) throw Error(target_ + ": cannot put the new directory in place: " + ec.message());
  }
  committed_ = true;
}

}  // namespace lorashear::io
