#!/bin/bash
# Layer check: every #include "..." in src/, io/ and cuda/ names a header of
# the file's own layer or of a layer below it (the order in src/LAYERS.md,
# the same as LAYERS in the Makefile). Prints each upward include and exits
# 1 if there is one. cuda/ implements the device and comm interfaces and
# sits with dist. Usage: tests/layers.sh [ROOT] (default: the repository).
set -u
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root" || exit 2
order=$(sed -n 's/^LAYERS *:= *//p' Makefile)
[ -n "$order" ] || { echo "layers.sh: no LAYERS line in $root/Makefile" >&2; exit 2; }
declare -A rank
i=0
for l in $order; do rank[$l]=$i; i=$((i + 1)); done
rank[cuda]=${rank[dist]}
# layer of a file: its folder (src/LAYER/..., io/..., cuda/...)
layer_of() {
  case $1 in
    src/*/*) local d=${1#src/}; echo "${d%%/*}" ;;
    io/*) echo io ;;
    cuda/*) echo cuda ;;
    *) echo "" ;;
  esac
}
# where each header lives (header names are unique across the layers)
declare -A home
for h in src/*/*.h src/*/*.cuh io/*.h cuda/*.h cuda/*.cuh; do
  [ -e "$h" ] || continue
  b=${h##*/}
  if [ -n "${home[$b]:-}" ]; then echo "layers.sh: header $b is in both ${home[$b]} and $h" >&2; exit 1; fi
  home[$b]=$h
done
bad=0; n=0
for f in src/*/*.[ch] src/*/*.cu* io/*.[ch] cuda/*.[ch] cuda/*.cu cuda/*.cuh; do
  [ -e "$f" ] || continue
  lf=$(layer_of "$f")
  [ -n "${rank[$lf]:-}" ] || { echo "layers.sh: $f is in folder '$lf', which is not a layer in the Makefile's LAYERS" >&2; bad=1; continue; }
  while IFS=: read -r ln inc; do
    b=${inc##*/}
    h=${home[$b]:-}
    [ -n "$h" ] || continue  # a system or library header
    n=$((n + 1))
    lh=$(layer_of "$h")
    if [ "${rank[$lh]}" -gt "${rank[$lf]}" ]; then
      echo "$f:$ln: includes $inc from layer '$lh', above '$lf'"
      bad=1
    fi
  done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" | sed 's/^\([0-9]*\):.*"\([^"]*\)".*/\1:\2/')
done
if [ $bad = 0 ]; then echo "layers: $n includes, none upward ($order; cuda with dist)"; fi
exit $bad
