#!/bin/bash
# The layer rule (src/LAYERS.md): no file includes a header from a layer
# above its own; and the check does catch a planted upward include.
. tests/lib.sh
plan 2
out=$(bash tests/layers.sh 2>&1) && ok "no upward include: $out" || notok "upward includes" "$out"
mkdir -p "$T/tree"
cp -r Makefile src io cuda "$T/tree/"
sed -i '0,/#include "common.h"/s//#include "common.h"\n#include "session.h"/' "$T/tree/src/core/deck.c"
out=$(bash tests/layers.sh "$T/tree" 2>&1); rc=$?
if [ $rc = 1 ] && echo "$out" | grep -q "src/core/deck.c:.*session.h from layer 'run', above 'core'"; then
  ok "a planted upward include (core/deck.c -> run/session.h) fails the check"
else notok "planted upward include" "exit $rc" "$out"; fi
finish
