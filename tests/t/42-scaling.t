#!/bin/bash
# 42-scaling.t — perf/scaling.py: a real strong and weak sweep on 1 and 2
# ranks (tiny model, 4 steps), the plots (valid PNGs), scaling.json against
# statistics recomputed here from the JSONL, the `regions` breakdown (lamina's
# own, open-ended names) and its compute/comm fallback, oversubscription, the
# cluster submit hand-off, bad input (exit 2) and a failing run (exit 1).
source tests/lib.sh
plan 17
SC=(/usr/bin/python3 perf/scaling.py)
make_data 32
make_deck
R=$T/runs
P=$T/plots

# sc ARGS...: scaling.py with output in $T/sc.out, exit code in $rc.
sc() { rc=0; timeout 300 "${SC[@]}" "$@" >"$T/sc.out" 2>&1 || rc=$?; }
# sc_fail CODE PATTERN DESCRIPTION ARGS...
sc_fail() {
  local code=$1 pat=$2 d=$3; shift 3
  sc "$@"
  if [ "$rc" = "$code" ] && grep -q -- "$pat" "$T/sc.out"; then ok "$d"
  else notok "$d" "exit $rc (want $code), output:" "$(tail -3 "$T/sc.out")"; fi
}

sc run-local --sweep both --ranks 1,2 --out "$R" --deck "$T/tiny.in" --data "$T/data.h5" --steps 4 \
  --global-batch 4 --per-rank-batch 2 --micro-batch 2 train.lr=1e-3
if [ "$rc" = 0 ]; then ok "run-local: strong and weak sweep on 1 and 2 ranks"; else notok "run-local" "exit $rc" "$(tail -5 "$T/sc.out")"; fi

# Each run folder: 4 logged steps, no checkpoint left behind, and a job.env with the point's settings.
check "run folders: metrics.jsonl with 4 steps and job.env per point" $PY - "$R" <<'EOF'
import json, os, shlex, sys
R = sys.argv[1]
want = {("strong", 1): 4, ("strong", 2): 4, ("weak", 1): 2, ("weak", 2): 4}
for (s, n), gb in want.items():
    d = f"{R}/{s}/n{n}"
    steps = [json.loads(l)["step"] for l in open(f"{d}/metrics.jsonl")]
    assert steps == [1, 2, 3, 4], (d, steps)
    env = dict(l.strip().split("=", 1) for l in open(f"{d}/job.env"))
    env = {k: shlex.split(v)[0] for k, v in env.items()}
    got = (env["SWEEP"], int(env["RANKS"]), int(env["GLOBAL_BATCH"]), int(env["MICRO_BATCH"]), env["TP"], env["PP"])
    assert got == (s, n, gb, 2, "1", "1"), (d, got)
    for k in ("JOB_ID", "JOB_NAME", "NODES", "GPUS_PER_NODE", "DECK", "RESTARTS"):
        assert k in env, (d, k)
    assert not os.path.exists(f"{d}/ckpt"), d
    assert "train.lr=1e-3" in open(f"{d}/run.cmd").read()
EOF

sc plot "$R" --out "$P"
if [ "$rc" = 0 ] && grep -q "^| strong |" "$T/sc.out" && grep -q "^| weak |" "$T/sc.out"; then
  ok "plot: exit 0, markdown table printed"
else notok "plot" "exit $rc" "$(tail -5 "$T/sc.out")"; fi

# PNG: magic bytes, IHDR width/height, the same shape as matplotlib reads back.
check "strong.png and weak.png are valid PNGs" $PY - "$P" <<'EOF'
import struct, sys
import matplotlib; matplotlib.use("Agg")
import matplotlib.image as mpimg
for name in ("strong", "weak"):
    p = f"{sys.argv[1]}/{name}.png"
    b = open(p, "rb").read()
    assert len(b) > 10000 and b[:8] == b"\x89PNG\r\n\x1a\n" and b[12:16] == b"IHDR", p
    w, h = struct.unpack(">II", b[16:24])
    assert w >= 600 and h >= 400, (w, h)
    assert mpimg.imread(p).shape[:2] == (h, w), p
print("ok")
EOF

