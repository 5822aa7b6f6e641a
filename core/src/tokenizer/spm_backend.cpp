#include "tokenizer/spm_backend.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>

#include "lorashear/errors.h"
#include "spm_api.h"

namespace lorashear::detail {
namespace {

constexpr const char* kModuleName = "liblorashear_spm.so";

std::vector<std::string> module_candidates() {
  std::vector<std::string> out;
  if (const char* env = std::getenv("LORASHEAR_SPM_MODULE")) out.emplace_back(env);
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    auto dir = exe.parent_path();
    out.push_back((dir / LORASHEAR_SPM_MODULE_RELDIR / kModuleName).lexically_normal().string());
    out.push_back((dir / kModuleName).string());
  }
#ifdef LORASHEAR_SPM_MODULE_BUILD_PATH
  out.emplace_back(LORASHEAR_SPM_MODULE_BUILD_PATH);
#endif
  return out;
}

const LspApi* api() {
  static const LspApi* table = nullptr;
  static std::string failure;
  static std::once_flag once;
  std::call_once(once, [] {
    std::string tried;
    for (const auto& path : module_candidates()) {
      if (!std::filesystem::exists(path)) {
        tried += (tried.empty() ? " " : ", ") + path;
        continue;
      }
      // A fresh link namespace: SentencePiece resolves protobuf symbols to its own bundled copy,
      // not to the libprotobuf LibTorch loaded (see spm_api.h). RTLD_DEEPBIND is not enough: the
      // module would then write to its own, uninitialised copy of std::cerr when the executable
      // holds the real one by copy relocation.
      void* lib = dlmopen(LM_ID_NEWLM, path.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (!lib) {
        failure = std::string("cannot load ") + path + ": " + dlerror();
        return;
      }
      auto fn = reinterpret_cast<lsp_api_fn>(dlsym(lib, "lorashear_spm_api"));
      const LspApi* t = fn ? fn() : nullptr;
      if (!t || t->version != LSP_API_VERSION) {
        failure = path + " is not a compatible SentencePiece module";
        return;
      }
      table = t;
      return;
    }
    // The installed location first: that is the file a user must restore.
    failure = std::string("the SentencePiece module is missing:") + tried +
              " (reinstall lorashear-studio, or set LORASHEAR_SPM_MODULE to its path)";
  });
  if (!table) throw Error(failure);
  return table;
}

void append_bytes(void* ctx, const char* data, size_t size) {
  static_cast<std::string*>(ctx)->append(data, size);
}

void assign_ids(void* ctx, const int* ids, size_t size) {
  static_cast<std::vector<int>*>(ctx)->assign(ids, ids + size);
}

}  // namespace

SpmProcessor::~SpmProcessor() {
  if (handle_) api()->release(handle_);
}

std::unique_ptr<SpmProcessor> SpmProcessor::load(const std::string& proto, std::string* error) {
  std::string err;
  void* h = api()->load(proto.data(), proto.size(), append_bytes, &err);
  if (!h) {
    if (error) *error = err.empty() ? "unknown SentencePiece error" : err;
    return nullptr;
  }
  return std::unique_ptr<SpmProcessor>(new SpmProcessor(h));
}

std::vector<int> SpmProcessor::encode(const std::string& text) const {
  std::vector<int> ids;
  std::string err;
  if (api()->encode(handle_, text.data(), text.size(), assign_ids, &ids, append_bytes, &err) != 0)
    throw Error("tokenizer: encode failed (" + err + ")");
  return ids;
}

std::string SpmProcessor::decode(const std::vector<int>& ids) const {
  std::string text, err;
  if (api()->decode(handle_, ids.data(), ids.size(), append_bytes, &text, append_bytes, &err) != 0)
    throw Error("tokenizer: decode failed (" + err + ")");
  return text;
}

int SpmProcessor::piece_size() const {
  return api()->piece_size(handle_);
}

std::string SpmProcessor::id_to_piece(int id) const {
  std::string p;
  api()->id_to_piece(handle_, id, append_bytes, &p);
  return p;
}

float SpmProcessor::score(int id) const {
  return api()->score(handle_, id);
}
int SpmProcessor::unk_id() const {
  return api()->special_id(handle_, LSP_UNK);
}
int SpmProcessor::bos_id() const {
  return api()->special_id(handle_, LSP_BOS);
}
int SpmProcessor::eos_id() const {
  return api()->special_id(handle_, LSP_EOS);
}

std::string spm_train(const std::string& args) {
  std::string model, err;
  if (api()->train(args.data(), args.size(), append_bytes, &model, append_bytes, &err) != 0)
    throw Error("SentencePiece training failed: " + err);
  return model;
}

}  // namespace lorashear::detail
