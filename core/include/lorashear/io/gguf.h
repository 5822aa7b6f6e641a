#pragma once
// GGUF export for llama.cpp (and everything built on it: Ollama, LM Studio, node-llama-cpp), the
// metadata of a GGUF file, and which tools load a model of a given shape. Torch-free, so the UI
// can include it.
//
// Every layer the same size → `general.architecture = "llama"` with scalar keys, as llama.cpp's own
// converter writes. Layers of different sizes → `"deci"`, the architecture llama.cpp uses for
// NVIDIA's pruned Llama derivatives: `deci.attention.head_count`, `deci.attention.head_count_kv`
// and `deci.feed_forward_length` are int32 arrays with one entry per layer. Qwen2 / Qwen3 models →
// `"qwen2"` / `"qwen3"` (q/k/v biases, q/k norms, rotate-half RoPE), which llama.cpp sizes with one
// value for every layer (deci has neither biases nor q/k norms), so only uniformly pruned Qwen
// models are written. Byte-level BPE tokenizers (tokenizer.json) are written as llama.cpp's
// `"gpt2"` model with merges, `tokenizer.ggml.pre` and the whole tokenizer.json
// (`tokenizer.huggingface.json`); Llama 3.1 RoPE scaling as `rope_freqs.weight`.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "lorashear/model/config.h"
#include "lorashear/task.h"

namespace lorashear {

class LlamaModelImpl;
class Tokenizer;

/// Tensor encodings of a GGUF export. Norms (1-D tensors) are always F32; Q8_0 is llama.cpp's
/// block format (32 weights and one f16 scale); a matrix whose rows are not whole blocks of 32 is
/// written F16 instead (as llama.cpp's converter does).
enum class GgufDtype { F32, F16, BF16, Q8_0 };
/// "f32", "f16", "bf16", "q8_0" (also "fp32", "float16", … ); throws UsageError otherwise.
GgufDtype parse_gguf_dtype(const std::string& name);
std::string gguf_dtype_name(GgufDtype dtype);  ///< "f32", "f16", "bf16", "q8_0"

/// The GGUF architecture llama.cpp needs for this shape: "qwen2" / "qwen3" for those families,
/// else "llama" when every layer has the same dims (a fully removed MLP counts as width 1, see
/// save_gguf), else "deci".
std::string gguf_architecture(const ModelConfig& cfg);
/// Why llama.cpp cannot run this shape, or empty when it can.
std::string gguf_unsupported_reason(const ModelConfig& cfg);

/// One tool and whether the model, as it is, loads there: e.g. {"llama.cpp", true, "deci"} or
/// {"transformers / vLLM", false, "needs the same size in every layer"}.
struct LoadTarget {
  std::string tool;
  bool ok = false;
  std::string detail;
  std::string text() const;  ///< "llama.cpp ✓ (deci)", "transformers / vLLM: needs …"
};
/// Where a model of this shape loads: llama.cpp (GGUF export) and transformers / vLLM (the Hugging
/// Face layout, which has one size for every layer).
std::vector<LoadTarget> load_targets(const ModelConfig& cfg);

struct GgufSaveOptions {
  GgufDtype dtype = GgufDtype::F32;
  std::string name;  ///< general.name; empty = "lorashear"
  /// Byte-level BPE: also store the whole tokenizer.json (`tokenizer.huggingface.json`), so the
  /// file reads back with exactly the original tokenizer (normaliser included). Large for big
  /// vocabularies (11 MB for Qwen3); without it the tokenizer is rebuilt as llama.cpp reads it.
  bool embed_tokenizer_json = true;
};

/// What save_gguf wrote.
struct GgufSaveReport {
  std::string architecture;  ///< "llama", "deci", "qwen2" or "qwen3"
  GgufDtype dtype = GgufDtype::F32;
  uint64_t bytes = 0;               ///< file size
  int64_t tensors = 0;              ///< tensors written
  std::vector<std::string> as_f16;  ///< Q8_0 export: matrices written F16 (rows not whole blocks)
  std::vector<std::string> notes;   ///< shape adjustments made for llama.cpp, one line each
};

/// Writes `model` (an attached, unmerged LoRA adapter is merged into the written weights; the model
/// is not modified) and its SentencePiece vocabulary to `path` in GGUF v3. Q and K rows are
/// written in llama.cpp's RoPE order. A layer whose MLP was removed entirely is written with width
/// 1 and a zero `ffn_down` column (llama.cpp drops a layer's attention output with width 0); this
/// is exact. The file is written beside `path` and renamed into place: an error, a full disk or a
/// cancel leaves no partial file and an existing file untouched. Throws UsageError when there is no
/// tokenizer or llama.cpp cannot run the shape (gguf_unsupported_reason), Error naming the path
/// when it cannot be written, CancelledError on cancel.
GgufSaveReport save_gguf(const LlamaModelImpl& model, const Tokenizer* tokenizer,
                         const std::string& path, const GgufSaveOptions& options = {},
                         const TaskContext* ctx = nullptr);

/// The metadata of a GGUF file as (key, value) text, in file order; long arrays are shortened
/// ("[512 strings: <unk>, <s>, </s>, …]"). Throws InputError naming the file when it is not GGUF.
std::vector<std::pair<std::string, std::string>> gguf_metadata(const std::string& path);

}  // namespace lorashear
