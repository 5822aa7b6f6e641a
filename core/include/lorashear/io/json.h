#pragma once
// Reading a whole JSON file (configurations, plans, adapter configurations), with errors that
// name the file.

#include <nlohmann/json.hpp>

#include <string>

namespace lorashear::io {

/// The parsed file. Throws InputError naming `path` when it cannot be read or is not valid JSON.
nlohmann::json read_json_file(const std::string& path);

}  // namespace lorashear::io
