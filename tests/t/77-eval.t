#!/bin/bash
# lamina eval (SPEC §10): on a tiny model with a SentencePiece tokenizer
# (trained here on English and Chinese text), the mc: letter scores,
# predictions, shot counts and length-normalised log-likelihoods of English
# and Chinese subjects (dev items as worked examples, one dropped from the
# front to fit the context, a 0-shot prompt cut to its last tokens) and the
# ppl: loss and bits per byte of JSONL and plain text agree with a float64
# PyTorch computation that renders and tokenises the prompts itself
# (tests/ref/check_eval.py); dp 2, tp 2 and pp 2 give the one-rank results;
# a checkpoint file and an fp32 Hugging Face folder give the deck's;
# malformed items exit 2 naming FILE:LINE.
. tests/lib.sh
plan 12
REF="$PY tests/ref/check_eval.py"

# data: English fortunes and Chinese text; a 800-piece tokenizer of both
sed -e 's/\x1b\[[0-9;]*m//g' /usr/share/games/fortunes/{wisdom,tao} > "$T/en.txt"
head -c 60000 /usr/share/games/fortunes/chinese | sed -e 's/\x1b\[[0-9;]*m//g' | iconv -c -f utf-8 -t utf-8 > "$T/zh.txt" 2>/dev/null
cat "$T/en.txt" "$T/zh.txt" > "$T/mix.txt"
lam 1 vocab train --vocab-size 800 --character-coverage 0.995 -o "$T/tok.model" "$T/mix.txt"
mpirun -np 1 "$LAMINA" prep --seq-len 64 --doc-sep % --tokenizer "$T/tok.model" -o "$T/data.h5" "$T/mix.txt" >/dev/null 2>&1
cat > "$T/tiny.in" <<EOD
[model]
preset = tiny
vocab_size = 800
[train]
steps = 20
seq_len = 64
micro_batch = 2
global_batch = 4
lr = 3e-3
warmup_steps = 2
[data]
train = $T/data.h5
[checkpoint]
dir = $T/ckpt
EOD
lam 1 train "$T/tiny.in"
[ "$rc" = 0 ] || { notok "train the tiny model" "$(tail -3 "$T/out")"; finish; }
CK=$T/ckpt/step_00000020.h5

# items: wisdom (en, 2 dev items: at a 256-token context the first is dropped
# for most test items; one test item so long that even 0-shot is cut),
# 道德 (zh, 1 dev item), 'mixed' (en with one Chinese choice: detected en)
$PY - "$T/mc.jsonl" <<'PYEOF'
import json, sys
L = []
def it(s, q, c, a, sp): L.append(json.dumps(dict(subject=s, question=q, choices=c, answer=a, split=sp), ensure_ascii=False))
it("wisdom", "What is a friend?", ["a gift", "a stone", "a river", "a tax"], "A", "dev")
it("wisdom", "Who knows the way?", ["the sage", "the fool", "nobody", "the king"], "A", "dev")
it("wisdom", "What does water do?", ["flows", "burns", "sings", "breaks"], "A", "test")
it("wisdom", "Where is the Tao?", ["everywhere", "nowhere", "in books", "in gold"], "A", "test")
it("wisdom", "Long: " + "the way that can be told is not the eternal way " * 9, ["yes", "no", "maybe"], "C", "test")
it("道德", "天下皆知美之为美，斯恶已。下一句是？", ["皆知善之为善", "斯不善已", "有无相生", "难易相成"], "B", "dev")
it("道德", "道可道，非常道。下一句是？", ["名可名，非常名", "无名天地之始", "有名万物之母", "故常无欲"], "A", "test")
it("mixed", "Which is water?", ["水", "fire", "earth"], "A", "test")
L.insert(6, "")
it("道德", "上善若水。下一句是？", ["水善利万物而不争", "处众人之所恶", "故几于道", "居善地"], "A", "test")
open(sys.argv[1], "w").write("\n".join(L) + "\n")
PYEOF
$PY -c '
import json
for t, c in [("The way that can be told is not the eternal way. " * 20, "tao"), ("A friend in need is a friend indeed.", "wisdom"),
             ("道可道，非常道。名可名，非常名。" * 10, "道")]: print(json.dumps(dict(text=t, category=c), ensure_ascii=False))' > "$T/held.jsonl"
