#include "lorashear/io/safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>

#include "io/io_internal.h"
#include "lorashear/errors.h"

namespace lorashear {

namespace {

using nlohmann::json;

struct DtypeInfo {
  const char* name;
  uint64_t size;
  std::optional<torch::Dtype> torch_dtype;  // empty: valid in the format, no LibTorch equivalent
};

const DtypeInfo kDtypes[] = {
    {"F64", 8, torch::kFloat64},   {"F32", 4, torch::kFloat32},  {"F16", 2, torch::kFloat16},
    {"BF16", 2, torch::kBFloat16}, {"I64", 8, torch::kInt64},    {"I32", 4, torch::kInt32},
    {"I16", 2, torch::kInt16},     {"I8", 1, torch::kInt8},      {"U8", 1, torch::kUInt8},
    {"BOOL", 1, torch::kBool},     {"U16", 2, std::nullopt},     {"U32", 4, std::nullopt},
    {"U64", 8, std::nullopt},      {"F8_E4M3", 1, std::nullopt}, {"F8_E5M2", 1, std::nullopt},
};

const DtypeInfo* find_dtype(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

const DtypeInfo* find_dtype(torch::Dtype t) {
  for (const auto& d : kDtypes)
    if (d.torch_dtype && *d.torch_dtype == t) return &d;
  return nullptr;
}

// Header sizes beyond this are not produced by any writer; refusing them avoids parsing garbage.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;
constexpr uint64_t kChunkBytes = 16ull << 20;

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_mul_overflow(a, b, out);
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path)
    : file_(std::make_shared<MappedFile>(path)) {
  const uint64_t size = file_->size();
  const std::string& p = file_->path();
  if (size < 8)
    throw InputError(p + ": not a safetensors file: " + std::to_string(size) +
                     " bytes, shorter than the 8-byte header length");
  uint64_t header_len = 0;
  std::memcpy(&header_len, file_->data(), 8);  // little-endian, as is every supported host
  if (header_len > size - 8)
    throw InputError(p + ": header length " + std::to_string(header_len) +
                     " bytes is beyond the file size " + std::to_string(size) +
                     " bytes (truncated file?)");
  if (header_len > kMaxHeaderBytes)
    throw InputError(p + ": header length " + std::to_string(header_len) +
                     " bytes exceeds the 100 MiB limit");
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = size - data_start;

  json header;
  try {
    const auto* h = reinterpret_cast<const char*>(file_->data() + 8);
    header = json::parse(h, h + header_len);
  } catch (const json::exception& e) {
    throw InputError(p + ": header is not valid JSON: " + e.what());
  }
  if (!header.is_object()) throw InputError(p + ": header is not a JSON object");

  for (const auto& [name, v] : header.items()) {
    if (name == "__metadata__") {
      if (!v.is_object()) throw InputError(p + ": __metadata__ is not an object of strings");
      for (const auto& [k, mv] : v.items()) {
        if (!mv.is_string())
          throw InputError(p + ": __metadata__ entry '" + k + "' is not a string");
        metadata_[k] = mv.get<std::string>();
      }
      continue;
    }
    const std::string where = p + ": tensor '" + name + "': ";
    if (!v.is_object()) throw InputError(where + "entry is not an object");
    if (!v.contains("dtype") || !v["dtype"].is_string())
      throw InputError(where + "missing or non-string 'dtype'");
    if (!v.contains("shape") || !v["shape"].is_array())
      throw InputError(where + "missing or non-array 'shape'");
    if (!v.contains("data_offsets") || !v["data_offsets"].is_array() ||
        v["data_offsets"].size() != 2 || !v["data_offsets"][0].is_number_unsigned() ||
        !v["data_offsets"][1].is_number_unsigned())
      throw InputError(where + "'data_offsets' must be two non-negative integers");

    SafetensorsEntry e;
    e.name = name;
    e.dtype = v["dtype"].get<std::string>();
    const DtypeInfo* info = find_dtype(e.dtype);
    if (info == nullptr) throw InputError(where + "unknown dtype '" + e.dtype + "'");
    uint64_t numel = 1;
    for (const auto& d : v["shape"]) {
      if (!d.is_number_unsigned() ||
          d.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
        throw InputError(where + "shape entries must be non-negative integers");
      const uint64_t dim = d.get<uint64_t>();
      if (mul_overflows(numel, dim, &numel)) throw InputError(where + "shape is too large");
      e.shape.push_back(static_cast<int64_t>(dim));
    }
    uint64_t nbytes = 0;
    if (mul_overflows(numel, info->size, &nbytes)) throw InputError(where + "shape is too large");
    const uint64_t b = v["data_offsets"][0].get<uint64_t>();
    const uint64_t en = v["data_offsets"][1].get<uint64_t>();
    if (b > en)
      throw InputError(where + "data offsets [" + std::to_string(b) + ", " + std::to_string(en) +
                       ") are reversed");
    if (en > data_size)
      throw InputError(where + "data offsets [" + std::to_string(b) + ", " + std::to_string(en) +
                       ") are beyond the data section of " + std::to_string(data_size) +
                       " bytes (truncated file?)");
    if (en - b != nbytes)
      throw InputError(where + "shape " + io::shape_str(e.shape) + " of " + e.dtype + " needs " +
                       std::to_string(nbytes) + " bytes, but its data offsets span " +
                       std::to_string(en - b));
    e.begin = data_start + b;
    e.end = data_start + en;
    entries_.push_back(std::move(e));
  }

  // File order: loaders walk the mapping front to back.
  std::sort(entries_.begin(), entries_.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  size_t last = 0;  // the entry reaching furthest so far (zero-sized entries overlap nothing)
  for (size_t i = 1; i < entries_.size(); ++i) {
    const auto& prev = entries_[last];
    const auto& cur = entries_[i];
    if (cur.end > cur.begin && cur.begin < prev.end)
      throw InputError(p + ": tensors '" + prev.name + "' and '" + cur.name + "' overlap (bytes [" +
                       std::to_string(prev.begin - data_start) + ", " +
                       std::to_string(prev.end - data_start) + ") and [" +
                       std::to_string(cur.begin - data_start) + ", " +
                       std::to_string(cur.end - data_start) + "))");
    if (cur.end > prev.end) last = i;
  }
  for (size_t i = 0; i < entries_.size(); ++i)
    index_.emplace(entries_[i].name, i);
}

const SafetensorsEntry* SafetensorsFile::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

torch::Tensor SafetensorsFile::view(const SafetensorsEntry& e) const {
  const DtypeInfo* info = find_dtype(e.dtype);
  if (info == nullptr || !info->torch_dtype)
    throw InputError(path() + ": tensor '" + e.name + "': dtype " + e.dtype +
                     " has no LibTorch equivalent");
  // The mapping is read-only; callers only read through the view.
  auto* ptr = const_cast<uint8_t*>(file_->data() + e.begin);
  return torch::from_blob(ptr, e.shape, torch::TensorOptions().dtype(*info->torch_dtype));
}

namespace io {

void write_safetensors_as(const std::string& path,
                          const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                          std::optional<torch::Dtype> dtype,
                          const std::map<std::string, std::string>& metadata,
                          const TaskContext* ctx) {
  struct Planned {
    const std::string* name;
    torch::Tensor tensor;
    torch::Dtype dtype;
    const DtypeInfo* info;
    uint64_t begin = 0, end = 0;
  };
  std::vector<Planned> plan;
  plan.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    if (name.empty() || name == "__metadata__")
      throw UsageError(path + ": invalid tensor name '" + name + "'");
    if (!t.defined()) throw UsageError(path + ": tensor '" + name + "' is undefined");
    const torch::Dtype dt = dtype && t.is_floating_point() ? *dtype : t.scalar_type();
    const DtypeInfo* info = find_dtype(dt);
    if (info == nullptr)
      throw UsageError(path + ": tensor '" + name + "': dtype " + std::string(c10::toString(dt)) +
                       " cannot be written to safetensors");
    plan.push_back({&name, t.detach(), dt, info});
  }
  // Sorted header (and data in the same order) so equal models give byte-identical files.
  std::sort(plan.begin(), plan.end(),
            [](const auto& a, const auto& b) { return *a.name < *b.name; });
  for (size_t i = 1; i < plan.size(); ++i)
    if (*plan[i].name == *plan[i - 1].name)
      throw UsageError(path + ": duplicate tensor name '" + *plan[i].name + "'");

  nlohmann::json header = nlohmann::json::object();
  uint64_t offset = 0;
  for (auto& pl : plan) {
    pl.begin = offset;
    pl.end = offset + static_cast<uint64_t>(pl.tensor.numel()) * pl.info->size;
    offset = pl.end;
    header[*pl.name] = {{"dtype", pl.info->name},
                        {"shape", pl.tensor.sizes().vec()},
                        {"data_offsets", {pl.begin, pl.end}}};
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');
  const uint64_t header_len = h.size();

  AtomicFile out(path);
  out.write(&header_len, 8);
  out.write(h.data(), h.size());
  for (size_t i = 0; i < plan.size(); ++i) {
    task_check(ctx);
    task_report(ctx, "save", static_cast<int64_t>(i), static_cast<int64_t>(plan.size()),
                *plan[i].name);
    const auto& pl = plan[i];
    torch::Tensor t = pl.tensor.dim() == 0 ? pl.tensor.reshape({1}) : pl.tensor;
    const int64_t rows = t.size(0);
    if (rows == 0 || t.numel() == 0) continue;
    const uint64_t row_bytes = static_cast<uint64_t>(t.numel() / rows) * pl.info->size;
    const int64_t step =
        std::max<int64_t>(1, static_cast<int64_t>(kChunkBytes / std::max<uint64_t>(row_bytes, 1)));
    for (int64_t r = 0; r < rows; r += step) {
      // A no-op for CPU-contiguous tensors already in the target dtype.
      auto chunk = t.narrow(0, r, std::min(step, rows - r)).to(torch::kCPU, pl.dtype).contiguous();
      out.write(chunk.data_ptr(), chunk.nbytes());
    }
  }
  if (out.written() != 8 + header_len + offset)
    throw Error(path + ": internal error: wrote " + std::to_string(out.written()) +
                " bytes, expected " + std::to_string(8 + header_len + offset));
  out.commit();
  task_report(ctx, "save", static_cast<int64_t>(plan.size()), static_cast<int64_t>(plan.size()));
}

}  // namespace io

void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata, const TaskContext* ctx) {
  io::write_safetensors_as(path, tensors, std::nullopt, metadata, ctx);
}

}  // namespace lorashear
