#include "lorashear/io/loader.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "io/io_internal.h"
#include "lorashear/errors.h"
#include "lorashear/model/lora.h"

namespace fs = std::filesystem;

namespace lorashear {

namespace io {

namespace {

// Source bytes converted per copy_: bounds the temporary (dequantised or device-staged) memory.
constexpr uint64_t kChunkBytes = 16ull << 20;

template <typename Shape>
std::string join_shape(const Shape& shape) {
  std::ostringstream ss;
  ss << '[';
  bool first = true;
  for (const auto d : shape) {
    if (!first) ss << ", ";
    ss << d;
    first = false;
  }
  ss << ']';
  return ss.str();
}

torch::Dtype torch_dtype(SourceType t) {
  switch (t) {
    case SourceType::F32:
      return torch::kFloat32;
    case SourceType::F16:
      return torch::kFloat16;
    case SourceType::BF16:
      return torch::kBFloat16;
    case SourceType::Q8_0:
      break;
  }
  return torch::kFloat32;
}

// A CPU tensor [rows, cols] holding `rows` decoded rows that start at `ptr` (a view of the mapping
// when no decoding is needed).
torch::Tensor decode_rows(const uint8_t* ptr, int64_t rows, int64_t cols, SourceType type) {
  const uint64_t nbytes = source_bytes(type, rows * cols);
  auto* p = const_cast<uint8_t*>(ptr);  // read-only mapping, only read through these views
  const bool aligned = reinterpret_cast<uintptr_t>(ptr) % (type == SourceType::F32 ? 4 : 2) == 0;
  if (type != SourceType::Q8_0) {
    const auto dt = torch_dtype(type);
    if (aligned) return torch::from_blob(p, {rows, cols}, dt);
    // safetensors does not align tensor data; LibTorch kernels expect aligned elements.
    auto staged = torch::empty({rows, cols}, dt);
    std::memcpy(staged.data_ptr(), ptr, nbytes);
    return staged;
  }
  // Q8_0: blocks of 32 weights = one f16 scale followed by 32 int8 quants (34 bytes).
  torch::Tensor staged;
  if (!aligned) {
    staged = torch::empty({static_cast<int64_t>(nbytes)}, torch::kUInt8);
    std::memcpy(staged.data_ptr(), ptr, nbytes);
    p = staged.data_ptr<uint8_t>();
  }
  const int64_t blocks = rows * cols / 32;
  auto scales = torch::from_blob(p, {blocks}, {17}, torch::kFloat16).to(torch::kFloat32);
  auto quants = torch::from_blob(p + 2, {blocks, 32}, {34, 1}, torch::kInt8).to(torch::kFloat32);
  return (quants * scales.unsqueeze(1)).view({rows, cols});
}

void copy_one(torch::Tensor dst, const TensorSource& s) {
  const int64_t numel = dst.numel();
  if (numel == 0) return;
  const int64_t rows = s.shape.empty() ? 1 : s.shape[0];
  const int64_t cols = numel / rows;
  const uint64_t row_bytes = source_bytes(s.type, cols);
  // Whole heads per chunk so the RoPE permutation stays inside one chunk.
  const int64_t unit = s.rope_head_dim > 0 ? s.rope_head_dim : 1;
  const int64_t fit = static_cast<int64_t>(kChunkBytes / std::max<uint64_t>(row_bytes, 1));
  const int64_t step = std::max(unit, fit / unit * unit);
  auto dst2 = dst.view({rows, cols});
  for (int64_t r = 0; r < rows; r += step) {
    const int64_t n = std::min(step, rows - r);
    const uint64_t off = s.offset + static_cast<uint64_t>(r) * row_bytes;
    auto src = decode_rows(s.file->data() + off, n, cols, s.type);
    auto out = dst2.narrow(0, r, n);
    if (s.rope_head_dim > 0) {
      // Interleaved pairs (row 2i, 2i+1 of a head) → rotate-half (rows i and hd/2 + i).
      const int64_t hd = s.rope_head_dim;
      out.view({n / hd, 2, hd / 2, cols})
          .copy_(src.view({n / hd, hd / 2, 2, cols}).transpose(1, 2));
    } else {
      out.copy_(src);
    }
    s.file->release(off, static_cast<uint64_t>(n) * row_bytes);
  }
}

}  // namespace

std::string shape_str(const std::vector<int64_t>& shape) {
  return join_shape(shape);
}
std::string shape_str(torch::IntArrayRef shape) {
  return join_shape(shape);
}

std::string source_type_name(SourceType t) {
  switch (t) {
    case SourceType::F32:
      return "F32";
    case SourceType::F16:
      return "F16";
    case SourceType::BF16:
      return "BF16";
    case SourceType::Q8_0:
      return "Q8_0";
  }
  return "?";
}

uint64_t source_bytes(SourceType t, int64_t numel) {
  const auto n = static_cast<uint64_t>(numel);
  switch (t) {
    case SourceType::F32:
      return n * 4;
    case SourceType::F16:
    case SourceType::BF16:
      return n * 2;
    case SourceType::Q8_0:
      return n / 32 * 34;
  }
  return 0;
}

void check_source(const LlamaModelImpl& model, const TensorSource& s) {
  const std::string where = s.file->path() + ": tensor '" + s.origin + "': ";
  const auto param = model.parameter(s.param);
  if (param.sizes().vec() != s.shape)
    throw InputError(where + "expected shape " + shape_str(param.sizes()) + ", found " +
                     shape_str(s.shape));
  if (s.type == SourceType::Q8_0 && (s.shape.empty() || s.shape.back() % 32 != 0))
    throw InputError(where + "Q8_0 rows must be a multiple of 32 values, found shape " +
                     shape_str(s.shape));
  const uint64_t need = source_bytes(s.type, param.numel());
  if (need != s.nbytes)
    throw InputError(where + "shape " + shape_str(s.shape) + " of " + source_type_name(s.type) +
                     " needs " + std::to_string(need) + " bytes, found " +
                     std::to_string(s.nbytes));
  if (s.offset > s.file->size() || s.nbytes > s.file->size() - s.offset)
    throw InputError(where + "data is beyond the end of the file");
  if (s.rope_head_dim > 0 &&
      (s.rope_head_dim % 2 != 0 || s.shape.empty() || s.shape[0] % s.rope_head_dim != 0))
    throw InputError(where + "rows are not whole heads of " + std::to_string(s.rope_head_dim));
}

// Makes `param` view the mapped bytes of `s` when they can serve as its storage as they are.
bool map_source(torch::Tensor& param, const TensorSource& s) {
  if (!s.owner || !s.owner->writable() || s.rope_head_dim > 0 || s.type == SourceType::Q8_0 ||
      !param.device().is_cpu() || torch_dtype(s.type) != param.scalar_type())
    return false;
  const uint8_t* ptr = s.file->data() + s.offset;
  if (reinterpret_cast<uintptr_t>(ptr) % param.element_size() != 0) return false;
  auto owner = s.owner;
  auto view = torch::from_blob(
      const_cast<uint8_t*>(ptr), param.sizes(), [owner](void*) mutable { owner.reset(); },
      torch::TensorOptions().dtype(param.scalar_type()));
  param.set_data(view);
  return true;
}

void copy_sources(LlamaModelImpl& model, const std::vector<TensorSource>& sources,
                  const LoadOptions& opts, const TaskContext* ctx,
                  const std::set<std::string>& prefilled) {
  torch::NoGradGuard no_grad;
  const auto params = model.state_dict();
  std::map<std::string, const TensorSource*> by_param;
  for (const auto& s : sources) {
    check_source(model, s);
    if (!by_param.emplace(s.param, &s).second)
      throw InputError(s.file->path() + ": tensor '" + s.origin + "': parameter '" + s.param +
                       "' is stored twice");
  }
  for (const auto& [name, t] : params)
    if (by_param.count(name) == 0 && prefilled.count(name) == 0)
      throw InputError((sources.empty() ? std::string("checkpoint") : sources[0].file->path()) +
                       ": missing tensor for parameter '" + name + "'");
  const auto total = static_cast<int64_t>(sources.size());
  for (int64_t i = 0; i < total; ++i) {
    task_check(ctx);
    const auto& s = sources[i];
    task_report(ctx, "load", i, total, s.origin);
    auto param = params.at(s.param);
    if (opts.map_weights && map_source(param, s)) continue;
    copy_one(param, s);
  }
  task_report(ctx, "load", total, total);
}

std::shared_ptr<Tokenizer> load_tokenizer_file(const std::string& path, int64_t vocab_size) {
  return Tokenizer::from_file(path, vocab_size);
}

void check_tokenizer_fits(const Tokenizer& tok, const ModelConfig& cfg, const std::string& source) {
  // Padded embeddings (more rows than pieces) are common; the reverse would index out of range.
  if (tok.vocab_size() > cfg.vocab_size)
    throw InputError(source + ": tokenizer has " + std::to_string(tok.vocab_size()) +
                     " pieces but the model's vocabulary is " + std::to_string(cfg.vocab_size));
}

void check_model_fits_weights(const ModelConfig& cfg, uint64_t stored_bytes,
                              const std::string& source) {
  // A lower bound of the parameters the config declares (embedding, projections; norms and biases
  // left out), in long double so that a hostile config cannot overflow it.
  const long double hidden = static_cast<long double>(cfg.hidden_size);
  long double need = static_cast<long double>(cfg.vocab_size) * hidden;
  for (const auto& d : cfg.layers) {
    const long double q = static_cast<long double>(d.n_heads) * cfg.head_dim;
    const long double kv = static_cast<long double>(d.n_kv_heads) * cfg.head_dim;
    need += hidden * (2 * q + 2 * kv) + 3 * hidden * static_cast<long double>(d.intermediate_size);
  }
  // Every stored value takes at least one byte (Q8_0, the smallest encoding, 34 per 32 values).
  if (need > static_cast<long double>(stored_bytes)) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.4Lg", need);
    throw InputError(source + ": the configuration declares at least " + buf +
                     " parameters, but the weights hold only " + std::to_string(stored_bytes) +
                     " bytes; refused before allocating the model");
  }
}

ModelOptions model_options_for(const LoadOptions& opts,
                               const std::vector<std::string>& matrix_dtypes) {
  ModelOptions out = opts.model;
  if (opts.keep_checkpoint_dtype) out.dtype = checkpoint_dtype(matrix_dtypes, out.device);
  return out;
}

}  // namespace io

