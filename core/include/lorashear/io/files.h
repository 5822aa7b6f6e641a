#pragma once
// Small-file helpers shared by the engine and the front ends.

#include <string>

namespace lorashear::io {

/// Writes `bytes` to `path` through a temporary file renamed over it, so an existing file is
/// either replaced whole or left untouched. Throws Error naming the path (and the system's
/// reason) when it cannot.
void write_file_atomic(const std::string& path, const std::string& bytes);

}  // namespace lorashear::io
