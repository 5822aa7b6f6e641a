#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang + ASan + UBSan in build-fuzz/ and runs them.
#   scripts/fuzz.sh [TARGET|all] [SECONDS]      (default: all, 60 s per target)
# Targets: safetensors hf_index hf_folder gguf llama2c tokenizer_bin spm tokenizer_json config_json plan
# lora_adapter task metrics_jsonl.
# The corpus of each target grows in build-fuzz/fuzz-corpus/TARGET (kept between runs); it starts
# from the hand-made seeds in fuzz/corpus/TARGET, the inputs in fuzz/regressions/TARGET, real files
# from ../shared (models, tokenizers, configs, task data; copied at run time, never into the
# repository) and files written by the CLI of the main build (build/app/cli/lorashear convert),
# when it is there. A crash, leak, UB report, timeout or out-of-memory leaves its input in
# build-fuzz/fuzz-artifacts/TARGET/ (printed); add it to fuzz/regressions/TARGET/ once fixed.
# Environment: LORASHEAR_FUZZ_BUILD (build folder), LORASHEAR_SHARED (../shared),
# LORASHEAR_FUZZ_JOBS (build jobs, 2), LORASHEAR_FUZZ_FLAGS (extra libFuzzer flags, e.g. -jobs=2;
# -runs=1000000 stops a target at a million executions, before SECONDS).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${LORASHEAR_FUZZ_BUILD:-$root/build-fuzz}
shared=${LORASHEAR_SHARED:-$root/../shared}
jobs=${LORASHEAR_FUZZ_JOBS:-2}
all_targets=(safetensors hf_index hf_folder gguf llama2c tokenizer_bin spm tokenizer_json config_json plan
             lora_adapter task metrics_jsonl)
which=${1:-all}
seconds=${2:-60}
if [[ $which == all ]]; then
  targets=("${all_targets[@]}")
elif [[ " ${all_targets[*]} " == *" $which "* ]]; then
  targets=("$which")
else
  echo "unknown target '$which'; one of: all ${all_targets[*]}" >&2
  exit 2
fi

# ---- configure + build (clang only here; the main build/ folder is never touched) -------------------
if ! grep -qs '^LORASHEAR_FUZZ:BOOL=ON' "$build/CMakeCache.txt"; then
  CC=${CC_FUZZ:-clang} CXX=${CXX_FUZZ:-clang++} cmake -S "$root" -B "$build" -G Ninja \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLORASHEAR_FUZZ=ON -DLORASHEAR_BUILD_TESTS=OFF \
    -DLORASHEAR_BUILD_BENCH=OFF -DLORASHEAR_USE_TCMALLOC=OFF
fi
cmake --build "$build" -j"$jobs" --target "${targets[@]/#/fuzz_}"

# ---- seeds --------------------------------------------------------------------------------------------
seeds=$build/fuzz-seeds
rm -rf "$seeds"
mkdir -p "$seeds"
add() {  # add TARGET FILE...: copies existing files into the target's seed folder
  local t=$1
  shift
  mkdir -p "$seeds/$t"
  for f in "$@"; do
    [[ -f $f ]] && cp -f "$f" "$seeds/$t/$(basename "$(dirname "$f")")_$(basename "$f")"
  done
  return 0
}
for t in "${all_targets[@]}"; do
  mkdir -p "$seeds/$t"
  for d in "$root/fuzz/corpus/$t" "$root/fuzz/regressions/$t"; do
    [[ -d $d ]] && find "$d" -maxdepth 1 -type f -exec cp -f {} "$seeds/$t/" \;
  done
done
m=$shared/models/stories260K
add gguf "$m/stories260K.gguf"
add llama2c "$m/stories260K.bin"
add tokenizer_bin "$m/tok512.bin"
add spm "$m/tok512.model"
add config_json "$shared"/configs/*/config.json
for f in "$shared"/data/eval/*.jsonl; do  # a few items of each task: small, fast inputs
  [[ -f $f ]] && head -n 4 "$f" > "$seeds/task/$(basename "$f")" 2>/dev/null || true
done
# tokenizer.json: the real files are megabytes; keep the first 2000 tokens and the merges among them.
if command -v python3 > /dev/null; then
  for f in "$shared"/tokenizers/*/tokenizer.json; do
    [[ -f $f ]] || continue
    python3 - "$f" "$seeds/tokenizer_json/$(basename "$(dirname "$f")").json" <<'PY' || true
import json, sys
j = json.load(open(sys.argv[1], encoding="utf-8"))
m = j.get("model", {})
vocab = {k: v for k, v in m.get("vocab", {}).items() if v < 2000}
def parts(x):
    return x.split(" ", 1) if isinstance(x, str) else x
m["vocab"] = vocab
m["merges"] = [x for x in m.get("merges", [])
               if len(parts(x)) == 2 and all(p in vocab for p in parts(x)) and "".join(parts(x)) in vocab]