# independent statistics: median tokens/s over steps 2..4 (warm-up 1) and E(N) = T(N) / ((N/N0) T(N0))
stats() { $PY - "$@" <<'EOF'
import json, statistics, sys
R, P, warm = sys.argv[1], sys.argv[2], int(sys.argv[3])
J = json.load(open(f"{P}/scaling.json"))
assert J["warmup_steps"] == warm
assert sorted(J["sweeps"]) == ["strong", "weak"], sorted(J["sweeps"])
def med(s, n, key="tokens_per_s"):
    v = [json.loads(l) for l in open(f"{R}/{s}/n{n}/metrics.jsonl")][warm:]
    return statistics.median(r[key] for r in v), len(v)
for s in ("strong", "weak"):
    (ser,) = J["sweeps"][s]
    pts = ser["points"]
    assert [p["ranks"] for p in pts] == [1, 2], pts
    for p in pts:
        t = p["tokens_per_s"]
        m, n = med(s, p["ranks"])
        assert p["steps_used"] == n == 4 - warm, (p["steps_used"], n)
        assert 0 < t["min"] <= t["median"] <= t["max"] and abs(t["median"] - m) <= 1e-9 * m, (t, m)
        assert 0 < p["mfu"]["median"] < 1 and p["step_ms"]["median"] > 0
    e = pts[1]["efficiency"]["value"]
    want = med(s, 2)[0] / (2 * med(s, 1)[0])
    assert abs(e - want) <= 1e-9 * want and pts[0]["efficiency"]["value"] == 1.0, (s, e, want)
    assert 0.005 < e < 5, e
    print(f"{s}: E(2) = {e:.3f} (recomputed {want:.3f})")
EOF
}
if out=$(stats "$R" "$P" 1 2>&1); then ok "scaling.json: ranks 1,2 per sweep, medians and efficiency as recomputed"; echo "$out" | sed 's/^/#   /'
else notok "scaling.json" "$out"; fi

sc plot "$R" --out "$T/plots2" --warmup 2
if [ "$rc" = 0 ] && out=$(stats "$R" "$T/plots2" 2 2>&1); then ok "--warmup 2: two steps left out, statistics follow"
else notok "--warmup 2" "exit $rc" "$out"; fi

# lamina logs `regions` per step: the breakdown is each region's mean over the measured steps, plus
# other = mean(step_ms - sum of regions); the parts add up to the mean step.
check "breakdown from lamina's own regions (means over steps 2..4)" $PY - "$P" "$R" <<'EOF'
import json, sys
J = json.load(open(f"{sys.argv[1]}/scaling.json"))
for s in ("strong", "weak"):
    p = J["sweeps"][s][0]["points"][1]
    rows = [json.loads(l) for l in open(f"{sys.argv[2]}/{s}/n2/metrics.jsonl")][1:]
    assert all(isinstance(r.get("regions"), dict) for r in rows), "no regions in lamina's metrics"
    assert p["breakdown_source"] == "regions", p["breakdown_source"]
    names = {k for r in rows for k in r["regions"]}
    assert {"forward_backward", "comm"} <= names and set(p["breakdown_ms"]) == names | {"other"}, (names, p)
    for k in names:
        want = sum(r["regions"].get(k, 0.0) for r in rows) / len(rows)
        assert abs(p["breakdown_ms"][k] - want) <= 1e-9 * max(1.0, want), (k, p["breakdown_ms"][k], want)
    mean_step = sum(r["step_ms"] for r in rows) / len(rows)
    assert abs(sum(p["breakdown_ms"].values()) - mean_step) < 1e-6 * mean_step, (p["breakdown_ms"], mean_step)
EOF

# Without `regions` (an older build): compute = step_ms - comm_ms and comm.
mkdir -p "$T/noreg"; cp -r "$R/weak" "$T/noreg/"
$PY -c 'import json, sys
for p in sys.argv[1:]:
    rows = [json.loads(l) for l in open(p)]
    for r in rows: r.pop("regions", None)
    open(p, "w").writelines(json.dumps(r) + "\n" for r in rows)' "$T"/noreg/weak/n*/metrics.jsonl
sc plot "$T/noreg" --out "$T/plots4"
check "breakdown falls back to compute/comm without regions" $PY - "$T/plots4" "$T/noreg" <<'EOF'
import json, sys
J = json.load(open(f"{sys.argv[1]}/scaling.json"))
p = J["sweeps"]["weak"][0]["points"][1]
assert p["breakdown_source"] == "comm_ms" and sorted(p["breakdown_ms"]) == ["comm", "compute"], p
rows = [json.loads(l) for l in open(f"{sys.argv[2]}/weak/n2/metrics.jsonl")][1:]
mean = lambda k: sum(r[k] for r in rows) / len(rows)
assert abs(p["breakdown_ms"]["comm"] - mean("comm_ms")) < 1e-9 * max(1, mean("comm_ms"))
assert abs(sum(p["breakdown_ms"].values()) - mean("step_ms")) < 1e-6
EOF

