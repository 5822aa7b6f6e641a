#!/usr/bin/env bash
# installer/test-install.sh DEB — installs the package in a clean Debian 12 root and uses it there.
#
# A fresh root (mmdebstrap --variant=minbase) has nothing of the build machine: `apt-get install
# ./DEB` inside it resolves the package's Depends from the Debian archive, so a library the
# Depends forgot, a file looked up at a build-tree path or a plugin that is not installed shows up
# here. Inside the root: lorashear --version, info / generate / eval ppl on the installed demo model
# (perplexity equal to the build tree's), a screenshot of the app whose pixels must show the graph,
# --export-graph, the no-display message, a missing SentencePiece module, the desktop entry and
# AppStream metadata, then apt-get purge must leave no file behind. lintian must report no error.
#
# Needs root (chroot, mount). Exit codes: 0 passed, 1 failed, 77 skipped (not root).
# Environment: LORASHEAR_BUILD_DIR (the build tree whose lorashear gives the reference perplexity;
# default: the .deb's folder), KEEP_ROOT=1 keeps the root for inspection.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$(cd "$here/.." && pwd)"
if [ $# -ne 1 ] || [ ! -f "$1" ]; then
  echo "usage: $0 DEB   (build it with: bash scripts/bootstrap.sh package)" >&2
  [ $# -eq 1 ] && echo "error: no package at $1" >&2
  exit 1
fi
deb="$(realpath "$1")"
build="${LORASHEAR_BUILD_DIR:-$(dirname "$deb")}"
if [ "$(id -u)" != 0 ]; then
  echo "SKIPPED: installing into a clean Debian root needs root (chroot, mount); CI runs as root"
  exit 77
fi
for tool in mmdebstrap lintian desktop-file-validate appstreamcli; do
  command -v "$tool" >/dev/null || {
    echo "error: $tool is missing (scripts/bootstrap.sh installs it)" >&2
    exit 1
  }
done

start=$(date +%s%N)
elapsed() {
  local ms=$((($(date +%s%N) - start) / 1000000))
  printf '%d.%d s' $((ms / 1000)) $((ms % 1000 / 100))
}
step() { printf '\n==> [%s] %s\n' "$(elapsed)" "$*"; }
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

root="$(mktemp -d /tmp/lorashear-install-root.XXXXXX)"
cleanup() {
  for m in proc dev/shm; do
    mountpoint -q "$root/$m" && umount -l "$root/$m"
  done
  if [ "${KEEP_ROOT:-0}" = 1 ]; then echo "root kept: $root"; else rm -rf "$root"; fi
}
trap cleanup EXIT
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }

step "lintian $(basename "$deb")"
lintian_out="$(lintian --tag-display-limit 0 "$deb" 2>&1 | grep -v 'root privileges' || true)"
echo "${lintian_out:-(no tags)}"
if grep -q '^E: ' <<<"$lintian_out"; then fail "lintian reports errors"; fi

step "A clean Debian 12 root (mmdebstrap --variant=minbase bookworm)"
# The build machine's own sources (same mirror, same security and update suites as the libraries
# the package was linked against).
sources=/etc/apt/sources.list.d/debian.sources
[ -f "$sources" ] || sources=/etc/apt/sources.list
mmdebstrap --quiet --variant=minbase --mode=root --aptopt='Acquire::Check-Valid-Until "false"' \
  bookworm "$root" "$sources"
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
mount -t proc proc "$root/proc"
mkdir -p "$root/dev/shm" && mount -t tmpfs shm "$root/dev/shm"

step "apt-get install ./$(basename "$deb") (Depends from the archive)"
cp "$deb" "$root/tmp/"
in_root apt-get update -qq
in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
  "/tmp/$(basename "$deb")" >"$root/tmp/apt.log" 2>&1 || {
  tail -30 "$root/tmp/apt.log"
  fail "apt-get install failed"
}
grep -E "newly installed|Need to get" "$root/tmp/apt.log" || true
in_root dpkg -L lorashear-studio >"$root/tmp/files.txt"
echo "$(wc -l <"$root/tmp/files.txt") paths installed; package installed size $(in_root dpkg-query -W -f='${Installed-Size}' lorashear-studio) KiB"

step "lorashear --version"
in_root lorashear --version || fail "lorashear --version"
demo=/usr/share/lorashear/demo-model

step "lorashear info / generate on the installed demo model"
in_root lorashear info "$demo" | head -12 || fail "lorashear info"
text_out="$(in_root lorashear generate "$demo" --prompt "Once upon a time" -n 40)" ||
  fail "lorashear generate"
echo "$text_out"
grep -q "Once upon a time" <<<"$text_out" || fail "generate did not continue the prompt"

step "lorashear eval ppl: installed vs build tree"
text="$src/../shared/data/text/tinystories_val_subset.txt"
[ -f "$text" ] || text="$src/README.md"
cp "$text" "$root/tmp/text.txt"
ppl_args=(--text /tmp/text.txt --preset windows-128 --max-windows 40)
installed="$(in_root lorashear --json eval ppl "$demo" "${ppl_args[@]}")" || fail "eval ppl (installed)"
built="$(cd "$root" && "$build/app/cli/lorashear" --json eval ppl "$src/resources/demo-model" \
  --text "$root/tmp/text.txt" --preset windows-128 --max-windows 40)" || fail "eval ppl (build tree)"
ppl_of() { sed -n 's/^ *"ppl": \([0-9.e+-]*\),*$/\1/p' <<<"$1"; }
echo "installed: ppl $(ppl_of "$installed")   build tree: ppl $(ppl_of "$built")"
[ -n "$(ppl_of "$installed")" ] && [ "$(ppl_of "$installed")" = "$(ppl_of "$built")" ] ||
  fail "the installed program's perplexity differs from the build tree's"

step "lorashear-studio --screenshot (offscreen), pixels checked"
in_root env QT_QPA_PLATFORM=offscreen lorashear-studio --screenshot /tmp/shot.png ||
  fail "lorashear-studio --screenshot"
cp "$root/tmp/shot.png" "$build/installed-studio.png"
python3 "$here/check-screenshot.py" "$root/tmp/shot.png" || fail "the screenshot shows no graph"

step "lorashear-studio --export-graph g.svg"
in_root lorashear-studio --export-graph /tmp/g.svg "$demo" || fail "--export-graph"
grep -q "<svg" "$root/tmp/g.svg" && grep -q "embed_tokens" "$root/tmp/g.svg" ||
  fail "g.svg is not the model's graph"
echo "g.svg: $(stat -c %s "$root/tmp/g.svg") bytes"

step "lorashear-studio without a display"
set +e
msg="$(in_root lorashear-studio 2>&1)"
rc=$?
set -e
echo "$msg"
[ $rc -eq 2 ] && grep -q -- "--screenshot" <<<"$msg" ||
  fail "without a display: exit $rc (want 2) and a message naming --screenshot"

step "A missing SentencePiece module"
spm="$(grep '/liblorashear_spm.so$' "$root/tmp/files.txt")"
mv "$root$spm" "$root/tmp/spm.so"
set +e
msg="$(in_root lorashear tokenize --tokenizer "$demo/tokenizer.model" --text hello 2>&1)"
rc=$?
set -e
mv "$root/tmp/spm.so" "$root$spm"
echo "exit $rc: $msg"
[ $rc -ne 0 ] && [ "$(wc -l <<<"$msg")" -eq 1 ] && grep -q "liblorashear_spm.so" <<<"$msg" ||
  fail "a missing module must give a one-line error naming the file"

step "desktop-file-validate, appstreamcli validate"
desktop-file-validate "$root/usr/share/applications/lorashear.desktop" || fail "desktop file"
appstreamcli validate --no-net "$root/usr/share/metainfo/org.lorashear.studio.metainfo.xml" ||
  fail "AppStream"
for f in /usr/share/icons/hicolor/scalable/apps/lorashear-studio.svg \
  /usr/share/icons/hicolor/48x48/apps/lorashear-studio.png /usr/share/man/man1/lorashear.1.gz \
  /usr/share/man/man1/lorashear-studio.1.gz /usr/share/bash-completion/completions/lorashear \
  /usr/share/doc/lorashear-studio/copyright /usr/share/doc/lorashear-studio/manual/index.html; do
  [ -s "$root$f" ] || fail "$f is missing"
done

step "apt-get purge: nothing of the package is left"
in_root env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq lorashear-studio >"$root/tmp/purge.log" 2>&1 || {
  cat "$root/tmp/purge.log"
  fail "apt-get purge failed"
}
left=0
while read -r path; do
  [ -d "$root$path" ] && continue  # shared folders (/usr/bin, …) stay
  if [ -e "$root$path" ] || [ -L "$root$path" ]; then
    echo "left behind: $path"
    left=1
  fi
done <"$root/tmp/files.txt"
for d in /usr/share/lorashear /usr/share/doc/lorashear-studio "$(dirname "$spm")"; do
  [ -e "$root$d" ] && { echo "left behind: $d"; left=1; }
done
[ $left -eq 0 ] || fail "files remain after purge"

step "passed: $(basename "$deb") ($(stat -c %s "$deb") bytes) installs, runs and purges cleanly"
