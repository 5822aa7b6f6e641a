#pragma once
// One "parse this input" function per fuzzed parser, shared by the libFuzzer targets (fuzz_*.cpp)
// and the regression test that replays fuzz/regressions/<target>/*
// (tests/core/test_fuzz_regressions.cpp). Each returns normally when the parser accepted the input
// or refused it with one of the engine's errors (lorashear::Error and its subclasses); anything
// else (another exception, a crash, UB, a leak) is a finding and propagates.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace lorashear::fuzz {

using ParseFn = void (*)(const uint8_t* data, size_t size);

struct Target {
  const char* name;  ///< fuzz_<name>, fuzz/regressions/<name>/
  ParseFn parse;
};

/// Every target, in a fixed order.
const std::vector<Target>& targets();
/// The target called `name`, or nullptr.
const Target* find_target(const std::string& name);

}  // namespace lorashear::fuzz
