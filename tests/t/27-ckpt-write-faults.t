#!/bin/bash
# Reliability of checkpoint writes: a failure injected (LAMINA_CKPT_FAIL,
# io/ckpt.h) at every point of ckpt_save — file create, space reservation,
# root attributes, /config, groups, the create / data write / checksum of
# the first /model, a middle /optim/exp_avg and the last /optim/exp_avg_sq
# dataset, flush, close, and the publish steps (fsync, rename, directory
# sync, latest.tmp write / fsync / rename, last directory sync) — on 1, 2
# and 4 ranks, on one rank only (the last rank, and rank 0) where the point
# is per-rank. Each time: exit 1 within seconds (no hang, no core dump), a
# message naming the checkpoint file (and the dataset), no .tmp left, and
# the previous checkpoint byte-for-byte intact and still named by `latest`
# (after a failure of the very last directory sync, the new complete one).
# A restart from what a failure left resumes bit-identically. The table
# (point x ranks -> exit code, seconds, checkpoint kept) is printed as TAP
# diagnostics and kept at /tmp/ckpt_fault_table.txt.
# Not EXCLUSIVE: its deadline (2 s) is for ranks stuck in a collective, and
# a run may take 30 s; both hold on a loaded machine.
source tests/lib.sh
export LAMINA_CKPT_DEADLINE_S=2
common=(train.steps=4 checkpoint.every=2 train.micro_batch=1)
DS="dcreate.model.first dwrite.model.first dsum.model.first dcreate.exp_avg.mid dwrite.exp_avg.mid dsum.exp_avg.mid
    dcreate.exp_avg_sq.last dwrite.exp_avg_sq.last dsum.exp_avg_sq.last"
PERRANK="create attrs config group $DS flush close"
RANK0="reserve fsync rename dirsync latest latest_fsync latest_rename latest_dirsync"
# 2 ranks: every point, failing on the last rank; 1 rank: every point, one
# dataset per set and kind; 4 ranks: each kind of failure (hang inside a
# collective, graceful agreement, close, rank 0's publish) on rank 0 and on
# the last rank. About 50 runs of 2 training steps each.
rows=()
# (make check: 1 rank at a sample of the points; make check-long: all)
ONE="create dwrite.model.first close rename latest_rename"
[ "$LONG" = 1 ] && ONE="create attrs config group dcreate.exp_avg.mid dwrite.model.first dsum.exp_avg_sq.last flush close $RANK0"
for p in $ONE; do
  rows+=("1 $p")
done
for p in $PERRANK; do rows+=("2 $p:1"); done
for p in $RANK0; do rows+=("2 $p"); done
rows+=("4 create:3" "4 group:0" "4 dwrite.model.first:0" "4 dwrite.model.first:3" "4 dsum.exp_avg_sq.last:3"
       "4 flush:0" "4 close:3" "4 reserve" "4 latest_rename")
