#pragma once
// Model loading with the format chosen from the path, and export to the Hugging Face layout.

#include <torch/torch.h>

#include <memory>
#include <string>

#include "lorashear/model/llama.h"
#include "lorashear/task.h"
#include "lorashear/tokenizer/tokenizer.h"

namespace lorashear {

enum class ModelFormat { HuggingFace, Llama2c, Gguf };
std::string format_name(ModelFormat f);  ///< "huggingface", "llama2c", "gguf"

/// Directory with config.json → HuggingFace; *.gguf or GGUF magic → Gguf; *.bin → Llama2c.
/// Throws InputError when the path does not exist or matches no format.
ModelFormat detect_format(const std::string& path);
/// The config.json to read when `path` describes a model without weights: a `.json` file, or a
/// directory holding config.json but no weight files. Empty otherwise.
std::string config_only_path(const std::string& path);

struct LoadOptions {
  ModelOptions model;  ///< device and storage dtype of the loaded model
  std::string
      tokenizer_path;  ///< explicit tokenizer file; empty = look beside the model / inside it
  bool require_tokenizer = false;  ///< throw InputError when no tokenizer is found
  /// A LoRA adapter in the PEFT layout (adapter_config.json + adapter_model.safetensors) to attach
  /// after loading, unmerged; empty = none.
  std::string adapter_path;
  /// Parameters stored in the model's dtype, loaded to the CPU without reordering, view the
  /// memory-mapped file instead of a copy (copy-on-write: writing to one copies only the pages
  /// written; the file never changes). The file must then not be rewritten in place while the
  /// model lives (replacing it by a rename, as every writer here does, is fine). Off: every
  /// tensor is copied and the file is free once loading returns.
  bool map_weights = false;
  /// Ignore model.dtype and keep the checkpoint's: see checkpoint_dtype.
  bool keep_checkpoint_dtype = false;
};

/// The dtype a checkpoint is computed in when its own is kept (`--dtype auto`): bf16 when every
/// weight matrix is stored in bf16; fp16 when every one is fp16 and the device is CUDA (the CPU
/// kernels of this LibTorch have no fp16 matrix products); fp32 otherwise (fp32, mixed, Q8_0).
/// `matrix_dtypes`: the stored dtype names ("F32", "BF16", …) of the 2-D tensors.
torch::Dtype checkpoint_dtype(const std::vector<std::string>& matrix_dtypes,
                              const torch::Device& device);

/// checkpoint_dtype for a configuration without weights, from config.json's `torch_dtype`
/// (`stored_dtype`: "bfloat16", "float16", anything else as float32), as the loader would decide
/// once the weights are there (plan-memory, the app's "as stored" on a config.json).
torch::Dtype config_dtype(const ModelConfig& config, const torch::Device& device);

struct LoadedModel {
  LlamaModel model{nullptr};
  std::shared_ptr<Tokenizer> tokenizer;  ///< may be null when none was found
  ModelFormat format = ModelFormat::HuggingFace;
  std::string path;
  std::string source_dtype;  ///< dtype of the weights on disk, e.g. "F32"
  std::string adapter_path;  ///< the attached adapter, if any
};

/// Loads a model (memory-mapped; each tensor is copied into place chunk by chunk, so the checkpoint
/// is never held twice). RoPE rows of llama2.c/GGUF (interleaved pairs) are permuted to
/// rotate-half. Throws InputError naming the file and tensor/field on any inconsistency;
/// CancelledError on cancel.
LoadedModel load_model(const std::string& path, const LoadOptions& opts = {},
                       const TaskContext* ctx = nullptr);

struct SaveOptions {
  torch::Dtype dtype = torch::kFloat32;  ///< dtype written to model.safetensors
  int64_t max_shard_bytes = 0;  ///< >0: shard into model-0000i-of-0000n.safetensors + index
};

/// Writes config.json, model.safetensors (or shards + index), the tokenizer when given
/// (tokenizer.model, or tokenizer.json + tokenizer_config.json for a tokenizer.json one) and
/// generation_config.json into `dir` (created). Each file is written to a temporary name and
/// renamed.
void save_hf(const LlamaModelImpl& model, const Tokenizer* tokenizer, const std::string& dir,
             const SaveOptions& opts = {}, const TaskContext* ctx = nullptr);

}  // namespace lorashear
