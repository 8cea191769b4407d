#!/bin/bash
# eval_bench.sh — throughput of `lamina eval` (mc: task, SPEC §10) against
# the same scoring in PyTorch (perf/torch_eval.py: a float32 LLaMA written
# for the benchmark, python3-torch), on the same checkpoint, the same items
# and the same threads, side by side; checks that the predictions agree.
#
# The model: a SentencePiece BPE tokenizer of VOCAB pieces (`lamina vocab
# train` on Debian's fortunes), a LLaMA of dim 256, 4 layers, 8 heads, 4 kv
# heads (GQA), ffn 688, context SEQ (default 384), trained STEPS steps on the
# fortunes so that its logits are not uniform (throughput does not depend on
# the weights; agreement is more telling when the scores are not all alike).
# The items: out/evalsets/mc/en.jsonl when `make evalsets` made it, else a
# "which line continues this fortune?" set built here from the fortunes (5
# dev items per subject, worked examples trimmed to the context); at most
# TESTS test items per subject (default 12) are kept.
#
# Each of lamina and PyTorch scores every test item twice over: the letter
# scores (one row per item) and the length-normalised log-likelihood of
# every choice (one row per choice), BATCH rows per forward (default 8),
# right-padded. questions/s = test items / seconds and tokens/s = real
# (unpadded) tokens fed / seconds, as each reports them for its scoring loop
# (model loading excluded); `wall` is the whole process. Run on one rank
# with THREADS_LIST threads (default "1 2"): OMP_NUM_THREADS and
# OPENBLAS_NUM_THREADS for both, torch.set_num_threads for PyTorch.
# Not part of `make check`.
#   perf/eval_bench.sh
#   TESTS=40 THREADS_LIST="1 2" BATCH=8 perf/eval_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
PY=/usr/bin/python3
OUT=${OUT:-out/eval_bench}
VOCAB=${VOCAB:-4000}
SEQ=${SEQ:-384}
STEPS=${STEPS:-30}
TESTS=${TESTS:-12}
BATCH=${BATCH:-8}
THREADS_LIST=${THREADS_LIST:-"1 2"}
[ -x build/lamina ] || { echo "eval_bench: build lamina first (make)" >&2; exit 1; }
mkdir -p "$OUT"
L="mpirun -np 1 --bind-to none build/lamina"
F=/usr/share/games/fortunes

# ---- the model: tokenizer, data, a few training steps -------------------
export OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2
sed -e 's/\x1b\[[0-9;]*m//g' $F/wisdom $F/tao $F/linux $F/science $F/computers > "$OUT/corpus.txt"
$L vocab train --vocab-size "$VOCAB" -o "$OUT/tok.model" "$OUT/corpus.txt" > "$OUT/vocab.log" 2>&1 ||
  { tail -5 "$OUT/vocab.log"; exit 1; }
$L prep --seq-len "$SEQ" --tokenizer "$OUT/tok.model" --doc-sep % -o "$OUT/data.h5" "$OUT/corpus.txt" \
  > "$OUT/prep.log" 2>&1 || { tail -5 "$OUT/prep.log"; exit 1; }
cat > "$OUT/model.in" <<EOD
[model]
dim = 256
n_layers = 4
n_heads = 8
n_kv_heads = 4
ffn_dim = 688
vocab_size = $VOCAB
max_seq_len = $SEQ
[train]
steps = $STEPS
seq_len = $SEQ
micro_batch = 4
global_batch = 4
lr = 3e-3
warmup_steps = 5
[data]
train = $OUT/data.h5
[checkpoint]
dir = $OUT/ckpt
every = $STEPS
restart = none
[log]
metrics = $OUT/train.jsonl
EOD
rm -rf "$OUT/ckpt" "$OUT/train.jsonl"
$L train "$OUT/model.in" > "$OUT/train.log" 2>&1 || { tail -5 "$OUT/train.log"; exit 1; }
CKPT="$OUT/ckpt/$(cat "$OUT/ckpt/latest")"
[ -f "$CKPT" ] || CKPT="$(cat "$OUT/ckpt/latest")"

# ---- the items ----------------------------------------------------------
SRC=out/evalsets/mc/en.jsonl
[ -f "$SRC" ] || SRC=""
$PY - "$OUT/mc.jsonl" "$TESTS" "$SRC" $F/wisdom $F/tao $F/linux $F/science <<'PYEOF'
import json, os, random, re, sys
out, tests, src, files = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
items = []
if src:  # the evaluation sets: all dev items, the first `tests` test items per subject
    seen = {}
    for raw in open(src, encoding="utf-8"):
        if raw.strip():
            o = json.loads(raw)
            if o["split"] == "test":
                seen[o["subject"]] = seen.get(o["subject"], 0) + 1
                if seen[o["subject"]] > tests:
                    continue
            items.append(o)
