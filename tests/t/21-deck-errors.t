#!/bin/bash
# Bad decks and layouts: exit 2 with a message naming the key, on all ranks.
source tests/lib.sh
plan 19
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
bad "train.precision" "fp32 on the CUDA backend" train.device=cuda train.precision=fp32
bad "train.steps" "steps must be positive" train.steps=0
lam 1 train "$T/nope.in"
expect_fail 2 "nope.in" "missing deck file"
lam 1 train --bogus "$T/tiny.in"
expect_fail 2 "train: unknown option --bogus (usage: lamina train DECK" "train: unknown option, exit 2 naming it and the usage"
lam 1 train
expect_fail 2 "train: missing DECK" "train without a deck: exit 2"
printf '[model]\npreset = tiny\n[bogus]\nx = 1\n' > "$T/bad.in"
lam 1 train "$T/bad.in"
expect_fail 2 "bad.in:3" "unknown section, with file:line"
lam 2 train "$T/tiny.in" parallel.dp=4
expect_fail 2 "parallel.dp = 4 x tp = 1 x pp = 1 = 4 does not match the 2 ranks" "2 ranks with parallel.dp = 4: exit 2 on all ranks"
lam 2 train "$T/tiny.in" model.n_kv_heads=3
expect_fail 2 "model.n_kv_heads" "deck error on 2 ranks: exit 2"
# tensor-parallel shapes that cannot be split: exit 2 on all ranks, naming the key
lam 3 train "$T/tiny.in" parallel.tp=3 train.global_batch=2
expect_fail 2 "model.n_heads = 4 is not divisible by parallel.tp = 3" "tp 3 with 4 heads"
lam 2 train "$T/tiny.in" parallel.tp=2 model.ffn_dim=171
expect_fail 2 "model.ffn_dim = 171 is not divisible by parallel.tp = 2" "tp 2 with ffn_dim 171"
lam 2 train "$T/tiny.in" parallel.tp=2 model.dim=96 model.n_heads=12 model.n_kv_heads=3
expect_fail 2 "model.n_kv_heads = 3 with parallel.tp = 2" "tp 2 with 3 kv heads"
lam 2 train "$T/tiny.in" parallel.tp=2 parallel.sp=true train.micro_batch=1 train.seq_len=31
expect_fail 2 "parallel.sp = true: train.micro_batch x train.seq_len = 31" "sp with rows that do not split over tp"
finish
