#!/bin/bash
# Bad decks and layouts: exit 2 with a message naming the key, on all ranks.
source tests/lib.sh
plan 14
make_data 32
make_deck
bad() { # bad PATTERN DESCRIPTION OVERRIDES...
  local pat=$1 d=$2; shift 2
  lam 1 train "$T/tiny.in" "$@"
  expect_fail 2 "$pat" "$d"
}
bad "model.foo" "unknown key" model.foo=1
bad "train.lr" "malformed number" train.lr=abc
bad "train.beta1" "out of range" train.beta1=1.5
bad "model.n_kv_heads" "n_heads not divisible by n_kv_heads" model.n_kv_heads=3
bad "model.dim" "dim not divisible by n_heads" model.dim=66
bad "override" "override without =" train.lr
bad "train.global_batch" "global_batch not a multiple of micro_batch" train.global_batch=5
bad "parallel.tp" "tensor parallelism not in this version" parallel.tp=2
bad "train.precision" "fp32 on the CUDA backend" train.device=cuda train.precision=fp32
bad "train.steps" "steps must be positive" train.steps=0
lam 1 train "$T/nope.in"
expect_fail 2 "nope.in" "missing deck file"
printf '[model]\npreset = tiny\n[bogus]\nx = 1\n' > "$T/bad.in"
lam 1 train "$T/bad.in"
expect_fail 2 "bad.in:3" "unknown section, with file:line"
lam 2 train "$T/tiny.in" parallel.dp=4
expect_fail 2 "parallel.dp = 4 x tp = 1 x pp = 1 = 4 does not match the 2 ranks" "2 ranks with parallel.dp = 4: exit 2 on all ranks"
lam 2 train "$T/tiny.in" model.n_kv_heads=3
expect_fail 2 "model.n_kv_heads" "deck error on 2 ranks: exit 2"
finish
