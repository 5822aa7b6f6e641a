#include <unistd.h>

#include <cerrno>
#include <cstdio>
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

StagedDirectory::StagedDirectory(const std::string& dir, bool overwrite) {
  namespace fs = std::filesystem;
  const fs::path out = fs::absolute(fs::path(dir)).lexically_normal();
  if (out.filename().empty()) throw UsageError("bad output directory '" + dir + "'");
  if (fs::exists(out) && !overwrite)
    throw UsageError(dir + " already exists (pass --overwrite to replace it)");
  std::error_code ec;
  fs::create_directories(out.parent_path(), ec);
  const fs::path tmp =
      out.parent_path() / ("." + out.filename().string() + ".tmp-" + std::to_string(::getpid()));
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
    const fs::path old =
        out.parent_path() / ("." + out.filename().string() + ".old-" + std::to_string(::getpid()));
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