torch::Dtype checkpoint_dtype(const std::vector<std::string>& matrix_dtypes,
                              const torch::Device& device) {
  const auto all = [&](const char* name) {
    return !matrix_dtypes.empty() && std::all_of(matrix_dtypes.begin(), matrix_dtypes.end(),
                                                 [&](const std::string& d) { return d == name; });
  };
  if (all("BF16")) return torch::kBFloat16;
  if (all("F16") && device.is_cuda()) return torch::kFloat16;
  return torch::kFloat32;
}

torch::Dtype config_dtype(const ModelConfig& config, const torch::Device& device) {
  const std::string& d = config.stored_dtype;
  return checkpoint_dtype({d == "bfloat16" ? "BF16" : d == "float16" ? "F16" : "F32"}, device);
}

std::string format_name(ModelFormat f) {
  switch (f) {
    case ModelFormat::HuggingFace:
      return "huggingface";
    case ModelFormat::Llama2c:
      return "llama2c";
    case ModelFormat::Gguf:
      return "gguf";
  }
  return "unknown";
}

ModelFormat detect_format(const std::string& path) {
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (ec || !fs::exists(st)) throw InputError(path + ": no such file or directory");
  if (fs::is_directory(st)) {
    if (fs::is_regular_file(fs::path(path) / "config.json")) return ModelFormat::HuggingFace;
    throw InputError(path + ": directory has no config.json (expected a Hugging Face model)");
  }
  char magic[4] = {0, 0, 0, 0};
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw InputError(path + ": cannot open");
    in.read(magic, 4);
  }
  if (std::memcmp(magic, "GGUF", 4) == 0) return ModelFormat::Gguf;
  const auto ext = fs::path(path).extension().string();
  if (std::memcmp(magic, "PK\x03\x04", 4) == 0)
    throw InputError(path +
                     ": a PyTorch (zip/pickle) checkpoint; only safetensors, GGUF and "
                     "llama2.c checkpoints are supported");
  // A .gguf without the magic goes to the GGUF reader, which says what is wrong with it.
  if (ext == ".gguf") return ModelFormat::Gguf;
  if (ext == ".bin") return ModelFormat::Llama2c;
  if (ext == ".safetensors" || fs::path(path).filename() == "config.json")
    throw InputError(path + ": open the model directory (with config.json), not a file inside it");
  throw InputError(path +
                   ": unrecognised model format (expected a Hugging Face directory, a .gguf file "
                   "or a llama2.c .bin checkpoint)");
}

