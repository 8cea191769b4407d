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
# right-padded; the rows are the same token for token. PyTorch runs twice:
# with the final norm and lm_head over every position (as lamina and a
# causal LM's forward do: the same work) and over only the positions whose
# logits are read ("read only"). questions/s = test items / seconds and
# tokens/s = real (unpadded) tokens fed / seconds, `seconds` being the
# batched forwards and the scoring as each reports them (not the model load
# nor the prompts' rendering and tokenisation); `wall` is the whole process.
# One rank, THREADS_LIST threads (default "1 2"): OMP_NUM_THREADS and
# OPENBLAS_NUM_THREADS for both, torch.set_num_threads for PyTorch. REPS
# rounds (default 3); the table gives each row's best round and the median.
# The predictions of lamina and PyTorch must agree (exit 1 otherwise, an
# item whose top two scores are within 1e-3 excepted) and the letter scores
# within 1e-2. Not part of `make check`.
#   perf/eval_bench.sh
#   TESTS=40 THREADS_LIST="1 2" BATCH=8 REPS=3 perf/eval_bench.sh
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
REPS=${REPS:-3}
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
# lamina reads the deck (its checkpoint.dir/latest: the file PyTorch reads;
# context train.seq_len = SEQ). REPS rounds, each running every thread
# count and implementation in turn, so that a load that comes and goes on a
# shared machine falls on all of them; the table gives each one's best round.
TASK="mc:$OUT/mc.jsonl"
echo "eval_bench: checkpoint $CKPT (dim 256, 4 layers, vocab $VOCAB, context $SEQ), batch $BATCH, $REPS round(s)"
for rep in $(seq "$REPS"); do
  for t in $THREADS_LIST; do
    export OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t
    s0=$(date +%s.%N)
    $L eval "$OUT/model.in" --task "$TASK" --batch "$BATCH" -o "$OUT/lamina.t$t.r$rep.json" \
      > "$OUT/lamina.t$t.r$rep.log" 2>&1 || { tail -5 "$OUT/lamina.t$t.r$rep.log"; exit 1; }
    s1=$(date +%s.%N)
    echo "$(echo "$s1 - $s0" | bc -l)" > "$OUT/lamina.t$t.r$rep.wall"
    for pos in all read; do
      s0=$(date +%s.%N)
      $PY perf/torch_eval.py run "$CKPT" --task "$TASK" --batch "$BATCH" --threads "$t" --context "$SEQ" \
        --positions $pos -o "$OUT/torch-$pos.t$t.r$rep.json" > "$OUT/torch-$pos.t$t.r$rep.log" 2>&1 ||
        { tail -5 "$OUT/torch-$pos.t$t.r$rep.log"; exit 1; }
      s1=$(date +%s.%N)
      echo "$(echo "$s1 - $s0" | bc -l)" > "$OUT/torch-$pos.t$t.r$rep.wall"
    done
  done
done

$PY - "$OUT" "$REPS" $THREADS_LIST <<'PYEOF'
import json, statistics, sys
out, reps, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def task(path):
    return next(v for k, v in json.load(open(path))["tasks"].items() if k.startswith("mc:"))
print(f"{'threads':>7} {'implementation':<19} {'questions':>9} {'tokens':>7} {'seconds':>8} {'wall s':>7} "
      f"{'questions/s':>11} {'(median)':>8} {'tokens/s':>9} {'accuracy':>8} {'acc_ll':>7}")
names = {"lamina": "lamina eval", "torch-all": "PyTorch", "torch-read": "PyTorch, read only"}
ratios = []
for t in threads:
    best = {}
    for impl in names:
        runs = [(task(f"{out}/{impl}.t{t}.r{r}.json"), float(open(f"{out}/{impl}.t{t}.r{r}.wall").read()))
                for r in range(1, reps + 1)]
        r, wall = max(runs, key=lambda x: x[0]["questions_per_s"])
        med = statistics.median(x[0]["questions_per_s"] for x in runs)
        best[impl] = r
        print(f"{t:>7} {names[impl]:<19} {r['n_items']:>9} {r['tokens']:>7} {r['seconds']:>8.2f} {wall:>7.1f} "
              f"{r['questions_per_s']:>11.2f} {med:>8.2f} {r['tokens_per_s']:>9.0f} {r['accuracy']:>8.4f} "
              f"{r['accuracy_loglik']:>7.4f}")
    ratios.append(f"{t} thread(s): lamina/PyTorch {best['lamina']['tokens_per_s'] / best['torch-all']['tokens_per_s']:.2f}, "
                  f"lamina/PyTorch read only {best['lamina']['tokens_per_s'] / best['torch-read']['tokens_per_s']:.2f}")
print("ratio of the best rounds (questions/s and tokens/s alike: the same rows): " + "; ".join(ratios))
PYEOF
rc=0
first=$(set -- $THREADS_LIST; echo "$1")
for t in $THREADS_LIST; do
  for pos in all read; do
    echo -n "threads $t, lamina vs PyTorch ($pos): "
    $PY perf/torch_eval.py compare "$OUT/lamina.t$t.r1.json" "$OUT/torch-$pos.t$t.r1.json" || rc=1
  done
  if [ "$t" != "$first" ]; then
    echo -n "lamina, threads $first vs $t: "
    $PY perf/torch_eval.py compare "$OUT/lamina.t$first.r1.json" "$OUT/lamina.t$t.r1.json" || rc=1
  fi
done
exit $rc
