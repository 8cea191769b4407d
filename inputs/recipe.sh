#!/bin/bash
# recipe.sh — `make recipe`: the Colossal-LLaMA-2 recipe end to end at small
# scale on text that ships with Debian, measured (issue 19 item 3):
#   evalsets  training text, held-out text and multiple-choice items in
#             English and Chinese (inputs/evalsets.py);
#   tok       the English base tokenizer (lamina vocab train);
#   base      the English base model, exported to Hugging Face: "the
#             released model" (out/recipe/SCALE/released);
#   expand    a Chinese tokenizer merged into the base one (vocab expand),
#             the released model resized with mean-initialised rows (and,
#             for the ablation, random ones); compression of both tokenizers;
#   prep      continual-training data: Chinese and English by category in 4
#             buckets, with the expanded tokenizer (and the variants the
#             ablations need), held-out text for validation;
#   main      one three-stage job (inputs/recipe_stages.in): 1 embedding
#             warm-up, 2 Chinese knowledge injection with some English,
#             3 replay (1:1), held-out bits per byte per category; the result
#             exported to Hugging Face (out/recipe/SCALE/final);
#   ablations the same steps (token budget) without vocabulary expansion,
#             with random instead of mean init, without replay (stage 3 on
#             Chinese only), without buckets (--bins 1: one global shuffle);
#   eval      lamina eval (mc en/zh, bits per byte on held-out en/zh) of the
#             base model, the expanded model before training, the end of
#             each stage and each ablation;
#   report    perf/recipe_report.py: perf/RECIPE.md and perf/recipe/*.png.
#
# RECIPE_SCALE=tiny (a few minutes: development and the test), small (the
# default, about 30-45 minutes on 2 cores), large (a GPU: RECIPE_DEVICE=cuda).
# Every step writes OUT/done/STEP when it succeeds and is skipped when that
# exists, so a failed run continues where it failed:
#   bash inputs/recipe.sh [--from STEP] [--only STEP] [--no-report]
# --from STEP forgets STEP and every later step; --only STEP runs STEP alone
# (steps: evalsets tok base expand prep main noexp randinit noreplay nobins
# eval); the report is rewritten at the end of every run (--no-report: not).
# A step that changes a model drops the evaluations of the models it changed.
# RECIPE_OUT (default out/recipe/SCALE), RECIPE_REPORT (default perf/RECIPE.md,
# its plots beside it in perf/recipe/), LAMINA_NP (training ranks, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
SCALE=${RECIPE_SCALE:-small}
R=${RECIPE_OUT:-out/recipe/$SCALE}
L=build/lamina
PY=${RECIPE_PYTHON:-/usr/bin/python3}   # Debian's: python3-matplotlib (make check-deps)
STEPS=(evalsets tok base expand prep main noexp randinit noreplay nobins eval)
FROM= ONLY= REPORT=1
while [ $# -gt 0 ]; do
  case "$1" in
    --from) FROM=$2; shift 2;;
    --only) ONLY=$2; shift 2;;
    --no-report) REPORT=0; shift;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0;;
    *) echo "recipe.sh: unknown argument '$1' (steps: ${STEPS[*]})" >&2; exit 2;;
  esac
done
for s in $FROM $ONLY; do
  [[ " ${STEPS[*]} " == *" $s "* ]] || { echo "recipe.sh: no step '$s' (steps: ${STEPS[*]})" >&2; exit 2; }
done

# ---- the scale: data, model shape, tokenizers, steps --------------------
DEVICE=${RECIPE_DEVICE:-cpu}
case "$SCALE" in
  tiny)  ES=(--max-docs-per-category 300 --test-per-subject 20)
         DIM=64 LAYERS=2 HEADS=4 KV=2 FFN=176 SEQ=64 MB=8 GB=16
         EN_VOCAB=1000 ZH_VOCAB=4000 ZH_COVER=0.99 BASE_STEPS=200 S1=20 S2=60 S3=40 EVAL_EVERY=20 BATCH=16;;
  small) ES=(--test-per-subject 40)
         DIM=128 LAYERS=4 HEADS=4 KV=2 FFN=344 SEQ=128 MB=8 GB=16
         EN_VOCAB=2000 ZH_VOCAB=6000 ZH_COVER=0.995 BASE_STEPS=1000 S1=100 S2=400 S3=200 EVAL_EVERY=100 BATCH=16;;
  large) ES=(--test-per-subject 100)
         DIM=512 LAYERS=8 HEADS=8 KV=4 FFN=1376 SEQ=512 MB=16 GB=64
         EN_VOCAB=8000 ZH_VOCAB=16000 ZH_COVER=0.9995 BASE_STEPS=4000 S1=300 S2=3000 S3=1500 EVAL_EVERY=250 BATCH=32
         DEVICE=${RECIPE_DEVICE:-cuda};;
  *) echo "recipe.sh: RECIPE_SCALE is tiny, small or large, not '$SCALE'" >&2; exit 2;;
