#include "lorashear/data/instruct.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <sstream>

#include "lorashear/errors.h"
#include "lorashear/model/llama.h"
#include "lorashear/tokenizer/tokenizer.h"

namespace lorashear {

std::string alpaca_prompt(const InstructionRecord& r) {
  if (r.input.empty())
    return "Below is an instruction that describes a task. Write a response that appropriately "
           "completes the request.\n\n### Instruction:\n" +
           r.instruction + "\n\n### Response:\n";
  return "Below is an instruction that describes a task, paired with an input that provides "
         "further context. Write a response that appropriately completes the request.\n\n"
         "### Instruction:\n" +
         r.instruction + "\n\n### Input:\n" + r.input + "\n\n### Response:\n";
}

namespace {

InstructionRecord to_record(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) throw InputError(where + ": not a JSON object");
  auto field = [&](const char* name, bool required) {
    if (!j.contains(name) || j[name].is_null()) {
      if (required)
        throw InputError(where + ": missing field '" + name +
                         "' (records need instruction, output and optionally input)");
      return std::string();
    }
    if (!j[name].is_string()) throw InputError(where + ": field '" + name + "' is not a string");
    return j[name].get<std::string>();
  };
  InstructionRecord r;
  r.instruction = field("instruction", true);
  r.input = field("input", false);
  r.output = field("output", true);
  return r;
}

}  // namespace

std::vector<InstructionRecord> load_instructions(const std::string& path,
                                                 const CorpusOptions& options) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open instruction data");
  std::vector<InstructionRecord> out;
  // A JSON array if the first non-blank character is '['; JSON Lines otherwise.
  char first = 0;
  while (in.get(first) && std::isspace(static_cast<unsigned char>(first))) {
  }
  in.clear();
  in.seekg(0);
  if (first == '[') {
    nlohmann::json j;
    try {
      in >> j;
    } catch (const nlohmann::json::exception& e) {
      throw InputError(path + ": not valid JSON (" + e.what() + ")");
    }
    for (size_t i = 0; i < j.size(); ++i)
      out.push_back(to_record(j[i], path + ": record " + std::to_string(i)));
  } else {
    std::string line;
    int64_t lineno = 0;
    while (std::getline(in, line)) {
      ++lineno;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      const std::string where = path + ": line " + std::to_string(lineno);
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception& e) {
        if (options.skip_bad_lines) continue;
        throw InputError(where + ": invalid JSON (" + e.what() +
                         "); fix the line or pass --skip-bad-lines");
      }
      try {
        out.push_back(to_record(j, where));
      } catch (const InputError&) {
        if (!options.skip_bad_lines) throw;
      }
    }
  }
  if (out.empty()) throw InputError(path + ": no instruction records");
  return out;
}

InstructionSet::InstructionSet(const std::vector<InstructionRecord>& records, const Tokenizer& tok,
                               int64_t seq_len, double validation_fraction, uint64_t seed,
                               const std::string& what)
    : seed_(seed) {
  if (seq_len < 2) throw UsageError("sequence length must be at least 2");
  if (!(validation_fraction > 0 && validation_fraction < 1))
    throw UsageError("the instruction validation fraction must be in (0, 1)");
  std::vector<InstructExample> all;
  const size_t limit = static_cast<size_t>(seq_len + 1);
  for (const auto& r : records) {
    InstructExample e;
    e.tokens = tok.encode(alpaca_prompt(r), /*add_bos=*/tok.bos_id() >= 0);
    e.prompt_tokens = static_cast<int64_t>(e.tokens.size());
    if (e.tokens.size() >= limit) {
      ++dropped_;
      continue;
    }
    auto response = tok.encode(r.output, false);
    if (tok.eos_id() >= 0) response.push_back(tok.eos_id());
    e.tokens.insert(e.tokens.end(), response.begin(), response.end());
    if (e.tokens.size() > limit) {
      e.tokens.resize(limit);
      ++truncated_;
    }
    all.push_back(std::move(e));
  }
  if (all.size() < 2)
    throw InputError(what + ": " + std::to_string(all.size()) + " usable record(s) of " +
                     std::to_string(records.size()) + " (" + std::to_string(dropped_) +
                     " have a prompt longer than the sequence, " + std::to_string(seq_len) +
                     " tokens: raise --instruct-seq-len); need at least two");
  std::vector<size_t> order(all.size());
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(seed * 0x2545F4914F6CDD1Dull + 17);
  std::shuffle(order.begin(), order.end(), rng);
  const auto n_val = std::clamp<size_t>(
      static_cast<size_t>(std::llround(validation_fraction * static_cast<double>(all.size()))), 1,
      all.size() - 1);
  for (size_t i = 0; i < order.size(); ++i)
    (i < n_val ? validation_ : train_).push_back(std::move(all[order[i]]));
}

InstructBatch InstructionSet::collate(const std::vector<const InstructExample*>& examples) {
  size_t longest = 2;
  for (const auto* e : examples)
    longest = std::max(longest, e->tokens.size());
  const auto B = static_cast<int64_t>(examples.size());
  const auto T = static_cast<int64_t>(longest) - 1;
  auto tokens = torch::zeros({B, T + 1}, torch::kLong);
  auto mask = torch::zeros({B, T}, torch::kFloat32);
  auto* tp = tokens.data_ptr<int64_t>();
  auto* mp = mask.data_ptr<float>();
  for (int64_t b = 0; b < B; ++b) {
    const auto& e = *examples[static_cast<size_t>(b)];
    std::copy(e.tokens.begin(), e.tokens.end(), tp + b * (T + 1));
    // Target j is token j + 1: counted when it belongs to the response.
    for (int64_t j = std::max<int64_t>(e.prompt_tokens - 1, 0);
         j + 1 < static_cast<int64_t>(e.tokens.size()); ++j)
      mp[b * T + j] = 1.0f;
  }
  return {tokens, mask};
}

InstructBatch InstructionSet::batch(int64_t step, int64_t batch_size) const {
  const auto n = static_cast<int64_t>(train_.size());
  std::vector<size_t> order;
  int64_t order_epoch = -1;
  std::vector<const InstructExample*> picked;
  for (int64_t b = 0; b < batch_size; ++b) {
    const int64_t k = step * batch_size + b;
    const int64_t epoch = k / n;
    if (epoch != order_epoch) {
      order.resize(static_cast<size_t>(n));
      std::iota(order.begin(), order.end(), 0);
      std::mt19937_64 rng(seed_ * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(epoch) * 7919 + 1);
      std::shuffle(order.begin(), order.end(), rng);
      order_epoch = epoch;
    }
    picked.push_back(&train_[order[static_cast<size_t>(k % n)]]);
  }
  return collate(picked);
}

torch::Tensor masked_lm_loss(LlamaModelImpl& model, const InstructBatch& batch) {
  const int64_t T = batch.tokens.size(1) - 1;
  const auto device = model.options().device;
  auto w = batch.tokens.to(device);
  auto mask = batch.mask.to(device);
  auto logits = model.forward(w.narrow(1, 0, T));
  auto ce = torch::nn::functional::cross_entropy(
      logits.reshape({-1, logits.size(-1)}).to(torch::kFloat32), w.narrow(1, 1, T).reshape({-1}),
      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  const auto m = mask.reshape({-1});
  return (ce * m).sum() / m.sum().clamp_min(1.0);
}

}  // namespace lorashear
