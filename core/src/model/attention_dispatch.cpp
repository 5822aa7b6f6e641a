// Chooses the attention kernel variant (attention_kernel.cpp compiled once per x86-64 level, see
// core/CMakeLists.txt) once, at first use, and calls it through a cached pointer: one indirect
// call per block of query rows, nothing inside the kernel's loops. Compiled with the default flags,
// so that it runs on any x86-64 CPU.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <string>

#include "attention_kernel.h"
#include "lorashear/errors.h"
#include "lorashear/runtime.h"

namespace lorashear::detail {

namespace {

constexpr const char* kEnvVar = "LORASHEAR_CPU_KERNEL";

// How a refused name is quoted: "LORASHEAR_CPU_KERNEL=avx512" or "CPU kernel 'avx512'".
std::string label(const char* name, bool from_env) {
  return from_env ? std::string(kEnvVar) + "=" + name : std::string("CPU kernel '") + name + "'";
}

}  // namespace

#if LORASHEAR_KERNEL_DISPATCH

using RowsFn = void (*)(const AttentionArgs&, int64_t, int64_t, int64_t, int64_t, float*);
namespace kernel_baseline {
void attention_rows(const AttentionArgs&, int64_t, int64_t, int64_t, int64_t, float*);
}
namespace kernel_avx2 {
void attention_rows(const AttentionArgs&, int64_t, int64_t, int64_t, int64_t, float*);
}
namespace kernel_avx512 {
void attention_rows(const AttentionArgs&, int64_t, int64_t, int64_t, int64_t, float*);
}

namespace {

// What -march=x86-64-v3 / -v4 let the compiler use (the OS saving the AVX registers included:
// libgcc checks XCR0 before reporting avx*). Clang (14) knows no f16c/movbe/lzcnt here; every CPU
// with AVX2, FMA and BMI2 has them.
bool cpu_has_v3() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx") && __builtin_cpu_supports("avx2") &&
         __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi") &&
         __builtin_cpu_supports("bmi2")
#ifndef __clang__
         && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("movbe") &&
         __builtin_cpu_supports("lzcnt")
#endif
      ;
}
bool cpu_has_v4() {
  return cpu_has_v3() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512cd");
}
bool cpu_any() {
  return true;
}

struct Variant {
  const char* name;
  const char* needs;  // for the refusal message
  RowsFn fn;
  bool (*supported)();
};

// Worst to best.
constexpr Variant kVariants[] = {
    {"baseline", "x86-64 (SSE2)", kernel_baseline::attention_rows, cpu_any},
    {"avx2", "x86-64-v3 (AVX2, FMA, BMI1/2, F16C, LZCNT, MOVBE)", kernel_avx2::attention_rows,
     cpu_has_v3},
    {"avx512", "x86-64-v4 (AVX-512 F, BW, CD, DQ, VL)", kernel_avx512::attention_rows, cpu_has_v4},
};

std::atomic<const Variant*> g_active{nullptr};

std::string runnable_list() {
  std::string s;
  for (const auto& v : kVariants)
    if (v.supported()) s += (s.empty() ? "" : ", ") + std::string(v.name);
  return s;
}

const Variant* find(const char* name) {
  for (const auto& v : kVariants)
    if (std::strcmp(v.name, name) == 0) return &v;
  return nullptr;
}

const Variant& checked(const char* name, bool from_env) {
  const Variant* v = find(name);
  if (!v)
    throw UsageError(label(name, from_env) +
                     ": no such CPU kernel variant (this build has baseline, avx2, avx512)");
  if (!v->supported())
    throw UsageError(label(name, from_env) + ": this CPU lacks " + v->needs +
                     "; it can run: " + runnable_list());
  return *v;
}

const Variant& best() {
  for (int i = static_cast<int>(std::size(kVariants)) - 1; i > 0; --i)
    if (kVariants[i].supported()) return kVariants[i];
  return kVariants[0];
}

const Variant& active() {
  if (const Variant* v = g_active.load(std::memory_order_acquire)) return *v;
  const char* env = std::getenv(kEnvVar);
  const Variant* chosen = env && *env ? &checked(env, true) : &best();
  // Threads racing here choose the same; a set_attention_variant that came first wins.
  const Variant* expected = nullptr;
  return g_active.compare_exchange_strong(expected, chosen) ? *chosen : *expected;
}

}  // namespace

void attention_rows(const AttentionArgs& a, int64_t b, int64_t kvh, int64_t t0, int64_t t1,
                    float* scratch) {
  active().fn(a, b, kvh, t0, t1, scratch);
}

bool attention_variant_available(const char* name) {
  const Variant* v = find(name);
  return v && v->supported();
}

void set_attention_variant(const char* name) {
  g_active.store(&checked(name, false), std::memory_order_release);
}

void reset_attention_variant() {
  g_active.store(nullptr, std::memory_order_release);
}

const char* attention_variant() {
  return active().name;
}

#else  // one kernel, compiled as detail::attention_rows itself: -march=native, or not x86-64

namespace {
constexpr const char* kOnly = LORASHEAR_KERNEL_SINGLE;

void check(const char* name, bool from_env) {
  if (std::strcmp(name, kOnly) != 0)
    throw UsageError(label(name, from_env) + ": this build has a single CPU kernel, '" + kOnly +
                     "'");
}
}  // namespace

bool attention_variant_available(const char* name) {
  return std::strcmp(name, kOnly) == 0;
}
void set_attention_variant(const char* name) {
  check(name, false);
}
void reset_attention_variant() {}
const char* attention_variant() {
  if (const char* env = std::getenv(kEnvVar); env && *env) check(env, true);
  return kOnly;
}

#endif

}  // namespace lorashear::detail

namespace lorashear {
std::string cpu_kernel_variant() {
  return detail::attention_variant();
}
}  // namespace lorashear
