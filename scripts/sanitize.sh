#!/usr/bin/env bash
# Builds and runs the tests under the sanitizers, each in a build folder of its own (ccache keeps
# rebuilds short); the main build/ folder is never touched.
#   scripts/sanitize.sh address [CTEST_REGEX]   ASan + UBSan (+ LeakSanitizer): core, CLI and engine
#                                               tests, in build-asan/
#   scripts/sanitize.sh thread [CTEST_REGEX]    ThreadSanitizer: the tests that run the engine's worker
#                                               thread, the graph layout's and the core's own threads,
#                                               in build-tsan/
# CTEST_REGEX runs a subset of the mode's tests. Any report fails the test that made it: the
# sanitizers abort the process (halt_on_error) and print the stack. Known reports inside libraries
# we do not build would be suppressed in scripts/sanitizers/*.supp, each with its reason.
# Environment: JOBS (build jobs, default: cores), LORASHEAR_SANITIZE_BUILD (build folder).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mode=${1:-}
regex=${2:-}
jobs=${JOBS:-$(nproc)}
supp=$root/scripts/sanitizers

# The tests of each mode. address: everything that runs our parsers, the engine and the CLI in one
# process or a few (not the timing test, nor the ones whose point is an external program).
asan_tests=(test_model_config test_llama_model test_cpu_kernels test_checkpoint_roundtrip
  test_bad_checkpoints test_legacy_formats test_stories260k test_tokenizer test_hf_tokenizer
  test_demo_trainer test_perplexity test_tasks test_subnet test_dependency test_lora
  test_low_precision test_lhspg test_recovery test_gguf_export test_run_log test_fuzz_regressions
  test_cli test_cli_tokenize test_run test_follow_run test_run_memory test_export)

# thread: the tests where our code runs on more than one thread: the engine's worker QThread (a run
# cancelled and restored, the export, the app driving tasks and metrics), the graph layout computed
# off the GUI thread, recovery's data prefetch thread. test_run_threads is two cases of test_run
# (tests/CMakeLists.txt): a whole pruning run takes minutes under TSan.
tsan_tests=(test_run_threads test_export test_studio test_graph_view test_recovery)

case "$mode" in
  address)
    build=${LORASHEAR_SANITIZE_BUILD:-$root/build-asan}
    flags=(-DLORASHEAR_SANITIZE_ADDRESS=ON -DLORASHEAR_SANITIZE_UNDEFINED=ON)
    tests=("${asan_tests[@]}")
    ;;
  thread)
    build=${LORASHEAR_SANITIZE_BUILD:-$root/build-tsan}
    flags=(-DLORASHEAR_SANITIZE_THREAD=ON)
    tests=("${tsan_tests[@]}")
    ;;
  *)
    echo "usage: $0 address|thread [CTEST_REGEX]" >&2
    exit 2
    ;;
esac

if [[ -n $regex ]]; then
  picked=()
  for t in "${tests[@]}"; do [[ $t =~ $regex ]] && picked+=("$t"); done
  tests=("${picked[@]}")
  ((${#tests[@]})) || { echo "no $mode test matches '$regex'" >&2; exit 2; }
fi

export CCACHE_BASEDIR="$root"
export CCACHE_SLOPPINESS="${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}"
# -O1 keeps the reports' stacks readable and the tests fast enough; -g1: line tables only.
mkdir -p "$build"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1" \
  -DLORASHEAR_BUILD_TESTS=ON -DLORASHEAR_BUILD_BENCH=OFF -DLORASHEAR_UNITY_BUILD=ON "${flags[@]}" >"$build/configure.log" ||
  { cat "$build/configure.log"; exit 1; }
targets=()
for t in "${tests[@]}"; do targets+=("${t%_threads}"); done  # test_run_threads runs test_run
[[ $mode == address ]] && targets+=(lorashear)  # the CLI the CLI tests run
cmake --build "$build" -j "$jobs" --target "${targets[@]}"

status=0
run_ctest() {  # run_ctest TEST...: runs those tests of $build; remembers a failure
  local names
  names=$(IFS='|'; echo "$*")
  ctest --test-dir "$build" --output-on-failure -j "$jobs" --timeout 1200 -R "^($names)\$" ||
    status=1
}

if [[ $mode == thread ]]; then
  # A report fails the test at its exit (exitcode 66) after every report is printed. Qt is not
  # instrumented, so what its own locks order TSan cannot see (QMutex is a futex): our handoffs
  # through Qt say it with lorashear::Handoff (viewers/include/lorashear/viewers/threads.h), and
  # tsan.supp silences the calls the libraries make themselves, each with its reason.
  # die_after_fork=0: QProcess forks the (multithreaded) test to start the CLI, and the child execs.
  export TSAN_OPTIONS="suppressions=$supp/tsan.supp:second_deadlock_stack=1:history_size=3:exitcode=66:die_after_fork=0"
  run_ctest "${tests[@]}"
  exit $status
fi

export ASAN_OPTIONS="detect_leaks=1:check_initialization_order=1:strict_init_order=1:detect_stack_use_after_return=0:abort_on_error=0:halt_on_error=1"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$supp/ubsan.supp"
# LeakSanitizer looks at every suite, the widget ones included; lsan.supp names the two libraries
# whose own leaks are suppressed (Graphviz's dot layout, fontconfig's caches), with the reasons.
run_ctest "${tests[@]}"
exit $status
