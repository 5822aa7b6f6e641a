#pragma once
// Reading evaluation/calibration text: plain text files as they are, JSON Lines by their "text" field.

#include <string>

namespace lorashear {

/// Whole file as text. `*.jsonl` files: the "text" field of every line, joined by blank lines.
/// Throws InputError naming the file (and line for JSON Lines) when it cannot be read or parsed.
std::string read_text_corpus(const std::string& path);

}  // namespace lorashear