else:    # "which line continues this fortune?": distractors from other fortunes of the file
    rng = random.Random(19)
    esc = re.compile(r"\x1b\[[0-9;]*m")
    for path in files:
        subject = os.path.basename(path)
        docs = [[l.strip() for l in d.split("\n") if l.strip()]
                for d in esc.sub("", open(path, encoding="utf-8", errors="replace").read()).split("\n%\n")]
        docs = [d for d in docs if 3 <= len(d) <= 8 and all(len(l) <= 100 for l in d)]
        rng.shuffle(docs)
        lines = sorted({l for d in docs for l in d})
        for k, d in enumerate(docs[:5 + tests]):
            cut = rng.randrange(1, len(d))
            right = d[cut]
            wrong = rng.sample([l for l in lines if l != right and l not in d], 3)
            choices = wrong + [right]
            rng.shuffle(choices)
            items.append({"subject": subject, "question": "\n".join(d[:cut]), "choices": choices,
                          "answer": "ABCD"[choices.index(right)], "split": "dev" if k < 5 else "test"})
with open(out, "w", encoding="utf-8") as f:
    for o in items:
        f.write(json.dumps(o, ensure_ascii=False) + "\n")
print(f"eval_bench: {len(items)} items ({sum(o['split'] == 'test' for o in items)} test) "
      f"from {src or 'the fortunes'} -> {out}")
PYEOF

# ---- side by side -------------------------------------------------------
TASK="mc:$OUT/mc.jsonl"
echo "eval_bench: checkpoint $CKPT (dim 256, 4 layers, vocab $VOCAB, context $SEQ), batch $BATCH"
for t in $THREADS_LIST; do
  export OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t
  s0=$(date +%s.%N)
  $L eval "$CKPT" --task "$TASK" --batch "$BATCH" -o "$OUT/lamina.t$t.json" > "$OUT/lamina.t$t.log" 2>&1 ||
    { tail -5 "$OUT/lamina.t$t.log"; exit 1; }
  s1=$(date +%s.%N)
  $PY perf/torch_eval.py run "$CKPT" --task "$TASK" --batch "$BATCH" --threads "$t" --context "$SEQ" \
    -o "$OUT/torch.t$t.json" > "$OUT/torch.t$t.log" 2>&1 || { tail -5 "$OUT/torch.t$t.log"; exit 1; }
  s2=$(date +%s.%N)
  echo "$t $(echo "$s1 - $s0" | bc -l) $(echo "$s2 - $s1" | bc -l)" > "$OUT/wall.t$t"
done

$PY - "$OUT" "$TASK" $THREADS_LIST <<'PYEOF'
import json, sys
out, task, threads = sys.argv[1], sys.argv[2], sys.argv[3:]
def task_of(path):
    t = json.load(open(path))["tasks"]
    return t[task] if task in t else next(v for k, v in t.items() if k.startswith("mc:"))
print(f"{'threads':>7} {'impl':<7} {'questions':>9} {'tokens':>9} {'seconds':>8} {'wall s':>7} "
      f"{'questions/s':>11} {'tokens/s':>10} {'accuracy':>8} {'acc_ll':>7}")
ratios = []
for t in threads:
    wall = open(f"{out}/wall.t{t}").read().split()
    rows = {}
    for k, impl in enumerate(("lamina", "torch")):
        r = task_of(f"{out}/{impl}.t{t}.json")
        rows[impl] = r
        tokens = r.get("tokens", r["tokens_per_s"] * r["seconds"])
        print(f"{t:>7} {impl:<7} {r['n_items']:>9} {tokens:>9.0f} {r['seconds']:>8.2f} "
              f"{float(wall[1 + k]):>7.1f} {r['questions_per_s']:>11.2f} {r['tokens_per_s']:>10.0f} "
              f"{r['accuracy']:>8.4f} {r.get('accuracy_loglik', float('nan')):>7.4f}")
    q = rows["lamina"]["questions_per_s"] / rows["torch"]["questions_per_s"]
    k = rows["lamina"]["tokens_per_s"] / rows["torch"]["tokens_per_s"]
    ratios.append(f"{t} thread(s): lamina/torch questions/s {q:.2f}, tokens/s {k:.2f}")
print("ratio " + "; ".join(ratios))
PYEOF
rc=0
for t in $THREADS_LIST; do
  echo -n "threads $t: "
  $PY perf/torch_eval.py compare "$OUT/lamina.t$t.json" "$OUT/torch.t$t.json" || rc=1
done
exit $rc
