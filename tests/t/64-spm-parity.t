#!/bin/bash
# SentencePiece parity (SPEC §8): `lamina vocab encode`/`decode` against
# python3-sentencepiece, line by line, ids and text identical, on models
# python trains here from Debian text — a LLaMA-2-style BPE (byte fallback,
# split digits, dummy prefix, identity normalization, user-defined and
# control pieces) and a unigram model (nmt_nfkc: a precompiled charsmap) —
# over English, Chinese, mixed, emoji, whitespace runs, tabs, control
# characters, invalid UTF-8 and empty lines. Then a model `lamina vocab
# train` makes loads in python and encodes the same; stats; bad input.
source tests/lib.sh
plan 14
REF="$PY tests/ref/spm_parity.py"
# encode/decode read stdin: run them as a singleton (no mpirun). Open MPI
# 4.1's mpirun forwards stdin to rank 0 and now and then segfaults in
# orte_iof_hnp_read_local_handler when the rank exits (exit 139, a mpirun
# backtrace; seen here about 1 run in 10), whatever the program.
lam1() { rc=0; timeout 300 "$LAMINA" "$@" >"$T/out" 2>&1 || rc=$?; }
F=/usr/share/games/fortunes

# training text: English fortunes, the head of the Chinese fortunes, Chinese man pages
cat $F/wisdom $F/tao $F/linux > "$T/train.txt"
head -c 300000 $F/chinese >> "$T/train.txt"
for m in /usr/share/man/zh_CN/man1/*.gz; do zcat "$m"; done >> "$T/train.txt" 2>/dev/null
# test text: text the models did not see, plus hand-made edge cases
{
  cat $(ls /usr/share/doc/*/copyright | head -40) | head -c 150000
  tail -c 60000 $F/chinese                       # ANSI escapes; starts inside a character
  for m in $(ls /usr/share/man/zh_CN/man8/*.gz 2>/dev/null | head -4); do zcat "$m"; done
  printf 'Hello world\n\n   three leading spaces\ntrailing spaces   \nmultiple    inner     spaces\n'
  printf '\ttab\tseparated\t\tcolumns\t\n \t \t\n   \n'
  printf '中文测试，你好世界。混合 mixed 文本 with English 和数字 12345 3.14159\n'
  printf 'emoji 😀🎉👍🏽 👨‍👩‍👧 flags 🇫🇷 math 𝔸𝔹 ∑∫\n'
  printf 'control \x01\x02\x07\x1b[31mred\x1b[0m \x7f end\n'
  printf 'invalid \xff\xfe \xc3\x28 \xe2\x82 \xf0\x9f\x98 bytes\n\xed\xa0\x80 surrogate \xc0\xaf overlong\n'
  printf 'user <sep> pieces [[link]] and <ctl> control <s> </s> <unk>\n'
  printf 'ＦＵＬＬＷＩＤＴＨ ｶﾀｶﾅ ㍿ ﬁ ligature\ncarriage\rreturn\r\n'
  printf 'no newline at the end'
} > "$T/in.txt"

# 1-2: python trains the two models
if $REF train "$T/bpe.model" bpe "$T/train.txt" >"$T/py.log" 2>&1; then ok "python3-sentencepiece trains a LLaMA-2-style BPE model"
else notok "python bpe training" "$(tail -3 "$T/py.log")"; fi
head -c 200000 "$T/train.txt" > "$T/train_small.txt"
if $REF train "$T/uni.model" unigram "$T/train_small.txt" >"$T/py.log" 2>&1; then ok "python3-sentencepiece trains a unigram model (nmt_nfkc)"
else notok "python unigram training" "$(tail -3 "$T/py.log")"; fi

# 3-6: encode and decode parity, line by line
for m in bpe uni; do
  lam1 vocab encode --tokenizer "$T/$m.model" < "$T/in.txt"; cp "$T/out" "$T/$m.ids"; rc1=$rc
  lam1 vocab decode --tokenizer "$T/$m.model" < "$T/$m.ids"; cp "$T/out" "$T/$m.txt"
  if [ $rc1 = 0 ] && [ $rc = 0 ] && out=$($REF check "$T/$m.model" "$T/in.txt" "$T/$m.ids" "$T/$m.txt" 2>&1); then
    ok "$m: encode and decode identical to python's"; echo "#   $out"
  else notok "$m: encode/decode parity" "$out" "$(head -3 "$T/$m.ids")"; fi
  $REF randids "$T/$m.model" "$T/$m.rand" 2000
  lam1 vocab decode --tokenizer "$T/$m.model" < "$T/$m.rand"; cp "$T/out" "$T/$m.randtxt"
  out="lamina exit $rc: $(tail -c 300 "$T/out" | tr -c '[:print:]\n' '?')"
  if [ $rc = 0 ] && out=$($REF checkdec "$T/$m.model" "$T/$m.rand" "$T/$m.randtxt" 2>&1); then
    ok "$m: decode of random ids (bytes, controls, unk) identical to python's"; echo "#   $out"
  else notok "$m: decode of random ids" "$out"; fi
done

# 7: --bos --eos wrap every line in 1 ... 2
lam1 vocab encode --tokenizer "$T/bpe.model" --bos --eos < "$T/in.txt"
if [ $rc = 0 ] && paste -d'|' "$T/bpe.ids" "$T/out" | awk -F'|' '{ w = ($1 == "" ? "1 2" : "1 " $1 " 2"); if ($2 != w) exit 1 }'; then
  ok "--bos --eos: BOS 1 first and EOS 2 last on every line"
else notok "--bos --eos" "$(head -2 "$T/out")"; fi

# 8: a model lamina trains loads in python and encodes identically
lam 1 vocab train --vocab-size 1200 -o "$T/lam.model" --character-coverage 0.995 "$T/train_small.txt"
cp "$T/out" "$T/train.log"
lam1 vocab encode --tokenizer "$T/lam.model" < "$T/in.txt"; cp "$T/out" "$T/lam.ids"
lam1 vocab decode --tokenizer "$T/lam.model" < "$T/lam.ids"; cp "$T/out" "$T/lam.txt"
if [ $rc = 0 ] && out=$($REF check "$T/lam.model" "$T/in.txt" "$T/lam.ids" "$T/lam.txt" 2>&1) &&
   $PY -c 'import sentencepiece as s, sys; p=s.SentencePieceProcessor(model_file=sys.argv[1])
assert p.get_piece_size()==1200 and p.bos_id()==1 and p.eos_id()==2 and p.unk_id()==0 and p.pad_id()==-1
assert p.is_byte(p.piece_to_id("<0x41>")) and p.encode("2024")[-4:]==[p.piece_to_id(c) for c in "2024"]' "$T/lam.model"; then
  ok "vocab train: a 1200-piece BPE (byte fallback, split digits) python loads and encodes alike"; echo "#   $out"
else notok "vocab train" "$out" "$(tail -3 "$T/train.log")"; fi

# 9: stats: tokens are the ids encode gives, per file and in total
lam 1 vocab stats --tokenizer "$T/bpe.model" "$T/in.txt" "$T/train_small.txt"
want=$(wc -w < "$T/bpe.ids")
got=$(awk -v f="$T/in.txt" '$1 == f { print $4 }' "$T/out")
if [ $rc = 0 ] && [ "$got" = "$want" ] && grep -q '^total ' "$T/out"; then ok "vocab stats: $got tokens in in.txt, as encode gives"
else notok "vocab stats" "got '$got' want '$want'" "$(cat "$T/out")"; fi

# 10-14: bad input exits 2 naming the file, line or id
echo "5 999999 7" > "$T/bad.ids"
lam1 vocab decode --tokenizer "$T/bpe.model" < "$T/bad.ids"
expect_fail 2 "line 1: id '999999'" "decode of an id outside the vocabulary: exit 2 naming line and id"
printf '1 2\n3 x4\n' > "$T/bad2.ids"
lam1 vocab decode --tokenizer "$T/bpe.model" < "$T/bad2.ids"
expect_fail 2 "line 2: id 'x4'" "decode of a non-number: exit 2 naming line and id"
lam1 vocab encode --tokenizer "$T/in.txt" < "$T/in.txt"
expect_fail 2 "in.txt: not a SentencePiece model" "a text file as the tokenizer: exit 2 naming it"
lam 2 vocab stats --tokenizer "$T/missing.model" "$T/in.txt"
expect_fail 2 "missing.model: cannot read" "a missing tokenizer, on 2 ranks: exit 2 naming it"
lam 1 vocab train --vocab-size 500 -o "$T/x.model" "$T/nope.txt"
expect_fail 2 "nope.txt" "vocab train of a missing file: exit 2 naming it"
finish
