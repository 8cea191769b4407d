#!/bin/bash
# lamina plan: the performance model's command line. Recommendations that
# fit (7B on 8 and 64 H100s), a deck and a fixed dimension, 70B on 8 GPUs
# (16 bytes per parameter / 8 GPUs = 138 GB: only with the optimizer state
# offloaded to the host), a deck's own layout (--deck: LLaMA-2-7B on one
# GPU with offload), the memory check's device limit (train.device_memory,
# exit 2 with the setting that fits, the same as plan's), the predicted
# memory of a layout against what a real run allocates, and bad arguments
# and files (exit 2 naming the problem).
source tests/lib.sh
plan 24
H100=inputs/clusters/h100-sxm.ini
CPU=inputs/clusters/local-cpu.ini

# recommended: ... : X GiB/GPU (limit Y), ... for every GPU count; X <= Y <= 80
fits() { $PY - "$T/out" "$1" <<'PYEOF'
import re, sys
rec = re.findall(r"recommended: (.*): ([\d.]+) GiB/GPU \(limit ([\d.]+)\)", open(sys.argv[1]).read())
n = int(sys.argv[2])
print(rec)
sys.exit(0 if len(rec) == n and all(float(x) <= float(y) <= 80 for _, x, y in rec) else 1)
PYEOF
}

lam 1 plan llama2-7b --cluster $H100 --gpus 8,64
if [ "$rc" = 0 ] && fits 2 >"$T/.f" && grep -q "== 64 x NVIDIA H100" "$T/out"; then ok "7B on 8 and 64 H100: a recommended layout each, within 80 GiB"
else notok "7B on 8 and 64 H100" "exit $rc" "$(cat "$T/.f")" "$(tail -5 "$T/out")"; fi
if grep -q "rejected: .*tp > gpus per node" "$T/out"; then ok "64 GPUs: tp 16+ rejected as crossing nodes"
else notok "tp across nodes rejected" "$(grep rejected "$T/out")"; fi
rec=$(grep -A5 "^recommended" "$T/out" | grep -m1 "run: mpirun -np 8")
if [[ $rec == *parallel.dp=*parallel.tp=*train.micro_batch=* ]]; then ok "recommended line gives the overrides to run it"
else notok "run line" "$rec"; fi

lam 1 plan inputs/llama2-7b.in --cluster $H100 --gpus 8 parallel.tp=2 train.recompute=true --top 3
if [ "$rc" = 0 ] && fits 1 >/dev/null && grep "^recommended" "$T/out" | grep -q "tp 2 .*recompute on"; then
  ok "a deck with parallel.tp=2 train.recompute=true: the search keeps them"
else notok "deck with fixed tp" "exit $rc" "$(grep -E "recommended|error" "$T/out")"; fi

lam 1 plan llama2-70b --cluster $H100 --gpus 8,64
if [ "$rc" = 0 ] && fits 2 >/dev/null && grep -q "== 64 x" "$T/out" \
   && grep -m1 "^recommended" "$T/out" | grep -q "offload optim 0\.[0-9]*, .*host [1-9][0-9.]* GiB/GPU"; then
  ok "70B on 8 x 80 GB: recommended with the optimizer state offloaded (host GiB shown); on 64 without"
else notok "70B on 8 / 64" "exit $rc" "$(grep -E "fits|recommended|rejected" "$T/out")"; fi
if grep -A5 -m1 "^recommended" "$T/out" | grep "run: mpirun -np 8" | grep -q "parallel.offload=optim parallel.offload_frac=0\.[0-9]* parallel.prefetch=2"; then
  ok "70B on 8: the run line sets parallel.offload, offload_frac and prefetch"
else notok "offload run line" "$(grep -A3 -m1 "^recommended" "$T/out")"; fi
# without the host keys offload is not searched: nothing fits on 8
grep -v -E "^(link_gbs|host_)" $H100 > "$T/nolink.ini"
lam 1 plan llama2-70b --cluster "$T/nolink.ini" --gpus 8
if [ "$rc" = 0 ] && grep -q "no layout fits: .* the smallest needs 1[0-9][0-9]\.[0-9] GiB .*offload not searched" "$T/out"; then
  ok "70B on 8 without link_gbs: no layout fits (offload not searched)"
