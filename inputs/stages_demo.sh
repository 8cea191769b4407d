#!/bin/bash
# stages_demo.sh — `make stages-demo`: the continual pre-training data path
# and the three-stage recipe (inputs/colossal-3stage.in) on Debian's fortunes:
#  1. prep the "new knowledge" corpus (science, literature) with cleaning
#     (inputs/clean-fortunes.ini), near-duplicate removal, 4 bins per
#     category (4 buckets) and 5% held out per category;
#  2. prep the "general" corpus for replay, deduplicated against the first;
#  3. train the three stages in one job (embedding warm-up, knowledge
#     injection, replay), held-out loss and bits per byte per category;
#  4. print the held-out bits per byte per category at the end of each stage.
# LAMINA_NP sets the number of training ranks (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
NP=${LAMINA_NP:-2}
: "${OMP_NUM_THREADS:=$(( $(nproc) / NP > 0 ? $(nproc) / NP : 1 ))}"
export OMP_NUM_THREADS
F=/usr/share/games/fortunes
R=out/stages
L=build/lamina
RUN=(mpirun --oversubscribe -np "$NP" --bind-to none)
rm -rf "$R"; mkdir -p "$R/data"

echo "== 1. new-knowledge corpus: clean, near-dedup, 4 bins, 5% held out =="
"${RUN[@]}" "$L" prep --seq-len 64 --doc-sep % --clean="inputs/clean-fortunes.ini" --dedup near \
  --bins 4 --valid-fraction 0.05 --stats "$R/inject.stats.json" --rejected "$R/inject.rejected.jsonl" \
  -o "$R/data/inject.h5" --category science "$F/science" --category literature "$F/literature" "$F/wisdom"

echo "== 2. general corpus for replay, deduplicated against the first =="
"${RUN[@]}" "$L" prep --seq-len 64 --doc-sep % --clean="inputs/clean-fortunes.ini" --dedup near \
  --dedup-against "$R/data/inject.h5" --valid-fraction 0.05 --stats "$R/general.stats.json" \
  -o "$R/data/general.h5" --category general "$F/fortunes" "$F/people"

echo "== 3. three stages in one job (inputs/colossal-3stage.in) =="
"${RUN[@]}" "$L" train inputs/colossal-3stage.in \
  data.train="$R/data/inject.h5" data.valid="$R/data/inject.valid.h5,$R/data/general.valid.h5" \
  stage.3.train="$R/data/inject.h5:1,$R/data/general.h5:1" \
  checkpoint.dir="$R/ckpt" log.metrics="$R/metrics.jsonl" "$@"

echo "== 4. held-out bits per byte per category at the end of each stage =="
python3 - "$R/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
last = {}
for r in rows:
    if "val_by_category" in r:
        last[r.get("stage", 1)] = r
cats = sorted({c for r in last.values() for c in r["val_by_category"]})
print("stage  step  " + "  ".join(f"{c:>12}" for c in cats) + "    all")
for st in sorted(last):
    r = last[st]
    bpb = [r["val_by_category"][c]["bpb"] for c in cats]
    print(f"{st:5d} {r['step']:5d}  " + "  ".join(f"{b:12.3f}" for b in bpb) + f"  {r['val_bpb']:.3f}")
PY
