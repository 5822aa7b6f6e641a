#include "lorashear/build_info.h"

#include <dlfcn.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <filesystem>
#include <sstream>

#include "lorashear_git_commit.h"  // generated at build time by cmake/git_commit.cmake

namespace lorashear {

namespace fs = std::filesystem;

namespace {

std::string compiler() {
#if defined(__clang__)
  return "Clang " __clang_version__;
#elif defined(__GNUC__)
  return "GCC " + std::to_string(__GNUC__) + "." + std::to_string(__GNUC_MINOR__) + "." +
         std::to_string(__GNUC_PATCHLEVEL__);
#else
  return "unknown compiler";
#endif
}

// OpenBLAS says what it is through openblas_get_config ("OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY
// Haswell MAX_THREADS=64"); LibTorch's reference BLAS (about 10x slower) has no such symbol.
std::string blas() {
  using Config = char* (*)();
  if (auto config = reinterpret_cast<Config>(dlsym(RTLD_DEFAULT, "openblas_get_config"))) {
    std::string text = config();
    using Parallel = int (*)();
    if (auto parallel = reinterpret_cast<Parallel>(dlsym(RTLD_DEFAULT, "openblas_get_parallel"))) {
      const int p = parallel();
      text += p == 1 ? " (pthread)" : p == 2 ? " (OpenMP)" : " (serial)";
    }
    return text;
  }
  return "reference BLAS (install libopenblas0-pthread: about 10x faster)";
}

// The first candidate that exists, or "".
std::string first_existing(std::initializer_list<fs::path> candidates) {
  std::error_code ec;
  for (const auto& p : candidates)
    if (!p.empty() && fs::exists(p, ec)) return fs::weakly_canonical(p, ec).string();
  return {};
}

}  // namespace

BuildInfo build_info() {
  BuildInfo info;
  info.version = LORASHEAR_VERSION;
  info.git_commit = LORASHEAR_GIT_COMMIT;
  info.build_type = LORASHEAR_BUILD_TYPE;
  info.compiler = compiler();
  info.torch = TORCH_VERSION;
  info.qt = LORASHEAR_QT_VERSION;
  info.graphviz = LORASHEAR_GRAPHVIZ_VERSION;
  info.blas = blas();
#ifdef USE_CUDA
  info.cuda_built = true;
#endif
  info.cuda_available = torch::cuda::is_available();
  info.cuda_devices = info.cuda_available ? static_cast<int>(torch::cuda::device_count()) : 0;
  return info;
}

std::string build_info_text(const std::string& program) {
  const auto info = build_info();
  std::ostringstream out;
  out << program << " " << info.version << " (commit " << info.git_commit << ", " << info.build_type
      << ", " << info.compiler << ")\n"
      << "LibTorch " << info.torch << ", BLAS: " << info.blas << "\n"
      << "CUDA: "
      << (info.cuda_available ? "available, " + std::to_string(info.cuda_devices) + " device(s)"
          : info.cuda_built   ? "LibTorch has CUDA, no device found"
                              : "not available (this LibTorch was built without CUDA)")
      << "\n"
      << "Built with Qt " << info.qt << " and Graphviz " << info.graphviz << " (the app)\n";
  return out.str();
}

std::string executable_dir() {
  std::error_code ec;
  const auto exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : exe.parent_path().string();
}

std::string demo_model_path() {
  const fs::path exe = executable_dir();
  return first_existing({exe.empty()
                             ? fs::path()
                             : exe / ".." / LORASHEAR_INSTALL_DATADIR / "lorashear" / "demo-model",
                         fs::path(LORASHEAR_SOURCE_DIR) / "resources" / "demo-model"});
}

std::string manual_path() {
  const fs::path exe = executable_dir();
  return first_existing(
      {exe.empty() ? fs::path() : exe / ".." / LORASHEAR_INSTALL_DOCDIR / "manual" / "index.html",
       fs::path(LORASHEAR_BINARY_DIR) / "manual" / "index.html"});
}

}  // namespace lorashear
