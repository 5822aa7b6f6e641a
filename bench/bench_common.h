#pragma once
// Helpers shared by the benchmark programs.

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

namespace lorashear::bench {

/// A field of /proc/self/status in KiB ("VmRSS:", "VmHWM:"), or -1.
inline int64_t status_kib(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key, 0) == 0) return std::atoll(line.c_str() + std::strlen(key));
  return -1;
}

}  // namespace lorashear::bench
