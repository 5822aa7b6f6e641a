#pragma once
// Helpers shared by the benchmark programs.

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace lorashear::bench {

/// A field of /proc/self/status in KiB ("VmRSS:", "VmHWM:"), or -1.
inline int64_t status_kib(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key, 0) == 0) return std::atoll(line.c_str() + std::strlen(key));
  return -1;
}

/// "a,b,c" → {"a", "b", "c"}.
inline std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string x;
  while (std::getline(ss, x, ','))
    out.push_back(x);
  return out;
}

}  // namespace lorashear::bench