esac
if [ "$DEVICE" = cuda ]; then NP=${LAMINA_NP:-1}; else NP=${LAMINA_NP:-2}; fi
: "${OMP_NUM_THREADS:=$(( $(nproc) / NP > 0 ? $(nproc) / NP : 1 ))}"
export OMP_NUM_THREADS
ONE=(mpirun --oversubscribe -np 1 --bind-to none)
RUN=(mpirun --oversubscribe -np "$NP" --bind-to none)
SHAPE=(model.dim=$DIM model.n_layers=$LAYERS model.n_heads=$HEADS model.n_kv_heads=$KV model.ffn_dim=$FFN
       model.max_seq_len=$SEQ train.seq_len=$SEQ train.micro_batch=$MB train.global_batch=$GB train.device=$DEVICE
       train.eval_every=$EVAL_EVERY log.every=1)
D=$R/data E=$R/evalsets

# ---- steps: skipped when done, timed -------------------------------------
mkdir -p "$R/done"
if [ -n "$FROM" ]; then
  on=0; for s in "${STEPS[@]}"; do [ "$s" = "$FROM" ] && on=1; [ $on = 1 ] && rm -f "$R/done/$s"; done
fi
[ -n "$ONLY" ] && rm -f "$R/done/$ONLY"
# the evaluations are redone whole when asked for (a failed eval step keeps
# the model points it finished)
[ "$FROM" = eval ] || [ "$ONLY" = eval ] && rm -rf "$R/eval"
t_all=$(date +%s)
# step NAME: true when NAME is to run now (not done; --only picks one)
want() { [ -z "$ONLY" -o "$ONLY" = "$1" ] && [ ! -e "$R/done/$1" ]; }
begin() { echo; echo "== recipe ($SCALE) step $1: $2"; T0=$(date +%s.%N); }
# stale NAME...: drop those model points' evaluations (all: every one)
stale() { if [ "$1" = all ]; then rm -rf "$R/eval"; else for n; do rm -f "$R/eval/$n.json"; done; fi; }
# end NAME: the step's wall time into OUT/times.tsv, the done mark
end() {
  local t; t=$("$PY" -c "import time,sys; print('%.1f' % (time.time() - float(sys.argv[1])))" "$T0")
  { grep -v "^$1	" "$R/times.tsv" 2>/dev/null || true; printf '%s\t%s\n' "$1" "$t"; } > "$R/times.tsv.tmp"
  mv "$R/times.tsv.tmp" "$R/times.tsv"
  touch "$R/done/$1"; echo "-- $1: $t s"
}
# the newest checkpoint of a run directory
latest() { echo "$1/$(cat "$1/latest")"; }
# jsonl -> plain text (one document's lines, then a blank line), for the tokenizer tools
totext() { "$PY" -c '
import json, sys
with open(sys.argv[1], "w", encoding="utf-8") as o:
    for p in sys.argv[2:]:
        for l in open(p, encoding="utf-8"):
            o.write(json.loads(l)["text"].rstrip("\n") + "\n\n")' "$@"; }
# prep TOKENIZER OUT.h5 BINS FILE...: categories from the JSONL lines
prep() { local tk=$1 o=$2 b=$3; shift 3
  "${RUN[@]}" "$L" prep --tokenizer "$tk" --seq-len "$SEQ" --bins "$b" -o "$o" "$@" | tail -2; }

if want evalsets; then
  stale all; begin evalsets "evaluation and training sets from Debian text (inputs/evalsets.py ${ES[*]})"
  rm -rf "$E"; "$PY" inputs/evalsets.py --out "$E" "${ES[@]}"
  mkdir -p "$D"
  totext "$D/en_train.txt" "$E"/train/en/*.jsonl
  totext "$D/zh_train.txt" "$E"/train/zh/*.jsonl
  totext "$D/en_heldout.txt" "$E/heldout/en.jsonl"
  totext "$D/zh_heldout.txt" "$E/heldout/zh.jsonl"
  end evalsets
fi

if want tok; then
  stale all; begin tok "the English base tokenizer ($EN_VOCAB pieces) and the base model's data"
  "${ONE[@]}" "$L" vocab train --vocab-size "$EN_VOCAB" -o "$R/en.model" "$D/en_train.txt" | tail -1
  prep "$R/en.model" "$D/base_en.h5" 1 "$E"/train/en/*.jsonl
  prep "$R/en.model" "$D/base_heldout_en.h5" 1 "$E/heldout/en.jsonl"
  end tok
fi

if want base; then
  stale all; begin base "train the English base model ($BASE_STEPS steps) and export it: the released model"
  rm -rf "$R/base" "$R/released" "$R/base.metrics.jsonl"
  "${RUN[@]}" "$L" train inputs/recipe_base.in "${SHAPE[@]}" model.vocab_size="$EN_VOCAB" train.steps="$BASE_STEPS" \
    data.train="$D/base_en.h5" data.valid="$D/base_heldout_en.h5" checkpoint.dir="$R/base" \
    log.metrics="$R/base.metrics.jsonl" > "$R/base.log"
  grep -E "^eval" "$R/base.log" | tail -1 || true
  "${ONE[@]}" "$L" convert --to-hf "$(latest "$R/base")" -o "$R/released" | tail -1
  end base
fi

if want expand; then
  stale all; begin expand "Chinese tokenizer ($ZH_VOCAB pieces), merged into the released one; resize (mean and random init)"
  "${ONE[@]}" "$L" vocab train --vocab-size "$ZH_VOCAB" --character-coverage "$ZH_COVER" -o "$R/zh.model" "$D/zh_train.txt" | tail -1
  "${ONE[@]}" "$L" vocab expand --base "$R/released/tokenizer.model" --from "$R/zh.model" -o "$R/merged.model" | head -2
  for t in base:"$R/released/tokenizer.model" expanded:"$R/merged.model"; do
    "${ONE[@]}" "$L" vocab stats --tokenizer "${t#*:}" "$D/en_heldout.txt" "$D/zh_heldout.txt" > "$R/compression_${t%%:*}.txt"
    cat "$R/compression_${t%%:*}.txt"
  done
  rm -f "$R/resized.h5" "$R/resized_random.h5"
  "${RUN[@]}" "$L" vocab resize --old-tokenizer "$R/released/tokenizer.model" --new-tokenizer "$R/merged.model" \
    "$R/released" -o "$R/resized.h5" | tee "$R/resize.log"
  "${RUN[@]}" "$L" vocab resize --init random --old-tokenizer "$R/released/tokenizer.model" \
    --new-tokenizer "$R/merged.model" "$R/released" -o "$R/resized_random.h5"
  sed -n 's/.*-> .* (vocab \([0-9]*\)).*/\1/p' "$R/resize.log" > "$R/vocab_size"
  echo "expanded vocabulary: $(cat "$R/vocab_size")"
  end expand
fi
V=$(cat "$R/vocab_size" 2>/dev/null || echo 0)

if want prep; then
  stale all; begin prep "continual-training data: zh and en by category, 4 buckets (and 1 bucket; and the base tokenizer)"
  for lang in zh en; do
    prep "$R/merged.model" "$D/$lang.h5" 4 "$E"/train/$lang/*.jsonl
    prep "$R/merged.model" "$D/${lang}_bins1.h5" 1 "$E"/train/$lang/*.jsonl
    prep "$R/released/tokenizer.model" "$D/${lang}_basetok.h5" 4 "$E"/train/$lang/*.jsonl
    prep "$R/merged.model" "$D/heldout_$lang.h5" 1 "$E/heldout/$lang.jsonl"
    prep "$R/released/tokenizer.model" "$D/heldout_${lang}_basetok.h5" 1 "$E/heldout/$lang.jsonl"
  done
  end prep
fi

# stages NAME INIT VOCAB ZH EN VALID_EN VALID_ZH [override...]: the
# three-stage deck into OUT/NAME (checkpoints) and OUT/NAME.metrics.jsonl
stages() { local n=$1 init=$2 v=$3 zh=$4 en=$5 ven=$6 vzh=$7; shift 7
  rm -rf "$R/$n" "$R/$n.metrics.jsonl"
  "${RUN[@]}" "$L" train inputs/recipe_stages.in "${SHAPE[@]}" model.vocab_size="$v" train.init="$init" \
    stage.1.steps=$S1 stage.2.steps=$S2 stage.3.steps=$S3 data.train="$zh:0.9,$en:0.1" stage.3.train="$zh:1,$en:1" \
    data.valid="$ven,$vzh" checkpoint.dir="$R/$n" log.metrics="$R/$n.metrics.jsonl" "$@" > "$R/$n.log"
  grep -E "^eval" "$R/$n.log" | tail -1 || true
}

if want main; then
  stale stage1 stage2 stage3 final_hf; begin main "the three stages ($S1 + $S2 + $S3 steps), exported to Hugging Face"
  stages main "$R/resized.h5" "$V" "$D/zh.h5" "$D/en.h5" "$D/heldout_en.h5" "$D/heldout_zh.h5"
  rm -rf "$R/final"
  "${ONE[@]}" "$L" convert --to-hf "$(latest "$R/main")" -o "$R/final" | tail -1
  end main
fi
if want noexp; then
  stale noexp; begin noexp "ablation: no vocabulary expansion (the base tokenizer for Chinese too)"
  stages noexp "$R/released" "$EN_VOCAB" "$D/zh_basetok.h5" "$D/en_basetok.h5" \
    "$D/heldout_en_basetok.h5" "$D/heldout_zh_basetok.h5"
  end noexp
fi
if want randinit; then
  stale randinit; begin randinit "ablation: the new rows random (0.02 * normal) instead of means"
  stages randinit "$R/resized_random.h5" "$V" "$D/zh.h5" "$D/en.h5" "$D/heldout_en.h5" "$D/heldout_zh.h5"
  end randinit
fi
if want noreplay; then
  stale noreplay; begin noreplay "ablation: no replay (stage 3 continues on Chinese only)"
  stages noreplay "$R/resized.h5" "$V" "$D/zh.h5" "$D/en.h5" "$D/heldout_en.h5" "$D/heldout_zh.h5" \
    stage.3.train="$D/zh.h5"
  end noreplay
fi
if want nobins; then
  stale nobins; begin nobins "ablation: no buckets (--bins 1: one global shuffle)"
  stages nobins "$R/resized.h5" "$V" "$D/zh_bins1.h5" "$D/en_bins1.h5" "$D/heldout_en.h5" "$D/heldout_zh.h5"
  end nobins
fi

if want eval; then
  begin eval "lamina eval: mc en/zh, bits per byte on held-out en/zh, every model point"
  mkdir -p "$R/eval"
  # the checkpoint that ends each stage: steps S1, S1+S2, S1+S2+S3
  ck() { printf '%s/step_%08d.h5' "$R/$1" "$2"; }
  points=(base:"$R/released" expanded:"$R/resized.h5" expanded_random:"$R/resized_random.h5"
          stage1:"$(ck main $S1)" stage2:"$(ck main $((S1 + S2)))" stage3:"$(ck main $((S1 + S2 + S3)))"
          final_hf:"$R/final")
  for a in noexp randinit noreplay nobins; do points+=("$a:$(ck $a $((S1 + S2 + S3)))"); done
  for p in "${points[@]}"; do
    n=${p%%:*} src=${p#*:}
    [ -s "$R/eval/$n.json" ] && { echo "-- $n: done"; continue; }
    echo "-- $n: $src"
    t=$(date +%s.%N)
    "${RUN[@]}" "$L" eval "$src" --task mc:"$E/mc/en.jsonl" --task mc:"$E/mc/zh.jsonl" \
      --task ppl:"$E/heldout/en.jsonl" --task ppl:"$E/heldout/zh.jsonl" --batch "$BATCH" \
      -o "$R/eval/$n.json.tmp" train.device="$DEVICE" > "$R/eval/$n.log"
    mv "$R/eval/$n.json.tmp" "$R/eval/$n.json"
    "$PY" -c "import time,sys; print('%s\t%.1f' % (sys.argv[1], time.time() - float(sys.argv[2])))" "$n" "$t" \
      >> "$R/eval/times.tsv"
  done
  end eval
fi

# what the report states about the run
"$PY" - "$R/config.json" <<PY
import json, sys
json.dump({"scale": "$SCALE", "ranks": $NP, "threads": $OMP_NUM_THREADS, "device": "$DEVICE",
           "cpu": "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)",
           "git": "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)",
           "dim": $DIM, "layers": $LAYERS, "heads": $HEADS, "kv_heads": $KV, "ffn": $FFN, "seq_len": $SEQ,
           "global_batch": $GB, "en_vocab": $EN_VOCAB, "zh_vocab": $ZH_VOCAB, "expanded_vocab": $V,
           "base_steps": $BASE_STEPS, "s1": $S1, "s2": $S2, "s3": $S3}, open(sys.argv[1], "w"), indent=1)
PY
if [ $REPORT = 1 ] && [ -z "$ONLY" ]; then
  echo; echo "== recipe ($SCALE): the report, ${RECIPE_REPORT:-perf/RECIPE.md}"
  "$PY" perf/recipe_report.py "$R" --scale "$SCALE" -o "${RECIPE_REPORT:-perf/RECIPE.md}"
fi
echo; echo "== recipe ($SCALE): $(( $(date +%s) - t_all )) s this run; steps: $(cut -f1,2 "$R/times.tsv" | tr '\t\n' '= ')"
