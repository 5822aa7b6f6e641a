#!/usr/bin/env bash
# Writes lorashear.1 and lorashear-studio.1 into OUTDIR with help2man, from the programs' own
# --help and --version, so the man pages always match the options. lorashear's page also gets
# every subcommand's --help (help2man alone would only show the top level).
#   make-manpages.sh LORASHEAR LORASHEAR_STUDIO OUTDIR
set -euo pipefail
cli="$1" studio="$2" out="$3"
mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
export QT_QPA_PLATFORM=offscreen  # lorashear-studio --help needs no display, but be safe

roff_block() {  # stdin → a no-fill roff block with roff's special characters escaped
  echo ".nf"
  sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"
  echo ".fi"
}

# Subcommands as lorashear --help lists them ("  NAME   description" under "Subcommands:").
subcommands() {
  "$1" --help | awk '/^Subcommands:/{on=1; next} on && /^  [a-z]/{print $1} on && /^[^ ]/{on=0}'
}

# help2man runs this wrapper instead of lorashear: the same --help without the "Examples:" block
# (help2man would run its lines together; they go to an EXAMPLES section as written).
cat > "$tmp/lorashear" <<WRAP
#!/bin/sh
if [ "\$1" = --help ]; then
  "$cli" --help | awk '/^Examples:/{skip=1; next} skip && /^  /{next} {skip=0; print}'
else
  exec "$cli" "\$@"
fi
WRAP
chmod +x "$tmp/lorashear"

{
  echo "[EXAMPLES]"
  "$cli" --help | awk '/^Examples:/{on=1; next} on && /^  /{sub(/^  /, ""); print; next} {on=0}' |
    roff_block
  echo "[SUBCOMMANDS]"
  for sub in $(subcommands "$cli"); do
    echo ".SS \"lorashear $sub\""
    "$cli" "$sub" --help | roff_block
    # Nested subcommands (eval ppl, eval tasks).
    for nested in $("$cli" "$sub" --help | awk '/^Subcommands:/{on=1; next} on && /^  [a-z]/{print $1} on && /^[^ ]/{on=0}'); do
      echo ".SS \"lorashear $sub $nested\""
      "$cli" "$sub" "$nested" --help | roff_block
    done
  done
  cat <<'ROFF'
[EXIT STATUS]
0 success; 1 internal error (or a run that failed part-way, e.g. a sweep with failed runs);
2 usage error; 3 an input file is unreadable or inconsistent; 130 cancelled (Ctrl-C).
[ENVIRONMENT]
.TP
.B LORASHEAR_SPM_MODULE
Path of the SentencePiece module (default: /usr/lib/<multiarch>/lorashear/liblorashear_spm.so).
.TP
.B LORASHEAR_EVAL_DATA
Default folder of zero-shot task files for \fBeval tasks\fR.
.TP
.B LORASHEAR_CPU_KERNEL
Force the CPU attention kernel: baseline, avx2 or avx512 (default: the best the CPU runs).
.TP
.B LORASHEAR_AVAILABLE_MEMORY_BYTES
Memory available to a run, in bytes, instead of MemAvailable of /proc/meminfo (e.g. a cgroup or
batch-scheduler allotment): what \fBplan-memory\fR and \fB--checkpoint-activations auto\fR compare a
run's needs with.
[FILES]
.TP
.I /usr/share/lorashear/demo-model
The demo model (a 0.46M-parameter LLaMA with its tokenizer).
.TP
.I /usr/share/doc/lorashear-studio/manual/index.html
The user guide.
[SEE ALSO]
.BR lorashear-studio (1)
ROFF
} > "$tmp/lorashear.h2m"

cat > "$tmp/studio.h2m" <<'ROFF'
[DESCRIPTION]
The desktop app of LoRAShear Studio: open a LLaMA-family model, see its dependency graph and the
structures that can be removed, plan the pruning ratios, run LHSPG pruning with knowledge
recovery live, compare the result with the dense model and export it. Help > User guide opens
the manual.
[ENVIRONMENT]
.TP
.B LORASHEAR_AVAILABLE_MEMORY_BYTES
Memory available to a run, in bytes, instead of MemAvailable of /proc/meminfo: what the Run dock's
memory line compares a run's needs with (see \fBlorashear\fR(1), \fBplan-memory\fR).
[FILES]
.TP
.I /usr/share/lorashear/demo-model
The demo model.
.TP
.I /usr/share/doc/lorashear-studio/manual/index.html
The user guide.
.TP
.I ~/.config/LoRAShear/LoRAShear Studio.conf
Preferences, recent models, window layout.
[SEE ALSO]
.BR lorashear (1)
ROFF

help2man --no-info --section 1 --source "LoRAShear Studio" --manual "User Commands" \
  --name "structured pruning with knowledge recovery for LLaMA-family models (command line)" \
  --include "$tmp/lorashear.h2m" --output "$out/lorashear.1" "$tmp/lorashear"
help2man --no-info --section 1 --source "LoRAShear Studio" --manual "User Commands" \
  --name "desktop app for structured pruning with knowledge recovery of LLaMA-family models" \
  --include "$tmp/studio.h2m" --output "$out/lorashear-studio.1" "$studio"
