// One libFuzzer target: LORASHEAR_FUZZ_TARGET names the parser (fuzz_inputs.cpp).
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "fuzz_inputs.h"

#ifndef LORASHEAR_FUZZ_TARGET
#error "define LORASHEAR_FUZZ_TARGET"
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const lorashear::fuzz::Target* target = [] {
    const auto* t = lorashear::fuzz::find_target(LORASHEAR_FUZZ_TARGET);
    if (t == nullptr) {
      std::fprintf(stderr, "unknown fuzz target %s\n", LORASHEAR_FUZZ_TARGET);
      std::abort();
    }
    return t;
  }();
  target->parse(data, size);
  return 0;
}
