// The SentencePiece shim module: see spm_api.h for why it exists. Keep it free of LibTorch and of
// anything that throws across the C boundary.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <exception>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "spm_api.h"

namespace {

void report(lsp_bytes_sink err, void* ctx, const std::string& msg) {
  if (err) err(ctx, msg.data(), msg.size());
}

sentencepiece::SentencePieceProcessor* proc(void* h) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(h);
}

void* load(const char* proto, size_t size, lsp_bytes_sink err, void* err_ctx) {
  try {
    auto sp = std::make_unique<sentencepiece::SentencePieceProcessor>();
    auto status = sp->LoadFromSerializedProto(absl::string_view(proto, size));
    if (!status.ok()) {
      report(err, err_ctx, status.ToString());
      return nullptr;
    }
    return sp.release();
  } catch (const std::exception& e) {
    report(err, err_ctx, e.what());
    return nullptr;
  }
}

void release(void* h) {
  delete proc(h);
}

int encode(void* h, const char* text, size_t size, lsp_ids_sink out, void* out_ctx,
           lsp_bytes_sink err, void* err_ctx) {
  try {
    std::vector<int> ids;
    auto status = proc(h)->Encode(absl::string_view(text, size), &ids);
    if (!status.ok()) {
      report(err, err_ctx, status.ToString());
      return 1;
    }
    out(out_ctx, ids.data(), ids.size());
    return 0;
  } catch (const std::exception& e) {
    report(err, err_ctx, e.what());
    return 1;
  }
}

int decode(void* h, const int* ids, size_t size, lsp_bytes_sink out, void* out_ctx,
           lsp_bytes_sink err, void* err_ctx) {
  try {
    std::string text;
    auto status = proc(h)->Decode(std::vector<int>(ids, ids + size), &text);
    if (!status.ok()) {
      report(err, err_ctx, status.ToString());
      return 1;
    }
    out(out_ctx, text.data(), text.size());
    return 0;
  } catch (const std::exception& e) {
    report(err, err_ctx, e.what());
    return 1;
  }
}

int piece_size(void* h) {
  return proc(h)->GetPieceSize();
}

void id_to_piece(void* h, int id, lsp_bytes_sink out, void* out_ctx) {
  const std::string& p = proc(h)->IdToPiece(id);
  out(out_ctx, p.data(), p.size());
}

float score(void* h, int id) {
  return proc(h)->GetScore(id);
}

int special_id(void* h, int which) {
  switch (which) {
    case LSP_UNK:
      return proc(h)->unk_id();
    case LSP_BOS:
      return proc(h)->bos_id();
    case LSP_EOS:
      return proc(h)->eos_id();
    default:
      return -1;
  }
}

int train(const char* args, size_t size, lsp_bytes_sink out, void* out_ctx, lsp_bytes_sink err,
          void* err_ctx) {
  try {
    // The map overload, unlike the command-line one, takes values with spaces and does not log
    // the whole command to stderr.
    std::unordered_map<std::string, std::string> kwargs;
    const std::string all(args, size);
    size_t pos = 0;
    while (pos < all.size()) {
      size_t end = all.find('\n', pos);
      if (end == std::string::npos) end = all.size();
      const std::string line = all.substr(pos, end - pos);
      pos = end + 1;
      if (line.empty()) continue;
      const size_t eq = line.find('=');
      if (eq == std::string::npos) {
        report(err, err_ctx, "bad trainer argument '" + line + "' (expected key=value)");
        return 1;
      }
      kwargs[line.substr(0, eq)] = line.substr(eq + 1);
    }
    std::string model;
    auto status = sentencepiece::SentencePieceTrainer::Train(kwargs, nullptr, &model);
    if (!status.ok()) {
      report(err, err_ctx, status.ToString());
      return 1;
    }
    out(out_ctx, model.data(), model.size());
    return 0;
  } catch (const std::exception& e) {
    report(err, err_ctx, e.what());
    return 1;
  }
}

const LspApi kApi = {LSP_API_VERSION, load,        release, encode,     decode,
                     piece_size,      id_to_piece, score,   special_id, train};

}  // namespace

extern "C" __attribute__((visibility("default"))) const LspApi* lorashear_spm_api(void) {
  return &kApi;
}