else notok "70B without link" "exit $rc" "$(grep -E "fits|recommended" "$T/out")"; fi

# --deck: the deck's own layout (LLaMA-2-7B on one 80 GB GPU, optimizer offload)
lam 1 plan --deck inputs/llama2-7b-1gpu.in --cluster h100-sxm
if [ "$rc" = 0 ] && grep -q "^deck layout: fits, [0-9.]* GiB/GPU device (limit 76.0), [1-9][0-9.]* GiB/GPU host, offload optim 0.60, [0-9.]* s/step, [0-9]* tokens/s/GPU, MFU [0-9.]*%" "$T/out" \
   && grep -q "host (pinned) .*master .*moments .*gradient staging .*link per step: H2D" "$T/out"; then
  ok "--deck llama2-7b-1gpu.in: fits one H100, device and host memory, step time and MFU ($(grep "^deck layout" "$T/out" | cut -c1-80))"
else notok "--deck 7B 1 GPU" "exit $rc" "$(tail -4 "$T/out")"; fi
lam 1 plan --deck inputs/llama2-7b-1gpu.in --cluster h100-sxm parallel.offload=none
if [ "$rc" = 0 ] && grep -q "^deck layout: does not fit" "$T/out" \
   && grep -q "would fit: parallel.offload = optim with offload_frac >= 0\.[0-9]*" "$T/out"; then
  ok "--deck without offload: does not fit, and the smallest optim fraction that would"
else notok "--deck without offload" "exit $rc" "$(tail -4 "$T/out")"; fi

# the predicted memory of a layout = what the run allocates (a 3M-parameter
# shape on the tiny deck, dp 2, ZeRO-1)
make_data 32
make_deck
shape=(model.dim=256 model.n_layers=4 model.n_heads=8 model.n_kv_heads=4 model.ffn_dim=704)
lam 2 train "$T/tiny.in" "${shape[@]}" parallel.zero=1 train.steps=1
cp "$T/out" "$T/train.log"
lam 1 plan "$T/tiny.in" "${shape[@]}" --cluster $CPU --gpus 2 parallel.zero=1 parallel.tp=1 parallel.pp=1 \
  train.micro_batch=2 train.recompute=false parallel.sp=false
if [ "$rc" = 0 ] && $PY - "$T/train.log" "$T/out" >"$T/.m" 2>&1 <<'PYEOF'
import re, sys
run, pl = open(sys.argv[1]).read(), open(sys.argv[2]).read()
psi = re.search(r"Psi = (\d+) elements with padding", run).group(1)
w, g, o, a = re.search(r"memory per rank: weights ([\d.]+) MiB, gradients ([\d.]+) MiB.*optimizer state ([\d.]+) MiB, "
                       r"activations\+workspace ([\d.]+) MiB", run).groups()
m = re.search(r"memory per GPU .*: weights ([\d.]+) MiB.*gradients ([\d.]+) MiB .*optimizer state ([\d.]+) MiB, "
              r"activations kept ([\d.]+) MiB \+ workspace ([\d.]+) MiB; Psi = (\d+)", pl).groups()
print("run", psi, w, g, o, a, "plan", m)
sys.exit(0 if (m[5], m[0], m[1], m[2]) == (psi, w, g, o) and abs(float(m[3]) + float(m[4]) - float(a)) <= 0.11 else 1)
PYEOF
then ok "dp 2, ZeRO-1: predicted Psi, weights, gradients, optimizer, activations = the run's ($(tail -1 "$T/.m"))"
else notok "plan memory = run memory" "exit $rc" "$(cat "$T/.m")" "$(tail -3 "$T/out")"; fi

