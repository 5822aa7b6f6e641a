#pragma once
// C interface of the SentencePiece shim module (liblorashear_spm.so).
//
// Why a shim: Debian's libsentencepiece exports the symbols of its bundled protobuf 3.14, which
// clash with the protobuf 3.21 that LibTorch loads; linked together, the process crashes before
// main(). The shim links SentencePiece and is loaded with dlmopen(LM_ID_NEWLM), in a link namespace
// of its own, so each library keeps its own protobuf. Only plain C types cross the boundary:
// results are handed to caller-supplied sinks, so no memory is allocated on one side and freed on
// the other.

#include <stddef.h>

extern "C" {

/// Receives bytes (text, a serialized model, an error message). `ctx` is the caller's.
typedef void (*lsp_bytes_sink)(void* ctx, const char* data, size_t size);
/// Receives token ids.
typedef void (*lsp_ids_sink)(void* ctx, const int* ids, size_t size);

enum { LSP_API_VERSION = 1 };
enum { LSP_UNK = 0, LSP_BOS = 1, LSP_EOS = 2 };

/// Function table; every function returning int returns 0 on success and reports errors to `err`.
struct LspApi {
  int version;
  /// Loads a serialized ModelProto; returns an opaque handle or null.
  void* (*load)(const char* proto, size_t size, lsp_bytes_sink err, void* err_ctx);
  void (*release)(void* handle);
  int (*encode)(void* handle, const char* text, size_t size, lsp_ids_sink out, void* out_ctx,
                lsp_bytes_sink err, void* err_ctx);
  int (*decode)(void* handle, const int* ids, size_t size, lsp_bytes_sink out, void* out_ctx,
                lsp_bytes_sink err, void* err_ctx);
  int (*piece_size)(void* handle);
  /// Piece text of a valid id.
  void (*id_to_piece)(void* handle, int id, lsp_bytes_sink out, void* out_ctx);
  float (*score)(void* handle, int id);
  /// LSP_UNK / LSP_BOS / LSP_EOS → id, or -1.
  int (*special_id)(void* handle, int which);
  /// SentencePieceTrainer::Train with `args` as "key=value" lines (trainer flag names without
  /// dashes, one per line); the serialized model goes to `out`.
  int (*train)(const char* args, size_t size, lsp_bytes_sink out, void* out_ctx, lsp_bytes_sink err,
               void* err_ctx);
};

/// The module's only exported symbol.
const LspApi* lorashear_spm_api(void);
typedef const LspApi* (*lsp_api_fn)(void);
}
