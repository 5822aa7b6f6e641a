#!/usr/bin/env bash
# What the portable build (attention kernel chosen at run time: baseline / AVX2 / AVX-512) costs
# against a -DLORASHEAR_NATIVE_KERNELS=ON build: tokens/s of `lorashear eval ppl` on stories260K,
# the two executables alternated (order flipped every repetition) so that drift in the machine's
# speed hits both alike. Then the portable executable's variants against each other
# (LORASHEAR_CPU_KERNEL), which shows what the dispatch buys. Prints figures only, never pass/fail.
#
#   bench/bench_portable.sh NATIVE_CLI PORTABLE_CLI [REPS=7]
#
# Environment: BENCH_MODEL, BENCH_TOKENIZER, BENCH_TEXT (default: ../shared/... beside the repo),
# BENCH_MAX_WINDOWS (400), BENCH_VARIANT_REPS (repetitions per variant, default REPS; 0 = skip).
set -euo pipefail

if [[ $# -lt 2 || $# -gt 3 ]]; then
  echo "usage: $0 NATIVE_CLI PORTABLE_CLI [REPS=7]" >&2
  exit 2
fi
native=$1
portable=$2
reps=${3:-7}
repo=$(cd "$(dirname "$0")/.." && pwd)
shared=$repo/../shared
model=${BENCH_MODEL:-$shared/models/stories260K/stories260K.bin}
tokenizer=${BENCH_TOKENIZER:-$shared/models/stories260K/tok512.model}
text=${BENCH_TEXT:-$shared/data/text/tinystories_val_subset.txt}
windows=${BENCH_MAX_WINDOWS:-400}
variant_reps=${BENCH_VARIANT_REPS:-$reps}
py=/usr/bin/python3

for f in "$native" "$portable" "$model" "$tokenizer" "$text"; do
  [[ -e $f ]] || { echo "not found: $f" >&2; exit 2; }
done

# tokens_per_second of one run of executable $1 (extra environment in the rest of the arguments).
tps() {
  local exe=$1
  shift
  env "$@" "$exe" --json eval ppl "$model" --tokenizer "$tokenizer" --text "$text" \
    --max-windows "$windows" |
    "$py" -c 'import json, sys; print(json.load(sys.stdin)["tokens_per_second"])'
}

# Reads "label value" lines; prints median and min-max per label, in order of first appearance.
summary() {
  "$py" -c '
import statistics, sys
vals = {}
for line in sys.stdin:
    label, v = line.split()
    vals.setdefault(label, []).append(float(v))
for label, v in vals.items():
    f = (lambda x: f"{x:8.4f}") if max(v) < 100 else (lambda x: f"{x:8.0f}")
    print(f"  {label:<16} median {f(statistics.median(v))}   min-max {f(min(v))} - {f(max(v))}   (n={len(v)})")
'
}

echo "model $model, text $text, $windows windows"
echo "native:   $native"
echo "portable: $portable"
echo
printf '%-4s %-8s %14s %14s %8s\n' rep first native_tok/s portable_tok/s ratio
figures=""
for ((i = 1; i <= reps; i++)); do
  if ((i % 2)); then
    first=native
    n=$(tps "$native")
    p=$(tps "$portable")
  else
    first=portable
    p=$(tps "$portable")
    n=$(tps "$native")
  fi
  r=$("$py" -c "print(f'{$p / $n:.4f}')")
  printf '%-4s %-8s %14.0f %14.0f %8s\n' "$i" "$first" "$n" "$p" "$r"
  figures+="native $n"$'\n'"portable $p"$'\n'"portable/native $r"$'\n'
done
echo
echo "summary (tokens/s; ratio = portable/native of the same repetition):"
printf '%s' "$figures" | summary

((variant_reps > 0)) || exit 0
# The portable executable's kernel variants, round-robin (each repetition starts one further). A
# variant this CPU lacks is refused by the executable (exit status 2) and skipped.
variants=()
for v in baseline avx2 avx512; do
  if LORASHEAR_CPU_KERNEL=$v "$portable" --json eval ppl "$model" \
    --tokenizer "$tokenizer" --text "$text" --max-windows 1 >/dev/null 2>&1; then
    variants+=("$v")
  else
    echo "variant $v: not available in $portable on this CPU"
  fi
done
echo
echo "portable executable by variant (LORASHEAR_CPU_KERNEL), $variant_reps repetitions each:"
figures=""
for ((i = 1; i <= variant_reps; i++)); do
  line="  rep $i:"
  for ((j = 0; j < ${#variants[@]}; j++)); do
    v=${variants[(i + j) % ${#variants[@]}]}
    t=$(tps "$portable" LORASHEAR_CPU_KERNEL="$v")
    line+=$(printf ' %s %.0f' "$v" "$t")
    figures+="$v $t"$'\n'
  done
  echo "$line"
done
printf '%s' "$figures" | summary
