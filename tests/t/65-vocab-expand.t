#!/bin/bash
# Vocabulary expansion (SPEC §8): `lamina vocab expand` against the merge
# computed directly in python (pieces, scores, types and vocab_size of the
# merged model, read by an independent protobuf reader; python3-sentencepiece
# loads it), from a piece file and from another model, with --max-new; then
# `lamina vocab resize` of a tiny checkpoint (untied and tied) against
# numpy (old rows and other tensors bit for bit, new rows the mean of the
# old tokenizer's ids), the result loading in `lamina train`; bad input
# exits 2 naming the file or piece.
source tests/lib.sh
plan 14
REF="$PY tests/ref/spm_parity.py"
A=tests/data/spm_tiny.model   # 400 pieces, LLaMA-2 settings

# candidates: duplicates, pieces A has, Chinese words, long and short, an empty line
printf '中文\n▁the\n深度学习\n中文\nlamina\n\n▁Tao\n学习\n深度学习模型训练\nthe\n词表\n😀\n' > "$T/pieces.txt"

# 1-2: --pieces
lam 1 vocab expand --base $A --pieces "$T/pieces.txt" -o "$T/B.model"
cp "$T/out" "$T/expand.log"
if [ $rc = 0 ] && out=$($REF expand $A "$T/B.model" --pieces "$T/pieces.txt" 2>&1); then ok "expand --pieces: the merge python computes"; echo "#   $out"
else notok "expand --pieces" "$out" "$(cat "$T/expand.log")"; fi
if grep -q "new pieces added" "$T/expand.log" && grep -q "need byte fallback" "$T/expand.log" && grep -q "longest new pieces: 深度学习模型训练" "$T/expand.log"; then
  ok "expand prints the count, the byte-fallback count and the longest new pieces"; sed 's/^/#   /' "$T/expand.log"
else notok "expand report" "$(cat "$T/expand.log")"; fi

# 3-4: --from a model lamina trains on Chinese text, with --max-new
head -c 120000 /usr/share/games/fortunes/chinese | sed -e 's/\x1b\[[0-9;]*m//g' > "$T/zh.txt"
lam 1 vocab train --vocab-size 1500 --character-coverage 0.98 -o "$T/zh.model" "$T/zh.txt"
lam 1 vocab expand --base $A --from "$T/zh.model" -o "$T/C.model"
if [ $rc = 0 ] && out=$($REF expand $A "$T/C.model" --from "$T/zh.model" 2>&1); then ok "expand --from: NEW's normal pieces, merged as python merges them"; echo "#   $out"
else notok "expand --from" "$out" "$(tail -3 "$T/out")"; fi
lam 1 vocab expand --base $A --from "$T/zh.model" --max-new 50 -o "$T/C50.model"
if [ $rc = 0 ] && out=$($REF expand $A "$T/C50.model" --from "$T/zh.model" 50 2>&1); then ok "expand --max-new 50: the 50 shortest new pieces"; echo "#   $out"
else notok "expand --max-new" "$out" "$(tail -3 "$T/out")"; fi

# 5-8: resize a tiny checkpoint whose vocab is A's, untied and tied
make_data
make_deck
for tied in false true; do
  lam 1 train "$T/tiny.in" model.vocab_size=400 model.tie_embeddings=$tied train.steps=2 checkpoint.dir="$T/ck_$tied"
  lam 2 vocab resize --old-tokenizer $A --new-tokenizer "$T/C.model" "$T/ck_$tied/step_00000002.h5" -o "$T/R_$tied.h5"
  cp "$T/out" "$T/resize.log"
  if [ $rc = 0 ] && out=$($REF resize $A "$T/C.model" "$T/ck_$tied/step_00000002.h5" "$T/R_$tied.h5" 2>&1); then
    ok "resize (tie_embeddings=$tied, 2 ranks): old rows bit for bit, new rows the numpy means"; echo "$out" | sed 's/^/#   /'
  else notok "resize tied=$tied" "$out" "$(tail -3 "$T/resize.log")"; fi
  nb=$($PY -c 'import sentencepiece as s,sys; print(s.SentencePieceProcessor(model_file=sys.argv[1]).get_piece_size())' "$T/C.model")
  lam 1 train "$T/tiny.in" model.vocab_size=$nb model.tie_embeddings=$tied train.steps=1 train.init="$T/R_$tied.h5" checkpoint.dir="$T/ck2_$tied"
  if [ $rc = 0 ] && [ ! -e "$T/R_$tied.h5.resize.tmp" ]; then ok "the resized checkpoint (vocab $nb) starts a run (train.init)"
  else notok "train.init from the resized checkpoint" "$(tail -3 "$T/out")"; fi
done

# 9-14: bad input
lam 1 vocab expand --base "$T/nobase.model" --pieces "$T/pieces.txt" -o "$T/x.model"
expect_fail 2 "nobase.model: cannot read" "expand: missing base, exit 2 naming it"
printf 'ok\nbad \xff piece\n' > "$T/badpieces.txt"
lam 1 vocab expand --base $A --pieces "$T/badpieces.txt" -o "$T/x.model"
expect_fail 2 "badpieces.txt:2: not a valid UTF-8" "expand: invalid UTF-8 piece, exit 2 naming file and line"
lam 1 vocab expand --base $A --from "$T/pieces.txt" -o "$T/x.model"
expect_fail 2 "pieces.txt: not a SentencePiece model" "expand --from a text file: exit 2 naming it"
lam 2 vocab resize --old-tokenizer $A --new-tokenizer "$T/zh.model" "$T/ck_false/step_00000002.h5" -o "$T/x.h5"
expect_fail 2 "does not start with the pieces of .*id [0-9]" "resize with an unrelated new tokenizer: exit 2 naming the first differing id"
lam 1 vocab resize --old-tokenizer "$T/C.model" --new-tokenizer "$T/C.model" "$T/ck_false/step_00000002.h5" -o "$T/x.h5"
expect_fail 2 "vocab_size = 400, but the old tokenizer" "resize of a checkpoint whose vocab is not the old tokenizer's: exit 2"
lam 1 vocab resize --old-tokenizer $A --new-tokenizer "$T/C.model" "$T/none.h5" -o "$T/x.h5"
if [ $rc = 2 ] && grep -q "none.h5" "$T/out" && [ ! -e "$T/x.h5" ]; then ok "resize of a missing checkpoint: exit 2 naming it, nothing written"
else notok "resize missing checkpoint" "exit $rc" "$(tail -3 "$T/out")"; fi
finish
