// `lorashear tokenize (MODEL | --tokenizer FILE) (--text STRING | --file FILE)`: the ids a model
// sees for a text, with the tokenizer's speed. --file streams (tokenizer.json: about 1 MiB held at
// a time), so it works on files larger than memory.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli_common.h"
#include "lorashear/errors.h"
#include "lorashear/tokenizer/tokenizer.h"

namespace lorashear::cli {
namespace {

namespace fs = std::filesystem;

struct TokenizeArgs : ModelArgs {
  std::string text, file;
  bool text_given = false;
  bool no_ids = false;
  bool bos = false, eos = false;
};

// A model argument that names tokenizer files only (a folder, tokenizer.json, tokenizer.model)
// is read without loading weights; checkpoints (.gguf, llama2.c .bin) are loaded for the
// tokenizer they carry or sit beside.
std::shared_ptr<Tokenizer> open_tokenizer(const TokenizeArgs& a, const GlobalOptions& global) {
  if (!a.tokenizer.empty()) return Tokenizer::from_file(a.tokenizer);
  if (a.model.empty()) throw UsageError("tokenize: give MODEL or --tokenizer FILE");
  std::error_code ec;
  const fs::path p(a.model);
  const auto ext = p.extension();
  if (fs::is_directory(p, ec) || ext == ".json" || ext == ".model")
    return Tokenizer::from_file(a.model);
  auto loaded = load_model_for_cli(ModelArgs{a.model, "", ""}, global, true);
  return loaded.tokenizer;
}

// The piece as it can be shown on one line: control characters escaped.
std::string visible(const std::string& piece) {
  std::string out;
  for (unsigned char c : piece) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

int run_tokenize(const TokenizeArgs& a, const GlobalOptions& global) {
  if (a.text_given == !a.file.empty())
    throw UsageError("tokenize: give exactly one of --text STRING and --file FILE");
  const auto tok = open_tokenizer(a, global);
  std::unique_ptr<std::istream> in;
  if (!a.file.empty()) {
    auto f = std::make_unique<std::ifstream>(a.file, std::ios::binary);
    if (!*f) throw InputError(a.file + ": cannot open");
    in = std::move(f);
  } else {
    in = std::make_unique<std::istringstream>(a.text);
  }

  // Output is written as ids arrive; its cost is kept out of the speed figures.
  using clock = std::chrono::steady_clock;
  double output_seconds = 0;
  int64_t count = 0;
  bool first = true;
  auto emit = [&](int64_t id) {
    if (a.no_ids) return;
    if (global.json)
      std::cout << (first ? "" : ",") << id;
    else
      std::cout << id << '\t' << visible(tok->piece(id)) << '\n';
    first = false;
  };
  if (global.json)
    std::cout << "{\"tokenizer\": " << nlohmann::json(tok->kind()).dump() << ", \"ids\": [";
  const auto t0 = clock::now();
  if (a.bos && tok->bos_id() >= 0) {
    emit(tok->bos_id());
    ++count;
  }
  const uint64_t bytes = tok->encode_stream(*in, [&](const std::vector<int64_t>& ids) {
    const auto o0 = clock::now();
    for (int64_t id : ids)
      emit(id);
    count += static_cast<int64_t>(ids.size());
    output_seconds += std::chrono::duration<double>(clock::now() - o0).count();
  });
  if (a.eos && tok->eos_id() >= 0) {
    emit(tok->eos_id());
    ++count;
  }
  const double seconds =
      std::max(1e-9, std::chrono::duration<double>(clock::now() - t0).count() - output_seconds);
  const double tps = count / seconds, mbps = bytes / seconds / 1e6;
  if (global.json) {
    std::cout << "], \"count\": " << count << ", \"bytes\": " << bytes
              << ", \"seconds\": " << seconds << ", \"tokens_per_second\": " << tps
              << ", \"mb_per_second\": " << mbps << "}" << std::endl;
  } else {
    std::cout << std::flush;
    std::fprintf(stderr, "%s: %lld tokens, %llu bytes, %.0f tokens/s, %.2f MB/s\n",
                 tok->kind().c_str(), static_cast<long long>(count),
                 static_cast<unsigned long long>(bytes), tps, mbps);
  }
  return 0;
}

const Register register_tokenize([](CLI::App& parent, GlobalOptions& global) {
  auto* app = parent.add_subcommand(
      "tokenize", "Show the ids of a text (tokenizer.json, tokenizer.model or a model's own)");
  auto a = std::make_shared<TokenizeArgs>();
  app->add_option("MODEL", a->model,
                  "Model (Hugging Face directory, .gguf, llama2.c .bin) or tokenizer file");
  app->add_option("--tokenizer", a->tokenizer,
                  "tokenizer.json, tokenizer.model or a folder holding one (instead of MODEL)");
  app->add_option("--text", a->text, "Text to tokenize")->each([a](const std::string&) {
    a->text_given = true;
  });
  app->add_option("--file", a->file, "UTF-8 text file to tokenize (streamed)");
  app->add_flag("--bos", a->bos, "Prepend the BOS token");
  app->add_flag("--eos", a->eos, "Append the EOS token");
  app->add_flag("--no-ids", a->no_ids, "Print only the count and the speed");
  return Command{app, [a, &global] { return run_tokenize(*a, global); }};
});

}  // namespace
}  // namespace lorashear::cli
