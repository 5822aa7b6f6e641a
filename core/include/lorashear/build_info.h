#pragma once
// What this binary is and where its installed files are: for `lorashear --version`, Help ▸ About,
// bug reports, and for finding the demo model and the manual whether the program runs from the
// build tree or from an installed package.

#include <string>

namespace lorashear {

struct BuildInfo {
  std::string version;      ///< e.g. "0.1.0"
  std::string git_commit;   ///< short hash, "+dirty" when built from a modified tree, or "unknown"
  std::string build_type;   ///< CMake build type, e.g. "Release"
  std::string compiler;     ///< e.g. "GCC 12.2.0"
  std::string torch;        ///< LibTorch version compiled against, e.g. "1.13.0"
  std::string qt;           ///< Qt version the app was built with (the CLI does not load Qt)
  std::string graphviz;     ///< Graphviz version the app was built with
  std::string blas;         ///< BLAS found at run time, e.g. "OpenBLAS 0.3.21 (pthread)"
  bool cuda_built = false;  ///< LibTorch was built with CUDA
  bool cuda_available = false;
  int cuda_devices = 0;
};

/// The figures above; the CUDA ones are queried at run time.
BuildInfo build_info();

/// Several lines, "lorashear 0.1.0 (commit …)" first, then one line per component.
std::string build_info_text(const std::string& program = "lorashear");

/// The folder of the running executable (from /proc/self/exe); empty if unknown.
std::string executable_dir();

/// The bundled demo model: `<prefix>/share/lorashear/demo-model` beside an installed executable,
/// else the source tree's resources/demo-model; empty when neither exists.
std::string demo_model_path();

/// The HTML user guide: `<prefix>/share/doc/lorashear-studio/manual/index.html` when installed,
/// else the one the build made; empty when neither exists.
std::string manual_path();

}  // namespace lorashear
