#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <vector>

#include <zlib.h>
#include <nlohmann/json.hpp>

#include "io/io_internal.h"
#include "lorashear/errors.h"
#include "lorashear/io/checkpoint.h"
#include "lorashear/io/files.h"

namespace lorashear::io {

namespace {

namespace fs = std::filesystem;

const std::string kStartOver = ": start the run over without --resume";
// In a run's checkpoint folder: the output about to be committed (mark_output_committing).
const char* const kCommittedMark = "committed.json";

struct FileSum {
  uint64_t bytes = 0;
  uint32_t crc = 0;
};

// Size and CRC-32 of a file; `error` (not thrown here) when it cannot be read.
FileSum sum_file(const fs::path& p, std::string* error) {
  FileSum s;
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(p.c_str(), "rb"), &std::fclose);
  if (!f) {
    *error = std::strerror(errno);
    return s;
  }
  std::vector<char> buf(1 << 20);
  size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), f.get())) > 0) {
    s.crc = crc32(buf.data(), n, s.crc);
    s.bytes += n;
  }
  if (std::ferror(f.get())) *error = std::strerror(errno);
  return s;
}

std::string hex(uint32_t v) {
  char b[9];
  std::snprintf(b, sizeof b, "%08x", v);
  return b;
}

// The manifest's own checksum: of its compact dump without the "crc32" key (keys sorted).
std::string manifest_crc(nlohmann::json j) {
  j.erase("crc32");
  const std::string d = j.dump();
  return hex(crc32(d.data(), d.size()));
}

}  // namespace

uint32_t crc32(const void* data, size_t len, uint32_t crc) {
  // zlib's (the CRC-32 of zip and PNG), word-at-a-time: checkpoints of real models are gigabytes,
  // read twice (written, then checked on resume).
  if (len == 0) return crc;  // zlib answers 0 to a null buffer, whatever `crc` was
  return static_cast<uint32_t>(
      ::crc32_z(crc, static_cast<const Bytef*>(data), static_cast<z_size_t>(len)));
}

void write_checkpoint_manifest(const std::string& dir) {
  nlohmann::json files = nlohmann::json::object();
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name == kCheckpointManifest || !e.is_regular_file()) continue;
    std::string error;
    const auto s = sum_file(e.path(), &error);
    if (!error.empty()) throw Error(e.path().string() + ": cannot read it back: " + error);
    files[name] = {{"bytes", s.bytes}, {"crc32", hex(s.crc)}};
  }
  if (ec) throw Error(dir + ": cannot list: " + ec.message());
  nlohmann::json m = {{"format", "lorashear-checkpoint"},
                      {"version", kRunCheckpointVersion},
                      {"lorashear", LORASHEAR_VERSION},
                      {"files", files}};
  m["crc32"] = manifest_crc(m);
  write_file_atomic((fs::path(dir) / kCheckpointManifest).string(), m.dump(2) + "\n");
}

void verify_checkpoint(const std::string& dir) {
  sweep_staging(dir);  // a kill between a commit's two renames left `dir` moved aside
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return;
  const std::string manifest_path = (fs::path(dir) / kCheckpointManifest).string();
  if (!fs::exists(manifest_path, ec))
    throw InputError("checkpoint " + manifest_path +
                     " is missing (written by a lorashear older than checkpoint format " +
                     std::to_string(kRunCheckpointVersion) + ", or damaged)" + kStartOver);
  nlohmann::json m;
  try {
    m = nlohmann::json::parse(read_small_file(manifest_path));
  } catch (const nlohmann::json::exception&) {
    throw InputError("checkpoint " + manifest_path + " is corrupt (not valid JSON)" + kStartOver);
  }
  if (!m.is_object() || m.value("format", std::string()) != "lorashear-checkpoint" ||
      !m.contains("crc32") || !m["crc32"].is_string() || !m.contains("files") ||
      !m["files"].is_object())
    throw InputError("checkpoint " + manifest_path +
                     " is corrupt (not a lorashear checkpoint manifest)" + kStartOver);
  if (m["crc32"].get<std::string>() != manifest_crc(m))
    throw InputError("checkpoint " + manifest_path + " is corrupt (checksum mismatch)" +
                     kStartOver);
  const auto version = m.value("version", nlohmann::json());
  if (version != kRunCheckpointVersion) {
    const auto written_by = m.value("lorashear", nlohmann::json());
    throw InputError("checkpoint " + dir + " was written by another version of lorashear (" +
                     (written_by.is_string() ? written_by.get<std::string>() : "unknown") +
                     ", checkpoint format " + version.dump() +
                     "; this is " LORASHEAR_VERSION ", format " +
                     std::to_string(kRunCheckpointVersion) + ")" + kStartOver);
  }
  for (const auto& [name, entry] : m["files"].items()) {
    const fs::path p = fs::path(dir) / name;
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == ".." ||
        !entry.is_object() || !entry.contains("bytes") || !entry["bytes"].is_number_unsigned() ||
        !entry.contains("crc32") || !entry["crc32"].is_string())
      throw InputError("checkpoint " + manifest_path + " is corrupt (bad entry '" + name + "')" +
                       kStartOver);
    if (!fs::exists(p, ec))
      throw InputError("checkpoint " + p.string() + " is missing" + kStartOver);
    std::string error;
    const auto s = sum_file(p, &error);
    if (!error.empty())
      throw InputError("checkpoint " + p.string() + " cannot be read: " + error + kStartOver);
    const auto bytes = entry["bytes"].get<uint64_t>();
    if (s.bytes != bytes)
      throw InputError("checkpoint " + p.string() + " is corrupt (" + std::to_string(s.bytes) +
                       " bytes, " + std::to_string(bytes) + " were written)" + kStartOver);
    if (hex(s.crc) != entry["crc32"].get<std::string>())
      throw InputError("checkpoint " + p.string() + " is corrupt (checksum mismatch)" + kStartOver);
  }
}

void mark_output_committing(const std::string& checkpoint_dir, const std::string& report_path,
                            const std::string& report_text) {
  std::error_code ec;
  if (!fs::is_directory(checkpoint_dir, ec)) return;
  const nlohmann::json mark = {{"report", fs::absolute(report_path, ec).string()},
                               {"crc32", hex(crc32(report_text.data(), report_text.size()))}};
  write_file_atomic((fs::path(checkpoint_dir) / kCommittedMark).string(), mark.dump(2) + "\n");
}

std::string output_committed(const std::string& checkpoint_dir) {
  const auto path = fs::path(checkpoint_dir) / kCommittedMark;
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return {};
  try {
    const auto mark = nlohmann::json::parse(read_small_file(path.string()));
    const auto report = mark.at("report").get<std::string>();
    std::string error;
    const auto sum = sum_file(report, &error);
    if (!error.empty() || hex(sum.crc) != mark.at("crc32").get<std::string>()) return {};
    return report;
  } catch (const std::exception&) {
    return {};  // a damaged mark: resume as usual, the checkpoint is checked on its own
  }
}

}  // namespace lorashear::io