plan $(( ${#rows[@]} + 3 ))
make_data 32
make_deck

# The checkpoint every run starts from: step 2, written once.
lam 1 train "$T/tiny.in" "${common[@]}" train.steps=2 checkpoint.dir="$T/base"
base_md5=$(md5sum < "$T/base/step_00000002.h5")
[ "$rc" = 0 ] && [ "$(cat "$T/base/latest")" = step_00000002.h5 ] || { echo "Bail out! base run failed: $(tail -3 "$T/out")"; exit 1; }

# one NP POINT: copy the base, run steps 3-4 with the fault at the step-4
# checkpoint; sets rc, secs, kept (what latest names, if intact) and left
# (files that should not be there).
one() {
  local np=$1 fault=$2
  rm -rf "$T/ck"; cp -r "$T/base" "$T/ck"
  local t0=$(date +%s.%N)
  rc=0
  LAMINA_CKPT_FAIL="$fault@4" timeout 60 mpirun --bind-to none -np "$np" "$LAMINA" train "$T/tiny.in" "${common[@]}" \
    checkpoint.dir="$T/ck" log.metrics="$T/m.jsonl" >"$T/out" 2>&1 || rc=$?
  secs=$(printf %.1f "$(echo "$(date +%s.%N) - $t0" | bc)")
  kept="none"
  local l=$(cat "$T/ck/latest" 2>/dev/null)
  if [ -n "$l" ] && [ -f "$T/ck/$l" ] && [ "$(md5sum < "$T/ck/step_00000002.h5" 2>/dev/null)" = "$base_md5" ]; then
    kept=${l#step_0000000}; kept="step ${kept%.h5}"
  fi
  left=$(cd "$T/ck" && ls | grep -v '^latest$' | grep -v '^step_00000002.h5$' | tr '\n' ' ')
}

table="$T/table"
printf '%-28s %3s %5s %6s  %-8s %s\n' point np exit secs kept leftovers > "$table"
for r in "${rows[@]}"; do
  np=${r%% *}; fault=${r#* }; point=${fault%%:*}
  one "$np" "$fault"
  # latest_dirsync fails after latest already names the new, complete file
  want_kept="step 2"; want_left=""
  [ "$point" = latest_dirsync ] && want_kept="step 4" && want_left="step_00000004.h5 "
  why=()
  [ "$rc" = 1 ] || why+=("exit $rc (want 1; 124 = hang killed by timeout, 139/134 = crash)")
  [ "$(echo "$secs < 30" | bc)" = 1 ] || why+=("took $secs s")
  grep -q "lamina: error.*step_00000004.h5" "$T/out" || why+=("no error message naming step_00000004.h5")
  case $point in
    d*.model.*) grep -q "lamina: error.*/model/model\." "$T/out" || why+=("message does not name the /model dataset") ;;
    d*.exp_avg.*) grep -q "lamina: error.*/optim/exp_avg/model\." "$T/out" || why+=("message does not name the /optim/exp_avg dataset") ;;
    d*.exp_avg_sq.*) grep -q "lamina: error.*/optim/exp_avg_sq/" "$T/out" || why+=("message does not name the /optim/exp_avg_sq dataset") ;;
  esac
  [ "$kept" = "$want_kept" ] || why+=("checkpoint kept: $kept (want $want_kept)")
  [ "$left" = "$want_left" ] || why+=("left in the directory: $left")
  printf '%-28s %3s %5s %6s  %-8s %s\n' "$fault" "$np" "$rc" "$secs" "$kept" "${left:--}" >> "$table"
  if [ ${#why[@]} = 0 ]; then ok "np=$np $fault: exit 1 in $secs s, $kept kept"
  else notok "np=$np $fault" "${why[@]}" "$(grep -i "error" "$T/out" | head -3)"; fi
  # keep one failed directory per rank count for the restart check below
  [ "$point" = dwrite.model.first ] && rm -rf "$T/fail$np" && cp -r "$T/ck" "$T/fail$np"
done

# Restart from what a data-write failure left (one rank failed inside the
# collective write): same losses as a run from the base that never failed.
for np in 1 2 4; do
  rm -rf "$T/clean"; cp -r "$T/base" "$T/clean"
  lam "$np" train "$T/tiny.in" "${common[@]}" checkpoint.dir="$T/clean" log.metrics="$T/clean$np.jsonl"
  lam "$np" train "$T/tiny.in" "${common[@]}" checkpoint.dir="$T/fail$np" log.metrics="$T/again$np.jsonl"
  if [ "$rc" = 0 ] && grep -q "resuming from .*step_00000002.h5" "$T/out" && [ -n "$(losses 3 4 "$T/clean$np.jsonl")" ] \
     && [ "$(losses 3 4 "$T/clean$np.jsonl")" = "$(losses 3 4 "$T/again$np.jsonl")" ]; then
    ok "np=$np: restart after an injected write failure is bit-identical to a run that never failed"
  else
    notok "np=$np: restart bit-identical" "exit $rc" "$(diff <(losses 3 4 "$T/clean$np.jsonl") <(losses 3 4 "$T/again$np.jsonl"))" "$(tail -3 "$T/out")"
  fi
done
sed 's/^/# /' "$table"
cp "$table" /tmp/ckpt_fault_table.txt 2>/dev/null
finish