# With `regions` (exclusive ms, open-ended names) the breakdown uses them, plus other = step_ms - sum.
# The copy also claims a 1-core machine: 2 ranks are then oversubscribed.
mkdir -p "$T/reg"; cp -r "$R/strong" "$T/reg/"
$PY - "$T/reg/strong" <<'EOF'
import json, sys
for n in (1, 2):
    p = f"{sys.argv[1]}/n{n}/metrics.jsonl"
    rows = [json.loads(l) for l in open(p)]
    for r in rows:
        r["regions"] = {"data": 0.1 * r["step_ms"], "forward_backward": 0.5 * r["step_ms"],
                        "kernel.gemm": 0.2 * r["step_ms"], "comm": r["comm_ms"] * 0.0}
    open(p, "w").writelines(json.dumps(r) + "\n" for r in rows)
    open(f"{sys.argv[1]}/n{n}/job.env", "a").write("CORES=1\nTHREADS=1\n")
EOF
sc plot "$T/reg" --out "$T/plots3"
check "breakdown uses regions when logged (other = step_ms - sum); oversubscription flagged" $PY - "$T/plots3" <<'EOF'
import json, sys
J = json.load(open(f"{sys.argv[1]}/scaling.json"))
assert list(J["sweeps"]) == ["strong"], list(J["sweeps"])
for p in J["sweeps"]["strong"][0]["points"]:
    b = p["breakdown_ms"]
    assert p["breakdown_source"] == "regions" and set(b) == {"data", "forward_backward", "kernel.gemm", "comm", "other"}, b
    tot = sum(b.values())
    assert abs(b["other"] / tot - 0.2) < 1e-9 and abs(b["forward_backward"] / tot - 0.5) < 1e-9, b
    assert p["oversubscribed"] == (p["ranks"] == 2), p
EOF
if [ -s "$T/plots3/strong.png" ] && [ ! -e "$T/plots3/weak.png" ] && grep -q "no weak runs" "$T/sc.out"; then
  ok "only the sweeps present are plotted"
else notok "only the sweeps present are plotted" "$(ls "$T/plots3")"; fi

# submit: the job scripts get the deck and overrides as arguments, the sweep in the environment; job ids are reported.
mkdir -p "$T/js"
for s in strong weak; do
  printf '#!/bin/bash\necho "$LAMINA_SWEEP GPUS=$GPUS GB=${GLOBAL_BATCH:-} PRB=${PER_RANK_BATCH:-} RUNS=$LAMINA_RUNS args=$*" >> %s/calls\necho "Submitted batch job 42%s"\n' \
    "$T/js" "$([ $s = strong ] && echo 1 || echo 2)" > "$T/js/$s.sh"
done
sc submit --sweep both --gpus 8,16,32 --deck "$T/tiny.in" --global-batch 64 --per-rank-batch 4 --jobscripts "$T/js" \
  --out "$T/cl" parallel.zero=1
if [ "$rc" = 0 ] && grep -q "strong: submitted 1 job(s): 421" "$T/sc.out" && grep -q "weak: submitted 1 job(s): 422" "$T/sc.out" \
   && grep -q "^strong GPUS=8,16,32 GB=64 PRB= RUNS=$T/cl args=$T/tiny.in parallel.zero=1\$" "$T/js/calls" \
   && grep -q "^weak GPUS=8,16,32 GB= PRB=4 " "$T/js/calls"; then ok "submit: job scripts called, job ids reported"
else notok "submit" "exit $rc" "$(cat "$T/sc.out" "$T/js/calls" 2>&1 | tail -5)"; fi

sc_fail 2 "invalid choice: 'sideways'" "unknown sweep: exit 2" run-local --sweep sideways --out "$T/x"
sc_fail 2 "does not divide by dp x micro_batch = 4 x 2" "strong global batch that does not divide: exit 2" \
  run-local --sweep strong --ranks 1,2,4 --global-batch 12 --micro-batch 2 --out "$T/x" --data "$T/data.h5"
sc_fail 2 "train.global_batch" "an override of a key the sweep sets: exit 2" \
  run-local --sweep weak --out "$T/x" --data "$T/data.h5" train.global_batch=8
mkdir -p "$T/empty/sub"
sc_fail 2 "no run folders" "plot on a folder without runs: exit 2" plot "$T/empty" --out "$T/x"
sc_fail 2 "job script .*not found" "submit without the job scripts: exit 2" \
  submit --sweep weak --gpus 8,16 --deck "$T/tiny.in" --jobscripts "$T/empty"
# A run that fails (lamina rejects the deck) stops the sweep with exit 1 and the log's tail.
sc_fail 1 "lamina train failed" "a failing run: exit 1 with its log" \
  run-local --sweep strong --ranks 1 --global-batch 4 --out "$T/bad" --deck "$T/tiny.in" --data "$T/data.h5" --steps 2 \
  model.n_heads=3
finish
