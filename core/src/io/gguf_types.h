#pragma once
// GGUF constants shared by the reader (gguf.cpp) and the writer (save_gguf.cpp).

#include <cstdint>

namespace lorashear::io::gguf {

/// Metadata value types (gguf.h's gguf_type).
enum ValueType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};

/// ggml tensor types the project reads and writes (ggml.h's ggml_type).
enum TensorType : uint32_t {
  kTypeF32 = 0,
  kTypeF16 = 1,
  kTypeQ8_0 = 8,
  kTypeBF16 = 30,
};

/// general.file_type (llama.h's llama_ftype).
enum FileType : uint32_t {
  kFileAllF32 = 0,
  kFileMostlyF16 = 1,
  kFileMostlyQ8_0 = 7,
  kFileMostlyBF16 = 32,
};

constexpr uint32_t kVersion = 3;
constexpr uint64_t kAlignment = 32;  ///< general.alignment's default
constexpr int64_t kQ8Block = 32;     ///< weights per Q8_0 block (one f16 scale + 32 int8)

}  // namespace lorashear::io::gguf