# the memory check's device: train.device_memory on the CPU backend emulates a
# device of that size; too small is exit 2 before allocating, naming the
# setting that fits, the same as lamina plan --deck says for it
lam 1 train "$T/tiny.in" train.device_memory=2500K train.steps=1
frac=$(grep -o "parallel.offload = optim with parallel.offload_frac >= [0-9.]*" "$T/out" | grep -o "[0-9.]*$")
if [ "$rc" = 2 ] && grep -q "not enough device memory: each rank needs .* but train.device_memory = 2.4 MiB. Would fit: parallel.offload = optim" "$T/out" \
   && grep -q "or train.device_memory >= " "$T/out" && ! grep -q "memory check:" "$T/out"; then
  ok "train.device_memory too small: exit 2 before allocating, naming parallel.offload (>= $frac) and train.device_memory"
else notok "device_memory check" "exit $rc" "$(tail -2 "$T/out" | cut -c1-400)"; fi
lam 1 plan --deck "$T/tiny.in" --cluster local-cpu train.device_memory=2500K
pf=$(grep -o "would fit: parallel.offload = optim with offload_frac >= [0-9.]*" "$T/out" | grep -o "[0-9.]*$")
if [ "$rc" = 0 ] && [ -n "$frac" ] && $PY -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); sys.exit(0 if b<=a<b+0.001 else 1)" "$frac" "$pf"; then
  ok "lamina plan --deck gives the same smallest fraction ($pf) as the memory check ($frac)"
else notok "plan --deck vs memcheck" "exit $rc" "plan '$pf' memcheck '$frac'" "$(tail -3 "$T/out")"; fi
lam 1 train "$T/tiny.in" train.device_memory=64M train.steps=1
if grep -q "memory check: .*device: [0-9.]* MiB per rank of 64.0 MiB (train.device_memory)" "$T/out"; then
  ok "train.device_memory large enough: the check passes and logs the device bytes"
else notok "device_memory enough" "exit $rc" "$(grep -E "memory check|error" "$T/out" | cut -c1-300)"; fi

# bad input: exit 2 naming the problem
printf '[cluster]\nname = x\nbogus = 1\n' > "$T/bad.ini"
lam 1 plan llama2-7b --cluster "$T/bad.ini" --gpus 8
expect_fail 2 "bad.ini:3: unknown key cluster.bogus" "cluster file with an unknown key"
grep -v mem_bw_gbs $H100 > "$T/miss.ini"
lam 1 plan llama2-7b --cluster "$T/miss.ini" --gpus 8
expect_fail 2 "miss.ini: cluster.mem_bw_gbs is required" "cluster file missing a key"
sed 's/^peak_tflops = .*/peak_tflops = fast/' $H100 > "$T/num.ini"
lam 1 plan llama2-7b --cluster "$T/num.ini" --gpus 8
expect_fail 2 "peak_tflops = 'fast': not a number" "cluster file with a bad number"
lam 1 plan llama2-7b --cluster $H100 --gpus 0
expect_fail 2 "\-\-gpus 0" "--gpus 0"
lam 1 plan llama2-7b --cluster $H100 --gpus 8,x
expect_fail 2 "\-\-gpus x" "--gpus 8,x"
lam 1 plan llama2-7b --gpus 8
expect_fail 2 "missing --cluster" "no --cluster"
lam 1 plan llama2-99b --cluster $H100 --gpus 8
expect_fail 2 "neither a deck file nor a preset" "unknown preset"
printf '[h100-sxm]\ngemm_eff_max = 2\n' > "$T/cal.ini"
lam 1 plan llama2-7b --cluster $H100 --gpus 8 --calibration "$T/cal.ini"
expect_fail 2 "cal.ini:2: h100-sxm.gemm_eff_max = '2': must be in (0, 1]" "calibration file with a value out of range"
lam 1 plan llama2-7b --cluster $H100 --gpus 8 parallel.tp=abc
expect_fail 2 "parallel.tp" "bad override"
lam 1 plan llama2-7b --cluster $H100 --gpus 8 --bogus 1
expect_fail 2 "plan: unknown option --bogus (usage: lamina plan" "unknown option: exit 2 naming it and the usage"
lam 1 plan llama2-7b --gpus 8 --cluster
expect_fail 2 "plan: --cluster needs a value (usage: lamina plan" "--cluster without its value: exit 2"
finish
