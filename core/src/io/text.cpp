#include "lorashear/io/text.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include "lorashear/errors.h"

namespace lorashear {

namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

std::string read_text_corpus(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open text file");
  if (!ends_with(path, ".jsonl")) {
    std::ostringstream s;
    s << in.rdbuf();
    if (in.bad()) throw InputError(path + ": read error");
    return s.str();
  }
  std::string line, out;
  int64_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw InputError(path + ": line " + std::to_string(lineno) + ": invalid JSON (" + e.what() +
                       ")");
    }
    if (!j.is_object() || !j.contains("text") || !j["text"].is_string())
      throw InputError(path + ": line " + std::to_string(lineno) + ": no string field 'text'");
    if (!out.empty()) out += "\n\n";
    out += j["text"].get<std::string>();
  }
  return out;
}

}  // namespace lorashear
