#pragma once
// safetensors reading (memory-mapped, bounds-checked) and writing (temporary file + rename).

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lorashear/task.h"

namespace lorashear {

/// A private memory map of a whole file. Throws InputError when it cannot be opened. The pages
/// are copy-on-write where the kernel allows it (`writable()`): the loader's model parameters
/// then view them directly (no copy), and writes to a parameter (LHSPG's projections, merging an
/// adapter) copy only the pages written, never touching the file.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }
  /// Whether the map may be written (privately). False when the kernel refused a writable map
  /// (strict overcommit accounting of a file larger than the commit limit): read-only then.
  bool writable() const { return writable_; }
  /// Tells the kernel the bytes [offset, offset+len) are no longer needed (drops them from RSS).
  void release(uint64_t offset, uint64_t len) const;

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  bool writable_ = false;
};

/// One tensor inside a safetensors file.
struct SafetensorsEntry {
  std::string name;
  std::string dtype;  ///< "F32", "F16", "BF16", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0;  ///< absolute byte offset in the file
  uint64_t end = 0;
};

/// A parsed, validated safetensors file (header checked: offsets in range, no overlap, sizes
/// match).
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  const std::string& path() const { return file_->path(); }
  /// Entries in file order (ascending offsets).
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  const SafetensorsEntry* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  /// A tensor viewing the mapped bytes (no copy; valid while this object lives). Throws InputError
  /// for dtypes LibTorch lacks (U16/U32/U64/F8).
  torch::Tensor view(const SafetensorsEntry& e) const;
  const MappedFile& mapped() const { return *file_; }
  const std::shared_ptr<MappedFile>& mapped_ptr() const { return file_; }

 private:
  std::shared_ptr<MappedFile> file_;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, size_t> index_;  // name -> position in entries_
};

/// Writes tensors (any device/dtype among F32/F16/BF16/I64/I32) to `path` atomically.
void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {},
                       const TaskContext* ctx = nullptr);

}  // namespace lorashear
