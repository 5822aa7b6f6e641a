#pragma once
// Instruction data for the second recovery stage (LORASHEAR.md §4.2): Alpaca records
// (instruction, input, output) from a JSON array or JSON Lines, formatted with the Alpaca prompt
// template, with the loss on the response tokens only.
//
// Template (Stanford Alpaca), with an input:
//   Below is an instruction that describes a task, paired with an input that provides further
//   context. Write a response that appropriately completes the request.\n\n
//   ### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n
// and without one (input empty or absent):
//   Below is an instruction that describes a task. Write a response that appropriately completes
//   the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n
// The response is {output} followed by EOS. Sequence = BOS + prompt + response, cut to
// seq_len + 1 tokens (the response is shortened; a record whose prompt alone fills the sequence
// is left out and counted).

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "lorashear/data/corpus.h"

namespace lorashear {

class Tokenizer;
class LlamaModelImpl;

struct InstructionRecord {
  std::string instruction, input, output;
};

/// The prompt of `record` (everything before the response), as in the header comment.
std::string alpaca_prompt(const InstructionRecord& record);

/// Records of a JSON array or a JSON Lines file. Throws InputError naming the file and the record
/// (array index) or line: malformed JSON (lines skipped with skip_bad_lines), a record that is not
/// an object, or a missing / non-string "instruction" or "output" ("input" may be absent).
std::vector<InstructionRecord> load_instructions(const std::string& path,
                                                 const CorpusOptions& options = {});

struct InstructExample {
  std::vector<int64_t> tokens;  ///< BOS + prompt + response (+ EOS), at most seq_len + 1
  int64_t prompt_tokens = 0;    ///< BOS and prompt
};

/// A batch: tokens [B, T + 1] (right-padded), mask [B, T] float: 1 where the target (the next
/// token) is a response token.
struct InstructBatch {
  torch::Tensor tokens, mask;
};

class InstructionSet {
 public:
  /// Tokenises every record; a seeded permutation puts `validation_fraction` of them (at least
  /// one) into validation. Throws InputError when fewer than two usable records remain.
  InstructionSet(const std::vector<InstructionRecord>& records, const Tokenizer& tokenizer,
                 int64_t seq_len, double validation_fraction, uint64_t seed,
                 const std::string& what = "the instruction data");
  const std::vector<InstructExample>& train() const { return train_; }
  const std::vector<InstructExample>& validation() const { return validation_; }
  int64_t dropped() const { return dropped_; }      ///< prompt alone longer than a sequence
  int64_t truncated() const { return truncated_; }  ///< response shortened
  /// Training batch of `step`: examples step·B … step·B + B − 1 of a stream that goes through the
  /// training set in a new seeded order every epoch. Depends only on the seed and the step.
  InstructBatch batch(int64_t step, int64_t batch_size) const;

  static InstructBatch collate(const std::vector<const InstructExample*>& examples);

 private:
  std::vector<InstructExample> train_, validation_;
  int64_t dropped_ = 0, truncated_ = 0;
  uint64_t seed_ = 0;
};

/// Mean cross-entropy of the targets where `mask` is 1.
torch::Tensor masked_lm_loss(LlamaModelImpl& model, const InstructBatch& batch);

}  // namespace lorashear
