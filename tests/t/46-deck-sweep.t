#!/bin/bash
# Every numeric deck key (the list is read from src/core/deck.c) at 0, -1, 1e30,
# nan, inf, INT_MAX and INT_MAX-1 on the tiny deck, one at a time, singleton
# launches: each run ends within seconds with exit 0 or 2 (3 only for the
# wall-clock budget that bounds the runs), never 1 (except a clean "diverged" stop), 134, 137, 139 or a hang,
# and every exit 2 names the key. lamina issue 14, item 6.
. tests/lib.sh
plan 2
make_data 32
make_deck
keys=$($PY - <<'PYEOF'
import re
src = open("src/core/deck.c").read()
keys = re.findall(r'K[ILD]\("(\w+)", "(\w+)"', src)
keys += re.findall(r'\{"(\w+)", "(\w+)", (?:T_|INI_)(?:U64|DP)\b', src)
print(" ".join(f"{s}.{k}" for s, k in keys))
PYEOF
)
n=$(echo $keys | wc -w)
# one KEY VALUE: a run; prints "0", "2" (exit 2 naming the key) or "bad why".
one() {
  local k=$1 v=$2 d="$T/run.$1.$2" extra="train.max_minutes=0.02" rc=0
  mkdir -p "$d"
  [ "$k" = train.max_minutes ] && extra=""
  timeout 60 "$LAMINA" train "$T/tiny.in" train.steps=1 checkpoint.dir="$d/ck" checkpoint.restart=none \
    $extra "$k=$v" >"$d/out" 2>&1 || rc=$?
  case $rc in
    0) echo 0 ;;
    2) if grep -q "^lamina: error:.*$k" "$d/out"; then echo 2
       else echo "bad $k=$v: exit 2 without naming the key ($(grep error "$d/out" | head -1 | cut -c1-160));"; fi ;;
    1) if grep -q "^lamina: error.*diverged" "$d/out"; then echo 1
       else echo "bad $k=$v: exit 1 ($(grep -i error "$d/out" | head -1 | cut -c1-160));"; fi ;;
    3) if grep -q "train.max_minutes" "$d/out"; then echo 3; else echo "bad $k=$v: exit 3 not from the budget;"; fi ;;
    *) echo "bad $k=$v: exit $rc ($(grep -i error "$d/out" | head -1 | cut -c1-160));" ;;
  esac
  rm -rf "$d"
}
export -f one
export T LAMINA
# The runs are independent singletons: two at a time.
# make check: two of the seven values per key, a different two for
# neighbouring keys (every value is tried on two sevenths of the keys);
# make check-long: all seven on every key.
vals=(0 -1 1e30 nan inf 2147483647 2147483646)
i=0
for k in $keys; do
  for j in 0 1 2 3 4 5 6; do
    [ "$LONG" = 1 ] || [ $(( (j + i) % 7 )) -lt 2 ] && echo "$k ${vals[$j]}"
  done
  i=$((i + 1))
done \
  | xargs -P 2 -n 2 bash -c 'one "$0" "$1"' > "$T/results"
runs=$(wc -l < "$T/results")
ok0=$(grep -c '^0$' "$T/results")
ok2=$(grep -c '^2$' "$T/results")
bad=$(grep '^bad ' "$T/results" | sed 's/^bad //' | tr '\n' ' ')
if [ "$n" -ge 30 ]; then ok "$n numeric keys read from src/core/deck.c"; else notok "numeric keys from src/core/deck.c" "only $n: $keys"; fi
if [ -z "$bad" ]; then ok "$runs runs: $ok0 exit 0, $ok2 exit 2 naming the key, none crashed or hung"
else notok "every run exits 0 or 2 naming the key" "$bad"; fi
finish