head -c 20000 "$T/zh.txt" | iconv -c -f utf-8 -t utf-8 > "$T/zhpart.txt" 2>/dev/null
TASKS=(--task mc:"$T/mc.jsonl" --task ppl:"$T/held.jsonl" --task ppl:"$T/zhpart.txt")
REFT=(mc:"$T/mc.jsonl" ppl:"$T/held.jsonl" ppl:"$T/zhpart.txt")

# ev NAME NP ARGS...: lamina eval of the deck into $T/NAME.json, log $T/NAME.log
ev() { local name=$1 np=$2; shift 2; lam "$np" eval "$@" -o "$T/$name.json"; cp "$T/out" "$T/$name.log"; }
ev one 1 "$T/tiny.in" train.seq_len=256 "${TASKS[@]}" --batch 3
if [ "$rc" = 0 ] && out=$($REF "$CK" "$T/tok.model" 256 "$T/one.json" "${REFT[@]}" 2>&1); then
  ok "1 rank: mc letter scores, log-likelihoods, shots, predictions; ppl loss and bpb = the float64 reference"; echo "$out" | sed 's/^/#   /'
else notok "1 rank vs the reference" "exit $rc" "$out" "$(tail -3 "$T/one.log")"; fi
shots=$($PY -c 'import json,sys; r=json.load(open(sys.argv[1]))["tasks"]["mc:"+sys.argv[2]]
print(" ".join("%d/%d" % (i["shots"], i["shots_loglik"]) for i in r["items"]), r["language"])' "$T/one.json" "$T/mc.jsonl" 2>&1)
if grep -q "1 test item(s) with a 0-shot prompt longer than the context" "$T/one.log" && [[ "$shots" == *"0/0"* ]] &&
   [[ "$shots" == *"1/"* ]] && [[ "$shots" == *"'道德': 'zh'"* ]] && [[ "$shots" == *"'mixed': 'en'"* ]]; then
  ok "trimming: a dev item dropped from the front, a 0-shot prompt cut (said once); 道德 detected zh, mixed en"; echo "#   shots (letter/loglik): $shots"
else notok "trimming / language" "$shots" "$(grep -i "context\|error" "$T/one.log")"; fi
if grep -q "all (micro average)" "$T/one.log" && grep -q "道德 .* zh" "$T/one.log" && grep -q "bpb" "$T/one.log"; then
  ok "the table on stdout: accuracy per subject (letter, loglik) and overall; ppl per category"
else notok "table" "$(tail -12 "$T/one.log")"; fi

CMP='import json, sys
a, b = (json.load(open(p))["tasks"] for p in sys.argv[1:3]); w, bad = 0.0, []
for t in b:
    if t.startswith("mc:"):
        if len(a[t]["items"]) != len(b[t]["items"]): bad.append("item count")
        for x, y in zip(a[t]["items"], b[t]["items"]):
            for k in ("scores", "loglik"):
                for u, v in zip(x[k], y[k]): w = max(w, abs(u - v) / (1 + abs(v)))
            for k in ("line", "prediction", "prediction_loglik", "shots", "shots_loglik"):
                if x[k] != y[k]: bad.append("line %d: %s %s vs %s" % (x["line"], k, x[k], y[k]))
    else:
        for c, y in b[t]["by_category"].items():
            x = a[t]["by_category"][c]; w = max(w, abs(x["loss"] - y["loss"]) / abs(y["loss"]))
            if (x["tokens"], x["bytes"]) != (y["tokens"], y["bytes"]): bad.append(f"{c}: counts")
print(f"worst rel diff {w:.2e}", *bad[:5]); sys.exit(1 if bad or w > 1e-5 else 0)'
same() { # same DESCRIPTION NAME: NAME.json = one.json within 1e-5
  local out=""
  if [ "$rc" = 0 ] && out=$($PY -c "$CMP" "$T/$2.json" "$T/one.json" 2>&1); then ok "$1"; echo "#   $out"
  else notok "$1" "exit $rc" "$out" "$(tail -3 "$T/$2.log")"; fi
}
ev dp2 2 "$T/tiny.in" train.seq_len=256 "${TASKS[@]}" --batch 2 parallel.dp=2
same "dp 2 (items split over the ranks, gathered in order) = 1 rank" dp2
ev tp2 2 "$T/tiny.in" train.seq_len=256 "${TASKS[@]}" parallel.tp=2
same "tp 2 (vocab-parallel logits gathered) = 1 rank" tp2
ev pp2 2 "$T/tiny.in" train.seq_len=256 "${TASKS[@]}" --batch 5 parallel.pp=2
same "pp 2 = 1 rank" pp2
ev ck 1 "$CK" "${TASKS[@]}" --batch 1
same "a checkpoint file (context model.max_seq_len, tokenizer from /tokenizer) = the deck" ck
lam 1 convert --to-hf "$CK" -o "$T/hf" --dtype fp32 --tokenizer "$T/tok.model"
ev hf 1 "$T/hf" "${TASKS[@]}"
same "an fp32 Hugging Face folder (tokenizer.model) = the deck" hf

# malformed items: exit 2 naming FILE:LINE
G='{"subject": "s", "question": "q", "choices": ["a", "b"], "answer": "A", "split": "test"}'
bad=0
while IFS='|' read -r line want; do
  printf '%s\n%s\n' "$G" "$line" > "$T/bad.jsonl"
  lam 1 eval "$T/tiny.in" --task mc:"$T/bad.jsonl"
  if [ "$rc" != 2 ] || ! grep -q "bad.jsonl:2: .*$want" "$T/out"; then bad=1; echo "# $line: exit $rc: $(tail -1 "$T/out")"; fi
done <<'EOD'
{"subject": "s", "question": "q", "choices": ["a", "b"], "split": "test"}|missing "answer"
{"subject": "s", "question": "q", "choices": ["a", "b"], "answer": "C", "split": "test"}|"answer" is 'C'
{"subject": "s", "question": "q", "choices": [], "answer": "A", "split": "test"}|empty list
{"subject": "s", "question": "q", "choices": ["a", "b"], "answer": "A", "split": "val"}|"split"
{"subject": "s", "question": "q", "choices": ["a", "b"], "answer": "A"|not JSON
{"subject": "s", "question": "", "choices": ["a", "b"], "answer": "A", "split": "test"}|"question" is empty
{"subject": "t", "question": "q", "choices": ["a", "b"], "answer": "A", "split": "dev"}|subject 't' has dev items but no test items
EOD
[ $bad = 0 ] && ok "malformed items (missing answer, answer not a letter of the choices, empty choices, bad split, not JSON, empty question, a subject with dev but no test items) exit 2 naming FILE:LINE" ||
  notok "malformed items"
lam 2 eval "$T/tiny.in" --task mc:"$T/nofile.jsonl"
expect_fail 2 "nofile.jsonl" "a missing task file: exit 2 naming it (2 ranks)"
lam 1 eval "$T/tiny.in" --task xx:"$T/mc.jsonl"
expect_fail 2 "expected mc:FILE.jsonl or ppl:FILE" "an unknown task kind: exit 2"
ev s0 1 "$T/tiny.in" train.seq_len=256 --task mc:"$T/mc.jsonl" --shots 0
if [ "$rc" = 0 ] && $PY -c 'import json,sys; r=json.load(open(sys.argv[1]))["tasks"]["mc:"+sys.argv[2]]
sys.exit(0 if all(i["shots"] == 0 and i["shots_loglik"] == 0 for i in r["items"]) else 1)' "$T/s0.json" "$T/mc.jsonl"
then ok "--shots 0: every prompt 0-shot"; else notok "--shots 0" "$(tail -3 "$T/s0.log")"; fi
finish