std::string config_only_path(const std::string& path) {
  std::error_code ec;
  const fs::path p(path);
  if (p.extension() == ".json" && fs::is_regular_file(p, ec)) return path;
  if (!fs::is_directory(p, ec) || !fs::is_regular_file(p / "config.json", ec)) return {};
  for (const char* weights : {"model.safetensors", "model.safetensors.index.json",
                              "pytorch_model.bin", "pytorch_model.bin.index.json"})
    if (fs::exists(p / weights, ec)) return {};
  return (p / "config.json").string();
}

LoadedModel load_model(const std::string& path, const LoadOptions& opts, const TaskContext* ctx) {
  const ModelFormat format = detect_format(path);
  LoadedModel out;
  switch (format) {
    case ModelFormat::HuggingFace:
      out = io::load_hf(path, opts, ctx);
      break;
    case ModelFormat::Llama2c:
      out = io::load_llama2c(path, opts, ctx);
      break;
    case ModelFormat::Gguf:
      out = io::load_gguf(path, opts, ctx);
      break;
  }
  out.format = format;
  out.path = path;
  if (out.tokenizer) io::check_tokenizer_fits(*out.tokenizer, out.model->config(), path);
  if (!out.tokenizer && opts.require_tokenizer)
    throw InputError(path + ": no tokenizer found (pass a tokenizer file explicitly)");
  if (!opts.adapter_path.empty()) {
    load_lora_adapter(*out.model, opts.adapter_path);
    out.adapter_path = opts.adapter_path;
  }
  return out;
}

}  // namespace lorashear
