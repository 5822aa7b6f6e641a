#include "lorashear/io/json.h"

#include "io_internal.h"
#include "lorashear/errors.h"

namespace lorashear::io {

nlohmann::json read_json_file(const std::string& path) {
  const std::string text = read_small_file(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(path + ": not valid JSON: " + e.what());
  }
}

}  // namespace lorashear::io
