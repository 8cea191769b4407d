#!/bin/bash
# Mixed precision without a GPU: the CPU bf16 emulation (train.precision =
# bf16) runs the CUDA backend's data flow — bf16 weights, activations and
# gradients, fp32 master weights and moments, staged bf16 collectives,
# checkpoint staging — and must track the fp32 run; checkpoints cross
# between the two precisions. Also: train.device = cuda on a machine without
# a usable GPU stops every rank with exit 1.
source tests/lib.sh
plan 10
make_data 32
make_deck
run() { # run NAME NP OVERRIDES...: metrics in $T/NAME.jsonl
  local name=$1 np=$2; shift 2
  rm -rf "$T/$name.ck" "$T/$name.jsonl"
  lam "$np" train "$T/tiny.in" train.steps=8 checkpoint.every=4 checkpoint.dir="$T/$name.ck" \
    log.metrics="$T/$name.jsonl" "$@"
  cp "$T/out" "$T/$name.out"
}
run f32 1
run b1 1 train.precision=bf16
[ "$rc" = 0 ] && grep -q "fp32 master weights" "$T/b1.out" && ok "bf16 run: memory matches the mixed-precision ZeRO formula" \
  || notok "bf16 run" "$(tail -3 "$T/b1.out")"
r=$(close "$T/b1.jsonl" "$T/f32.jsonl" 1 8 0.03) && ok "bf16 tracks fp32 over 8 steps ($r)" || notok "bf16 vs fp32" "$r"
for z in 0 1 2; do
  run "b2z$z" 2 train.precision=bf16 parallel.zero=$z
  r=$(close "$T/b2z$z.jsonl" "$T/b1.jsonl" 1 8 0.02) && ok "bf16 dp 2 ZeRO-$z tracks bf16 on 1 rank ($r)" \
    || notok "bf16 dp 2 ZeRO-$z" "rc=$rc $r" "$(tail -3 "$T/b2z$z.out")"
done
# same-layout restart: master weights and moments round-trip exactly
cp -r "$T/b2z1.ck" "$T/rs.ck" && rm -f "$T/rs.ck/step_00000008.h5" && echo step_00000004.h5 > "$T/rs.ck/latest"
lam 2 train "$T/tiny.in" train.steps=8 train.precision=bf16 parallel.zero=1 checkpoint.every=4 \
  checkpoint.dir="$T/rs.ck" log.metrics="$T/rs.jsonl"
r=$(close "$T/rs.jsonl" "$T/b2z1.jsonl" 5 8 0) && ok "bf16 restart on the same layout is bit-identical ($r)" \
  || notok "bf16 restart" "rc=$rc $r" "$(tail -3 "$T/out")"
# a bf16 checkpoint resumes in fp32 (1 rank), an fp32 one in bf16 (dp 2, ZeRO-2)
lam 1 train "$T/tiny.in" train.steps=8 checkpoint.restart="$T/b2z1.ck/step_00000004.h5" checkpoint.dir="$T/x1" \
  log.metrics="$T/x1.jsonl"
r=$(close "$T/x1.jsonl" "$T/b2z1.jsonl" 5 8 0.03) && ok "bf16 checkpoint continues in fp32 ($r)" || notok "bf16 -> fp32" "rc=$rc $r"
lam 2 train "$T/tiny.in" train.steps=8 train.precision=bf16 parallel.zero=2 \
  checkpoint.restart="$T/f32.ck/step_00000004.h5" checkpoint.dir="$T/x2" log.metrics="$T/x2.jsonl"
r=$(close "$T/x2.jsonl" "$T/f32.jsonl" 5 8 0.03) && ok "fp32 checkpoint continues in bf16 ($r)" || notok "fp32 -> bf16" "rc=$rc $r"
# no usable GPU here (or a build without CUDA): exit 1 on every rank, with the reason
lam 2 train "$T/tiny.in" train.device=cuda model.n_heads=1 model.n_kv_heads=1 checkpoint.dir="$T/cu"
expect_fail 1 "train.device = cuda" "train.device = cuda without a usable GPU: exit 1 with the reason"
lam 2 train "$T/tiny.in" train.device=cuda checkpoint.dir="$T/cu"
expect_fail 2 "head_dim 64" "train.device = cuda with head_dim 16: exit 2 naming the rule"
finish