j["added_tokens"] = [t for t in j.get("added_tokens", []) if t.get("id", 0) < 2000]
json.dump(j, open(sys.argv[2], "w", encoding="utf-8"), ensure_ascii=False)
PY
  done
fi
# hf_folder's input: a folder's files as records (a byte naming the file, 4 bytes little-endian
# length, the bytes; the names are fuzz_inputs.cpp's kHfFolderFiles, in that order).
pack_folder() {  # pack_folder DIR OUT
  python3 - "$1" "$2" <<'PY' || true
import os, struct, sys
names = ["config.json", "model.safetensors", "model.safetensors.index.json",
         "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "tokenizer.json",
         "tokenizer.model", "tokenizer_config.json", "generation_config.json"]
out = bytearray()
for i, name in enumerate(names):
    path = os.path.join(sys.argv[1], name)
    if os.path.isfile(path):
        data = open(path, "rb").read()
        out += bytes([i]) + struct.pack("<I", len(data)) + data
open(sys.argv[2], "wb").write(out)
PY
}
# Files the engine's writers produce (the main build's CLI, when it is built).
cli=$root/build/app/cli/lorashear
if [[ -x $cli && -f $m/stories260K.bin ]]; then
  w=$build/fuzz-written
  if [[ ! -d $w ]]; then
    mkdir -p "$w"
    "$cli" -q convert "$m/stories260K.bin" --tokenizer "$m/tok512.model" --to hf "$w/hf" \
      --shard-size 0.3 > /dev/null 2>&1 || true
    "$cli" -q convert "$m/stories260K.bin" --tokenizer "$m/tok512.model" --to gguf "$w/q8.gguf" \
      --out-dtype q8_0 > /dev/null 2>&1 || true
    # Two shards of half a megabyte (bf16), and one file (f16), for hf_folder.
    "$cli" -q convert "$m/stories260K.bin" --tokenizer "$m/tok512.model" --to hf "$w/hf2" \
      --out-dtype bf16 --shard-size 0.35 > /dev/null 2>&1 || true
    "$cli" -q convert "$m/stories260K.bin" --tokenizer "$m/tok512.model" --to hf "$w/hf1" \
      --out-dtype f16 > /dev/null 2>&1 || true
  fi
  for d in hf1 hf2; do
    [[ -f $w/$d/config.json ]] && pack_folder "$w/$d" "$seeds/hf_folder/stories260K_$d"
  done
  add safetensors "$w"/hf/*.safetensors
  add hf_index "$w/hf/model.safetensors.index.json"
  add config_json "$w/hf/config.json"
  add gguf "$w/q8.gguf"
  add spm "$w/hf/tokenizer.model"
fi

# ---- run ----------------------------------------------------------------------------------------------
summary=()
status=0
for t in "${targets[@]}"; do
  corpus=$build/fuzz-corpus/$t
  artifacts=$build/fuzz-artifacts/$t
  mkdir -p "$corpus" "$artifacts"
  dict=()
  case $t in
    gguf) dict=(-dict="$root/fuzz/dict/gguf.dict") ;;
    safetensors | lora_adapter) dict=(-dict="$root/fuzz/dict/safetensors.dict") ;;
    hf_index | hf_folder | tokenizer_json | config_json | plan | task | metrics_jsonl)
      dict=(-dict="$root/fuzz/dict/json.dict") ;;
  esac
  log=$build/fuzz-$t.log
  echo "== fuzz_$t: ${seconds}s, corpus $corpus ($(find "$seeds/$t" -type f | wc -l) seeds)"
  set +e
  started=$SECONDS
  # -rss_limit_mb / -malloc_limit_mb: a small input that makes the parser reserve gigabytes is a
  # finding (declared sizes are checked against the file size before allocating).
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    "$build/fuzz/fuzz_$t" -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=2048 \
    -timeout=20 -print_final_stats=1 -artifact_prefix="$artifacts/" "${dict[@]}" \
    ${LORASHEAR_FUZZ_FLAGS:-} "$corpus" "$seeds/$t" > "$log" 2>&1
  rc=$?
  took=$((SECONDS - started))
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  line="fuzz_$t: rc $rc, ${execs:-?} executions in ${took}s, corpus $(find "$corpus" -type f | wc -l) files"
  if [[ $rc -ne 0 ]]; then
    status=1
    line+=", FINDING: $(grep -m1 -E 'ERROR|runtime error|uncaught|Test unit written' "$log" || echo "see $log")"
    line+="; artifacts: $(grep -o 'Test unit written to [^ ]*' "$log" | sed 's/Test unit written to //' | tr '\n' ' ')"
  fi
  echo "$line (log $log)"
  summary+=("$line")
done
echo
printf '%s\n' "${summary[@]}"
exit $status
