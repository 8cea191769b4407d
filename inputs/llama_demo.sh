#!/bin/bash
# llama_demo.sh — `make llama-demo`: the Colossal-LLaMA-2 path from a released
# model to an expanded, continued one, with no Python and nothing downloaded.
#  1. "the released model": a SentencePiece tokenizer and a small English
#     LLaMA trained by lamina on Debian's fortunes, exported as a Hugging Face
#     folder (out/llama/released), as a user would download LLaMA-2;
#  2. from that folder: a Chinese tokenizer trained on fortunes-zh, merged
#     into the base vocabulary (vocab expand), the model resized with
#     mean-initialised rows (vocab resize), the embeddings warmed up alone
#     (train.trainable = embeddings), then all weights trained on both
#     languages;
#  3. the result exported to Hugging Face (out/llama/final), re-imported, and
#     its loss compared with the checkpoint's.
# LAMINA_NP sets the number of training ranks (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
NP=${LAMINA_NP:-2}
: "${OMP_NUM_THREADS:=$(( $(nproc) / NP > 0 ? $(nproc) / NP : 1 ))}"
export OMP_NUM_THREADS
F=/usr/share/games/fortunes
R=out/llama
L=build/lamina
ONE=(mpirun --oversubscribe -np 1 --bind-to none)
RUN=(mpirun --oversubscribe -np "$NP" --bind-to none)
DECK=inputs/llama_demo.in
BASE_STEPS=${BASE_STEPS:-300} WARM_STEPS=${WARM_STEPS:-60} CONT_STEPS=${CONT_STEPS:-300}
rm -rf "$R"; mkdir -p "$R"
t0=$(date +%s)
stage() { echo; echo "== $* ($(( $(date +%s) - t0 )) s)"; }
# the step-1 loss of a run's metrics file: the loss of its initial weights
first_loss() { sed -n 's/.*"loss": *\([-0-9.e]*\).*/\1/p' "$1" | head -1; }

stage "1. corpora: English fortunes, Chinese fortunes-zh (ANSI escapes stripped)"
en=() zh=()
for f in "$F"/*; do
  case "$f" in *.dat|*.u8) continue;; */chinese|*/tang300|*/song100) zh+=("$f");; *) [ -f "$f" ] && en+=("$f");; esac
done
for f in "${en[@]}"; do cat "$f"; echo "%"; done | sed -e 's/\x1b\[[0-9;]*m//g' > "$R/en.txt"
for f in "${zh[@]}"; do cat "$f"; echo "%"; done | sed -e 's/\x1b\[[0-9;]*m//g' > "$R/zh.txt"
echo "English: $(du -h "$R/en.txt" | cut -f1) from ${#en[@]} files; Chinese: $(du -h "$R/zh.txt" | cut -f1) from ${#zh[@]} files"

stage "2. the base tokenizer (BPE, byte fallback, LLaMA-2's settings) and the base model"
"${ONE[@]}" "$L" vocab train --vocab-size 2000 -o "$R/en.model" "$R/en.txt"
"${ONE[@]}" "$L" prep --tokenizer "$R/en.model" --seq-len 128 --doc-sep % -o "$R/en.h5" "$R/en.txt"
"${RUN[@]}" "$L" train "$DECK" train.steps="$BASE_STEPS" | tee "$R/base.log" | grep -E "^step|written"

stage "3. export it as the 'released' Hugging Face folder (bf16, with tokenizer.model)"
"${ONE[@]}" "$L" convert --to-hf "$R/base/$(cat "$R/base/latest")" -o "$R/released"
ls "$R/released"

stage "4. a Chinese tokenizer, merged into the released one (Colossal-LLaMA-2's expand)"
"${ONE[@]}" "$L" vocab train --vocab-size 6000 --character-coverage 0.9995 -o "$R/zh.model" "$R/zh.txt"
"${ONE[@]}" "$L" vocab expand --base "$R/released/tokenizer.model" --from "$R/zh.model" -o "$R/merged.model"
echo "-- compression, base vs expanded tokenizer:"
"${ONE[@]}" "$L" vocab stats --tokenizer "$R/released/tokenizer.model" "$R/en.txt" "$R/zh.txt"
"${ONE[@]}" "$L" vocab stats --tokenizer "$R/merged.model" "$R/en.txt" "$R/zh.txt"

stage "5. resize the released model: new rows = mean of the old rows of each new piece's base ids"
"${ONE[@]}" "$L" vocab resize --old-tokenizer "$R/released/tokenizer.model" --new-tokenizer "$R/merged.model" \
  "$R/released" -o "$R/resized.h5" | tee "$R/resize.log"
V=$(sed -n 's/.*-> .* (vocab \([0-9]*\)).*/\1/p' "$R/resize.log")
echo "expanded vocabulary: $V"

stage "6. data in both languages with the merged tokenizer"
cat "$R/zh.txt" "$R/en.txt" > "$R/mix.txt"
"${ONE[@]}" "$L" prep --tokenizer "$R/merged.model" --seq-len 128 --doc-sep % -o "$R/mix.h5" "$R/mix.txt"

stage "7. warm-up: only embed_tokens and lm_head train"
"${RUN[@]}" "$L" train "$DECK" model.vocab_size="$V" data.train="$R/mix.h5" train.init="$R/resized.h5" \
  train.trainable=embeddings train.steps="$WARM_STEPS" train.warmup_steps=5 checkpoint.dir="$R/warm" \
  | tee "$R/warm.log" | grep -E "^step|written"

stage "8. continued pre-training of every weight on both languages"
"${RUN[@]}" "$L" train "$DECK" model.vocab_size="$V" data.train="$R/mix.h5" train.init="$R/warm/$(cat "$R/warm/latest")" \
  train.steps="$CONT_STEPS" train.lr=1e-3 checkpoint.dir="$R/cont" | tee "$R/cont.log" | grep -E "^step|written"
final="$R/cont/$(cat "$R/cont/latest")"

stage "9. export to Hugging Face (bf16, and fp32 for an exact check), re-import, compare losses"
"${ONE[@]}" "$L" convert --to-hf "$final" -o "$R/final"
"${ONE[@]}" "$L" convert --to-hf "$final" --dtype fp32 -o "$R/final-fp32"
ls "$R/final"
check=(train "$DECK" model.vocab_size="$V" data.train="$R/mix.h5" data.shuffle=false train.steps=1
       checkpoint.dir="$R/check" checkpoint.every=0 log.metrics="$R/check.jsonl")
for src in "$final" "$R/final-fp32" "$R/final"; do
  rm -rf "$R/check" "$R/check.jsonl"
  "${RUN[@]}" "$L" "${check[@]}" train.init="$src" > "$R/check.log"
  echo "loss of the first batch from $src: $(first_loss "$R/check.jsonl")"
done

stage "10. sample from the exported model (its recorded tokenizer)"
for prompt in "The meaning of life is" "床前明月光，"; do
  echo "--- prompt: $prompt"
  "${ONE[@]}" "$L" generate "$DECK" model.vocab_size="$V" train.init="$R/final" checkpoint.dir="$R/none" \
    --prompt "$prompt" --max-new-tokens 60 --temperature 0.7
done
stage "done"
