#pragma once
// Internals shared by the checkpoint readers and writers in core/src/io (not installed).

#include <torch/torch.h>

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "lorashear/io/files.h"
#include "lorashear/io/loader.h"
#include "lorashear/io/safetensors.h"
#include "lorashear/model/llama.h"
#include "lorashear/task.h"

namespace lorashear::io {

/// "[a, b, c]".
std::string shape_str(const std::vector<int64_t>& shape);
std::string shape_str(torch::IntArrayRef shape);

/// Element encodings the loaders can copy into a model parameter.
enum class SourceType { F32, F16, BF16, Q8_0 };
std::string source_type_name(SourceType t);  ///< "F32", "F16", "BF16", "Q8_0"

/// One stored tensor and the model parameter it fills. `shape` is in torch order ([rows, cols]).
struct TensorSource {
  std::string param;   ///< Hugging Face parameter name in the model
  std::string origin;  ///< name in the file, for messages
  const MappedFile* file = nullptr;
  /// The mapping's owner: a parameter that views the file directly keeps it alive.
  std::shared_ptr<MappedFile> owner;
  uint64_t offset = 0;  ///< absolute byte offset in the file
  uint64_t nbytes = 0;
  SourceType type = SourceType::F32;
  std::vector<int64_t> shape;
  /// >0: rows are grouped in heads of this size in interleaved-pair RoPE order (llama2.c, GGUF)
  /// and are permuted to the rotate-half order of Hugging Face while copying.
  int64_t rope_head_dim = 0;
};

/// Bytes per row (the product of all but the first dim) of `src`, in the file's encoding.
uint64_t source_bytes(SourceType t, int64_t numel);

/// Throws InputError "<file>: tensor 'x': expected shape [..], found [..]" unless `src` matches the
/// model parameter; also checks the byte size against the shape.
void check_source(const LlamaModelImpl& model, const TensorSource& src);

/// Copies every source into its parameter, chunk by chunk (≤ ~16 MiB of file bytes at a time),
/// converting dtype/device during the copy and releasing consumed pages of the mapping. Checks that
/// every model parameter is filled exactly once (those in `prefilled` were set by the caller).
/// Reports progress as stage "load".
/// With `opts.map_weights`, a source already in the parameter's dtype and layout, for a CPU
/// parameter, on an aligned offset of a writable mapping, becomes the parameter's storage (the
/// parameter keeps `owner` alive) instead of being copied.
void copy_sources(LlamaModelImpl& model, const std::vector<TensorSource>& sources,
                  const LoadOptions& opts, const TaskContext* ctx,
                  const std::set<std::string>& prefilled = {});
/// `opts.model` with the checkpoint's dtype when `opts.keep_checkpoint_dtype`.
ModelOptions model_options_for(const LoadOptions& opts,
                               const std::vector<std::string>& matrix_dtypes);

/// Loads a tokenizer from an explicit file: *.bin → llama2.c layout (`vocab_size` entries), else
/// SentencePiece model.
std::shared_ptr<Tokenizer> load_tokenizer_file(const std::string& path, int64_t vocab_size);

/// Throws InputError when `cfg` declares more parameters than `stored_bytes` (the weight files'
/// tensor bytes) can hold, before a model of that size is allocated (a small file with a huge
/// config must not reserve gigabytes).
void check_model_fits_weights(const ModelConfig& cfg, uint64_t stored_bytes,
                              const std::string& source);
/// Throws InputError when the tokenizer has more pieces than the model has embedding rows.
void check_tokenizer_fits(const Tokenizer& tok, const ModelConfig& cfg, const std::string& source);

/// Format loaders (called by load_model once the format is known).
LoadedModel load_hf(const std::string& dir, const LoadOptions& opts, const TaskContext* ctx);
LoadedModel load_llama2c(const std::string& path, const LoadOptions& opts, const TaskContext* ctx);
LoadedModel load_gguf(const std::string& path, const LoadOptions& opts, const TaskContext* ctx);

/// `path` as a message shows it: a path inside a live StagedDirectory's staging folder is shown at
/// its final place (`OUT/model.safetensors`, not `.OUT.tmp-HOST-PID/model.safetensors`).
std::string shown_path(const std::string& path);

/// A file written under `path + ".tmp"` and renamed onto `path` by commit(); the temporary is
/// removed when the object dies uncommitted (error, cancel). Failures (cannot create, a short
/// write, a failed flush, sync, close or rename: a full disk) throw Error "PATH: what: the system's
/// reason", PATH as shown_path() shows it; the temporary file is removed first.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  void write(const void* data, size_t len);
  uint64_t written() const { return written_; }
  /// Flushes, syncs and renames onto the final path.
  void commit();

 private:
  void fail(const std::string& what);
  std::string path_;
  std::string tmp_;
  std::FILE* f_ = nullptr;
  uint64_t written_ = 0;
  bool committed_ = false;
};

/// write_safetensors with an optional dtype conversion done row-chunk by row-chunk, so a converted
/// copy of a whole large tensor never exists in memory.
void write_safetensors_as(const std::string& path,
                          const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                          std::optional<torch::Dtype> dtype,
                          const std::map<std::string, std::string>& metadata,
                          const TaskContext* ctx);

/// Reads a whole (small) file; throws InputError naming it when unreadable.
std::string read_small_file(const std::string& path);

}  // namespace lorashear::io
