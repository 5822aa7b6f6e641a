#pragma once
// LibTorch archives (optimiser state in run checkpoints) written like the other outputs.

#include <torch/serialize/output-archive.h>

#include <string>

namespace lorashear::io {

/// Writes `archive` to `path` through a temporary file renamed over it (write_file_atomic's
/// contract). Use instead of archive.save_to(path): LibTorch's zip writer throws from its
/// destructor when the disk fills, which ends the process. Throws Error naming the path (and the
/// system's reason: "No space left on device") when it cannot write.
void save_archive_atomic(torch::serialize::OutputArchive& archive, const std::string& path);

}  // namespace lorashear::io
