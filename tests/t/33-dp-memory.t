#!/bin/bash
# Memory accounting: with dp = 4 the bytes per rank that rank 0 reports for
# weights, gradients and optimizer state are the ZeRO formulas of the stage
# (Psi = chunk arena elements: n_chunks x chunk_size, chunk_size a multiple of
# 16 x dp), and the parameter count is the model's.
source tests/lib.sh
plan 3
make_data 32
make_deck
for z in 0 1 2; do
  lam 4 train "$T/tiny.in" train.steps=1 train.micro_batch=1 parallel.zero=$z
  if [ "$rc" = 0 ] && $PY - "$T/out" $z >"$T/.chk" 2>&1 <<'PYEOF'
import re, sys
log, z, dp = open(sys.argv[1]).read(), int(sys.argv[2]), 4
D, L, H, KV, F, V = 64, 2, 4, 2, 176, 258          # the tiny preset
hd = D // H
numel = V * D + L * (2 * D + D * D + 2 * KV * hd * D + D * D + 3 * D * F) + D + V * D
m = re.search(r"parameters: (\d+) in \d+ tensors; chunks: (\d+) x (\d+) elements", log)
if m:  # chunks of one length
    n, nc, cs = map(int, m.groups())
    arena_ok = lambda psi: psi == nc * cs and cs % (16 * dp) == 0
else:  # outsized tensors in chunks of their own
    m = re.search(r"parameters: (\d+) in \d+ tensors; chunks: (\d+) \(\d+ of them an outsized tensor alone\), "
                  r"regular (\d+) elements, longest (\d+)", log)
    n, nc, cs, longest = map(int, m.groups())
    arena_ok = lambda psi: cs % (16 * dp) == 0 and longest % (16 * dp) == 0 and cs * 1 <= psi <= nc * longest
m = re.search(r"memory per rank \(ZeRO-(\d), dp (\d+), Psi = (\d+) elements with padding\): weights (\d+) B .*"
              r"gradients (\d+) B .*optimizer state (\d+) B", log)
st, d, psi, w, g, o = map(int, m.groups())
want = (4 * psi, 4 * psi // (dp if z == 2 else 1), 8 * psi // (1 if z == 0 else dp))
print(f"params {n} (model {numel}), chunks {nc} x {cs}, Psi {psi}: weights {w} grads {g} optim {o}, want {want}")
ok = (n == numel and st == z and d == dp and arena_ok(psi) and psi >= numel
      and (w, g, o) == want)
sys.exit(0 if ok else 1)
PYEOF
  then ok "ZeRO-$z, dp 4: $(cat "$T/.chk")"
  else notok "ZeRO-$z memory accounting" "exit $rc" "$(cat "$T/.chk")" "$(grep -i "memory per rank\|error" "$T/out" | head -3)"; fi
done
finish
