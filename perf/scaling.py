#!/usr/bin/python3
"""scaling.py — lamina's scaling-study driver (perf/SCALING.md).

  scaling.py run-local --sweep strong|weak|both --ranks 1,2,4 --out DIR
             [--deck DECK] [--data FILE] [--steps N] [--global-batch B]
             [--per-rank-batch b] [--micro-batch m] [section.key=value ...]
  scaling.py submit --sweep strong|weak|both --gpus 8,16,32 [--deck DECK]
             [--steps N] [--global-batch B] [--per-rank-batch b] [--out DIR]
             [--jobscripts DIR] [--dry-run] [section.key=value ...]
  scaling.py plot DIR... --out PLOTDIR [--warmup N] [--note TEXT]

A run folder holds `metrics.jsonl` (SPEC §6, one object per logged step,
optionally with `regions`: region name -> exclusive ms of that step) and
`job.env` (shell assignments JOB_ID, JOB_NAME, NODES, RANKS, GPUS_PER_NODE,
SWEEP, GLOBAL_BATCH, MICRO_BATCH, TP, PP, DECK, RESTARTS). `run-local`
writes such folders on this machine, the cluster job scripts write them
there; `plot` reads any number of them.

Exit codes: 0 ok, 1 a run or job script failed, 2 bad arguments or input.
"""
import argparse
import configparser
import datetime
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = ["wisdom", "tao", "linux"]          # Debian fortunes files, as tests/lib.sh make_data
FORTUNES = "/usr/share/games/fortunes"
# The default local shape: 3.1M parameters (dim 256, 4 layers, GQA 8/4 heads,
# byte vocabulary), sequences of 128 tokens; one rank on one core here does
# ~30 sequences/s, so a point of the sweep takes seconds, not minutes.
DEFAULT_DECK = """\
; the scaling.py run-local default deck (perf/SCALING.md)
[model]
dim = 256
n_layers = 4
n_heads = 8
n_kv_heads = 4
ffn_dim = 704
vocab_size = 258
max_seq_len = 128
[train]
steps = 20
seq_len = 128
micro_batch = 2
global_batch = 8
lr = 1e-3
lr_schedule = constant
warmup_steps = 0
[data]
shuffle = true
"""


class BadInput(Exception):
    """bad arguments or input files: exit 2 with the message"""


def die(msg, code=2):
    print(f"scaling.py: {msg}", file=sys.stderr)
    sys.exit(code)


def int_list(text, what):
    """'1,2,4' -> [1, 2, 4]: positive, no repeats, sorted ascending."""
    try:
        v = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise BadInput(f"{what} '{text}': not a comma-separated list of integers")
    if not v or min(v) < 1:
        raise BadInput(f"{what} '{text}': needs one or more positive integers")
    if len(set(v)) != len(v):
        raise BadInput(f"{what} '{text}': a count appears twice")
    return sorted(v)


# ---------------------------------------------------------------------------
# Deck and overrides: the few keys the driver must know (micro-batch, seq_len,
# tp, pp) are read from the deck, then from section.key=value overrides, which
# win as they do in lamina itself.

# Keys the driver sets per point; an override of them would silently change
# the sweep, so they come through the driver's own options instead.
OWNED = {"train.global_batch": "--global-batch/--per-rank-batch", "train.steps": "--steps",
         "checkpoint.dir": "(one per run folder)", "log.metrics": "(one per run folder)",
         "data.train": "--data"}


def parse_overrides(items):
    out = {}
    for it in items:
        m = re.fullmatch(r"([A-Za-z_][\w]*)\.([A-Za-z_][\w]*)=(.*)", it)
        if not m:
            raise BadInput(f"'{it}': expected section.key=value")
        k = f"{m.group(1)}.{m.group(2)}"
        if k in OWNED:
            raise BadInput(f"override '{k}' is set by the driver per run: use {OWNED[k]}")
        out[k] = m.group(3)
    return out


def read_deck(path):
    """section.key -> value of an INI deck (lamina's syntax: ; or # comments)."""
    cp = configparser.ConfigParser(inline_comment_prefixes=(";", "#"), comment_prefixes=(";", "#"),
                                   strict=False, interpolation=None)
    try:
        with open(path) as f:
            cp.read_file(f)
    except OSError as e:
        raise BadInput(f"deck '{path}': {e.strerror}")
    except configparser.Error as e:
        raise BadInput(f"deck '{path}': {e}")
    return {f"{s}.{k}": v.strip() for s in cp.sections() for k, v in cp.items(s)}


def get_int(conf, key, default, where):
    v = conf.get(key, default)
    try:
        return int(v)
    except (TypeError, ValueError):
        raise BadInput(f"{key} = '{v}' in {where}: not an integer")


def sweep_batches(sweep, counts, micro, tp, pp, global_batch, per_rank):
    """Global batch per rank count. Strong: fixed global batch B, which must
    split into whole micro-batches on every rank count (B % (dp*m) == 0,
    dp = N/(tp*pp)). Weak: fixed work per data-parallel rank b = m x
    accumulation steps, so B = b*dp."""
    out = {}
    for n in counts:
        if n % (tp * pp):
            raise BadInput(f"{n} ranks do not divide into tp {tp} x pp {pp}")
        dp = n // (tp * pp)
        if sweep == "strong":
            if global_batch % (dp * micro):
                raise BadInput(f"strong sweep: --global-batch {global_batch} does not divide by "
                               f"dp x micro_batch = {dp} x {micro} = {dp * micro} at {n} ranks "
                               f"(it must divide by every rank count x micro_batch)")
            out[n] = global_batch
        else:
            if per_rank % micro:
                raise BadInput(f"weak sweep: --per-rank-batch {per_rank} is not a multiple of "
                               f"micro_batch {micro}")
            out[n] = per_rank * dp
    return out


def model_desc(conf):
    """A short name of the model shape in a deck's section.key dict: the
    preset, and the explicit shape keys that override it."""
    parts = [conf["model.preset"]] if conf.get("model.preset") else []
    names = (("dim", "dim {}"), ("n_layers", "{} layers"), ("n_heads", "{} heads"), ("n_kv_heads", "{} kv"),
             ("ffn_dim", "ffn {}"), ("vocab_size", "vocab {}"))
    parts += [f.format(conf[f"model.{k}"]) for k, f in names if conf.get(f"model.{k}")]
    return " ".join(parts)


def write_env(path, env):
    with open(path, "w") as f:
        for k, v in env.items():
            f.write(f"{k}={shlex.quote(str(v))}\n")


# ---------------------------------------------------------------------------
# run-local

def make_data(lamina, out, seq_len, env):
    """The fortunes corpus (ANSI colours stripped) prepped by `lamina prep`
    into OUT/data.h5 with this seq_len, as tests/lib.sh make_data does."""
    text = []
    for name in CORPUS:
        p = os.path.join(FORTUNES, name)
        try:
            with open(p, encoding="utf-8", errors="replace") as f:
                text.append(re.sub(r"\x1b\[[0-9;]*m", "", f.read()))
        except OSError as e:
            raise BadInput(f"corpus file '{p}': {e.strerror} (install the fortunes package or pass --data)")
    corpus = os.path.join(out, "corpus.txt")
    with open(corpus, "w", encoding="utf-8") as f:
        f.write("".join(text))
    data = os.path.join(out, "data.h5")
    r = subprocess.run(["mpirun", "-np", "1", lamina, "prep", "--seq-len", str(seq_len), "--doc-sep", "%",
                        "-o", data, corpus], env=env, capture_output=True, text=True)
    if r.returncode:
        die(f"lamina prep failed (exit {r.returncode}):\n{r.stdout}{r.stderr}", 1)
    return data


def cpu_busy():
    """Core-seconds the whole machine has been busy (/proc/stat: user, nice,
    system, irq, softirq, steal), or None where there is no /proc/stat."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (v[0] + v[1] + v[2] + sum(v[5:8])) / os.sysconf("SC_CLK_TCK")


def children_cpu():
    """CPU seconds of our finished children (mpirun and, through it, the ranks)."""
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_job(cmd, env, log, timeout):
    """Run cmd in its own process group; past `timeout` seconds the whole
    group (mpirun and its ranks) gets SIGTERM, then SIGKILL."""
    p = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        return p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, None)):
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                break
            try:
                p.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        return f"timeout after {timeout} s"


def other_load(seconds):
    """Cores kept busy by other processes over the next `seconds`."""
    b0, c0 = cpu_busy(), children_cpu()
    if b0 is None:
        return 0.0
    time.sleep(seconds)
    return max(0.0, (cpu_busy() - b0) - (children_cpu() - c0)) / seconds


def wait_idle(limit, busy):
    """Wait (at most `limit` seconds) until other processes keep at most
    `busy` cores busy over 3 s: a shared machine's noise stays out of the
    timings when it can."""
    end = time.time() + limit
    while True:
        load = other_load(3.0)
        if load <= busy:
            return
        if time.time() >= end:
            print(f"       the machine stayed busy ({load:.1f} cores used by others): running anyway", flush=True)
            return


def run_point(a, c, d, s, n, gb):
    """One point of a sweep (sweep s, n ranks, global batch gb) in its fresh
    run folder d; c holds what every point shares. Returns (other load in
    cores during the run, wall seconds, metrics rows); a failed run ends the
    driver with exit 1 and the log's tail."""
    os.makedirs(d, exist_ok=True)
    for old in ("metrics.jsonl", "run.log", "job.env", "run.cmd"):
        if os.path.exists(os.path.join(d, old)):
            os.remove(os.path.join(d, old))
    shutil.rmtree(os.path.join(d, "ckpt"), ignore_errors=True)
    write_env(os.path.join(d, "job.env"), {
        "JOB_ID": f"local-{c['stamp']}-{s}-n{n}", "JOB_NAME": f"lamina-{s}-n{n}", "NODES": 1,
        "RANKS": n, "GPUS_PER_NODE": 0, "SWEEP": s, "GLOBAL_BATCH": gb, "MICRO_BATCH": c["micro"],
        "TP": c["tp"], "PP": c["pp"], "DECK": c["deck"], "RESTARTS": 0,
        # beyond the contract: the series name, and what flags oversubscription
        "MODEL": model_desc(c["conf"]), "HOST": socket.gethostname(), "CORES": c["cores"],
        "THREADS": a.threads, "DEVICE": "cpu"})
    cmd = ["mpirun", "--bind-to", "none", "--oversubscribe", "-np", str(n), c["lamina"], "train", c["deck"],
           *[f"{k}={v}" for k, v in c["over"].items()],
           f"train.steps={c['steps']}", f"train.global_batch={gb}", f"train.micro_batch={c['micro']}",
           f"data.train={c['data']}", f"checkpoint.dir={d}/ckpt", "checkpoint.every=0",
           "checkpoint.restart=none", f"log.metrics={d}/metrics.jsonl", "log.every=1"]
    with open(os.path.join(d, "run.cmd"), "w") as f:
        f.write(" ".join(shlex.quote(c) for c in cmd) + "\n")
    t0, busy0, ours0 = time.time(), cpu_busy(), children_cpu()
    with open(os.path.join(d, "run.log"), "w") as log:
        rc = run_job(cmd, c["env"], log, a.timeout)
    dt = time.time() - t0
    other = max(0.0, (cpu_busy() - busy0) - (children_cpu() - ours0)) / dt if busy0 is not None else 0.0
    with open(os.path.join(d, "job.env"), "a") as f:
        f.write(f"OTHER_LOAD={other:.2f}\n")
    if rc != 0:
        tail = open(os.path.join(d, "run.log")).read().splitlines()[-8:]
        die(f"{s} sweep, {n} ranks: lamina train failed ({rc}) after {dt:.1f} s; "
            f"{d}/run.log ends:\n  " + "\n  ".join(tail), 1)
    if not a.keep_ckpt:
        shutil.rmtree(os.path.join(d, "ckpt"), ignore_errors=True)
    return other, dt, load_metrics(os.path.join(d, "metrics.jsonl"))[0]


def cmd_run_local(a):
    counts = int_list(a.ranks, "--ranks")
    over = parse_overrides(a.overrides)
    if not shutil.which("mpirun"):
        raise BadInput("mpirun not found on PATH (Open MPI)")
    lamina = os.path.abspath(a.lamina)
    if not os.access(lamina, os.X_OK):
        raise BadInput(f"'{a.lamina}' is not an executable: build it with make")
    os.makedirs(a.out, exist_ok=True)
    out = os.path.abspath(a.out)
    if a.deck:
        deck = os.path.abspath(a.deck)
        conf = read_deck(deck)
    else:
        deck = os.path.join(out, "deck.in")
        with open(deck, "w") as f:
            f.write(DEFAULT_DECK)
        conf = read_deck(deck)
    conf.update(over)
    where = f"deck '{deck}' and overrides"
    micro = a.micro_batch or get_int(conf, "train.micro_batch", None, where)
    seq = get_int(conf, "train.seq_len", None, where)
    tp = get_int(conf, "parallel.tp", 1, where)
    pp = get_int(conf, "parallel.pp", 1, where)
    steps = a.steps or get_int(conf, "train.steps", None, where)
    if micro < 1 or seq < 1 or steps < 1:
        raise BadInput("micro_batch, seq_len and steps must be positive")
    if conf.get("parallel.dp", "auto") != "auto":
        raise BadInput("parallel.dp must stay auto: the sweep sets the rank count")
    sweeps = ["strong", "weak"] if a.sweep == "both" else [a.sweep]
    plan = {s: sweep_batches(s, counts, micro, tp, pp, a.global_batch, a.per_rank_batch) for s in sweeps}

    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), OPENBLAS_NUM_THREADS=str(a.threads),
               OMPI_MCA_rmaps_base_oversubscribe="1")
    if os.geteuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    data = os.path.abspath(a.data) if a.data else make_data(lamina, out, seq, env)
    if not os.path.isfile(data):
        raise BadInput(f"--data '{a.data}': no such file")
    c = dict(stamp=datetime.datetime.now().strftime("%Y%m%dT%H%M%S"), cores=os.cpu_count() or 1,
             micro=micro, tp=tp, pp=pp, steps=steps, deck=deck, conf=conf, over=over, data=data, env=env,
             lamina=lamina)
    for s in sweeps:
        for n in counts:
            d = os.path.join(out, s, f"n{n}")
            gb = plan[s][n]
            for attempt in range(a.retries + 1):
                if a.wait_idle:
                    wait_idle(a.wait_idle, a.busy)
                other, dt, rows = run_point(a, c, d, s, n, gb)
                tps = median([r["tokens_per_s"] for r in rows[a.warmup:] if finite(r.get("tokens_per_s"))])
                print(f"{s:6} {n:3d} rank(s): global batch {gb:4d}, {len(rows)} steps in {dt:5.1f} s, "
                      f"median {tps:9.0f} tokens/s, other load {other:.2f} cores -> {d}", flush=True)
                if other <= a.busy or attempt == a.retries:
                    break
                print(f"       other processes kept {other:.2f} cores busy (> --busy {a.busy}): run again",
                      flush=True)
    print(f"plot with: {sys.argv[0]} plot {a.out} --out PLOTDIR")


# ---------------------------------------------------------------------------
# submit: jobscripts/<sweep>.sh (<sweep>-pbs.sh with --pbs) does the work. It is called as
#   bash jobscripts/strong.sh DECK [section.key=value ...]
# with the sweep's settings in the environment (SWEEP, GPUS, GLOBAL_BATCH or
# PER_RANK_BATCH, MICRO_BATCH, STEPS, and LAMINA_SWEEP, LAMINA_RUNS as
# jobscripts/submit reads them), and prints one job id per submitted job.

def cmd_submit(a):
    if not a.deck:
        raise BadInput("submit needs --deck (the deck every job of the sweep runs)")
    gpus = int_list(a.gpus, "--gpus")
    over = parse_overrides(a.overrides)
    sweeps = ["strong", "weak"] if a.sweep == "both" else [a.sweep]
    conf = read_deck(a.deck)
    conf.update(over)
    where = f"deck '{a.deck}' and overrides"
    micro = a.micro_batch or get_int(conf, "train.micro_batch", None, where)
    tp = get_int(conf, "parallel.tp", 1, where)
    pp = get_int(conf, "parallel.pp", 1, where)
    for s in sweeps:        # validate before submitting anything
        sweep_batches(s, gpus, micro, tp, pp, a.global_batch, a.per_rank_batch)
    suffix = "-pbs.sh" if a.pbs else ".sh"
    for s in sweeps:
        script = os.path.join(a.jobscripts, s + suffix)
        if not os.path.isfile(script):
            raise BadInput(f"job script '{script}' not found (--jobscripts names the folder)")
    ids_all = {}
    for s in sweeps:
        script = os.path.join(a.jobscripts, s + suffix)
        sets = {"SWEEP": s, "LAMINA_SWEEP": s, "GPUS": ",".join(map(str, gpus)), "MICRO_BATCH": str(micro)}
        if a.out:
            sets["LAMINA_RUNS"] = os.path.abspath(a.out)
        if a.steps:
            sets["STEPS"] = str(a.steps)
        if s == "strong":
            sets["GLOBAL_BATCH"] = str(a.global_batch)
        else:
            sets["PER_RANK_BATCH"] = str(a.per_rank_batch)
        cmd = ["bash", script, os.path.abspath(a.deck), *[f"{k}={v}" for k, v in over.items()]]
        if a.dry_run:
            print(" ".join(f"{k}={shlex.quote(v)}" for k, v in sets.items()), " ".join(map(shlex.quote, cmd)))
            continue
        r = subprocess.run(cmd, env=dict(os.environ, **sets), capture_output=True, text=True)
        sys.stdout.write(r.stdout)
        sys.stderr.write(r.stderr)
        if r.returncode:
            die(f"{script} failed (exit {r.returncode})", 2 if r.returncode == 2 else 1)
        # "Submitted batch job 123" (sbatch), "123" (sbatch --parsable), "123.server" (PBS qsub)
        ids = re.findall(r"^(?:Submitted batch job\s+)?(\d+(?:\.[\w.-]+)?)(?:;\S+)?\s*$", r.stdout, re.M)
        ids_all[s] = ids
        print(f"{s}: submitted {len(ids)} job(s): {' '.join(ids) or '(no job ids printed)'}")
    if not a.dry_run:
        runs = a.out or os.environ.get("LAMINA_RUNS", "$LAMINA_RUNS")
        if a.out:
            os.makedirs(a.out, exist_ok=True)
            with open(os.path.join(a.out, "submitted.json"), "a") as f:
                f.write(json.dumps({"time": datetime.datetime.now().isoformat(timespec="seconds"),
                                    "deck": os.path.abspath(a.deck), "gpus": gpus, "jobs": ids_all}) + "\n")
        print(f"when they have run: {sys.argv[0]} plot {runs} --out PLOTDIR")


# ---------------------------------------------------------------------------
# plot: statistics per point, efficiency, figures, table.

def finite(x):
    return isinstance(x, (int, float)) and x == x and abs(x) != float("inf")


def median(v):
    s = sorted(v)
    if not s:
        return float("nan")
    m = len(s) // 2
    return s[m] if len(s) % 2 else 0.5 * (s[m - 1] + s[m])


def parse_env(path):
    """KEY=value lines of a shell file (export and quotes allowed)."""
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("export "):
                line = line[7:].strip()
            m = re.fullmatch(r"([A-Za-z_]\w*)=(.*)", line)
            if not m:
                continue
            try:
                v = shlex.split(m.group(2), comments=True)
            except ValueError:
                v = [m.group(2)]
            env[m.group(1)] = " ".join(v)
    return env


def load_metrics(path):
    """Rows of a metrics file, each tagged with its segment: a step number
    that does not increase starts a new segment (a restart re-logs steps
    after its checkpoint), and warm-up is skipped in every segment."""
    rows, bad, seg, last = [], 0, 0, None
    with open(path) as f:
        for line in f:
            try:
                r = json.loads(line)
                step = int(r["step"])
            except (ValueError, KeyError, TypeError):
                bad += 1            # a torn last line of a killed run
                continue
            if last is not None and step <= last:
                seg += 1
            last = step
            r["_seg"] = seg
            rows.append(r)
    return rows, bad


def measured(rows, warmup):
    """Rows after the first `warmup` of every segment."""
    out, seen = [], {}
    for r in rows:
        k = seen.get(r["_seg"], 0)
        seen[r["_seg"]] = k + 1
        if k >= warmup:
            out.append(r)
    return out


def find_runs(dirs):
    runs = []
    for top in dirs:
        if not os.path.isdir(top):
            raise BadInput(f"'{top}': no such folder")
        for d, sub, files in os.walk(top):
            sub.sort()
            if "metrics.jsonl" in files:
                if "job.env" not in files:
                    print(f"scaling.py: note: {d} has metrics.jsonl but no job.env: skipped", file=sys.stderr)
                    continue
                runs.append(d)
    return runs


def stat(v):
    v = [x for x in v if finite(x)]
    if not v:
        return None
    return {"median": median(v), "min": min(v), "max": max(v), "n": len(v)}


def run_info(d, warmup):
    env = parse_env(os.path.join(d, "job.env"))
    miss = [k for k in ("SWEEP", "RANKS") if not env.get(k)]
    if miss:
        print(f"scaling.py: note: {d}/job.env lacks {', '.join(miss)}: skipped", file=sys.stderr)
        return None
    try:
        ranks = int(env["RANKS"])
        ints = {k: int(env.get(k) or dflt) for k, dflt in
                (("NODES", 1), ("GPUS_PER_NODE", 0), ("TP", 1), ("PP", 1), ("GLOBAL_BATCH", 0),
                 ("MICRO_BATCH", 0), ("RESTARTS", 0), ("CORES", 0), ("THREADS", 0))}
    except ValueError as e:
        print(f"scaling.py: note: {d}/job.env: {e}: skipped", file=sys.stderr)
        return None
    rows, bad = load_metrics(os.path.join(d, "metrics.jsonl"))
    if bad:
        print(f"scaling.py: note: {d}/metrics.jsonl: {bad} unreadable line(s) ignored", file=sys.stderr)
    m = measured(rows, warmup)
    if not m:
        print(f"scaling.py: note: {d}: {len(rows)} step(s) logged, none after a warm-up of {warmup}: skipped",
              file=sys.stderr)
        return None
    try:
        other = float(env.get("OTHER_LOAD") or 0)
    except ValueError:
        other = 0.0
    if env.get("STATUS", "done") not in ("done", ""):
        print(f"scaling.py: note: {d}: job status '{env['STATUS']}': its logged steps are used", file=sys.stderr)
    model = env.get("MODEL")
    if model is None:            # cluster runs: the [model] section of the run's deck copy
        for deck in (env.get("DECK", ""), os.path.join(d, "deck.in")):
            if deck and os.path.isfile(deck):
                try:
                    model = model_desc(read_deck(deck))
                except BadInput:
                    pass
                break
    model = model or os.path.basename(env.get("DECK", ""))
    return dict(dir=d, sweep=env["SWEEP"].lower(), ranks=ranks, other_load=other, model=model,
                host=env.get("HOST", ""), device=env.get("DEVICE", "gpu" if ints["GPUS_PER_NODE"] else ""),
                rows=m, n_logged=len(rows), **{k.lower(): v for k, v in ints.items()})


def breakdown(rows):
    """Per-step time split. With `regions` (exclusive ms, summing to at most
    step_ms): the mean of each region over the measured steps plus `other` =
    mean(step_ms - sum of regions); means, so that the parts add up to the
    mean step time. Without regions: compute = step_ms - comm_ms, comm."""
    rr = [r for r in rows if isinstance(r.get("regions"), dict) and finite(r.get("step_ms"))]
    if rr:
        tot = {}
        for r in rr:
            s = 0.0
            for k, v in r["regions"].items():
                if finite(v):
                    tot[k] = tot.get(k, 0.0) + v
                    s += v
            tot["other"] = tot.get("other", 0.0) + max(0.0, r["step_ms"] - s)
        return "regions", {k: v / len(rr) for k, v in tot.items()}
    rr = [r for r in rows if finite(r.get("step_ms"))]
    if not rr:
        return "none", {}
    comm = [r["comm_ms"] if finite(r.get("comm_ms")) else 0.0 for r in rr]
    step = [r["step_ms"] for r in rr]
    return "comm_ms", {"compute": sum(s - c for s, c in zip(step, comm)) / len(rr), "comm": sum(comm) / len(rr)}


def series_key(r):
    dp = max(1, r["ranks"] // max(1, r["tp"] * r["pp"]))
    batch = r["global_batch"] if r["sweep"] == "strong" else (r["global_batch"] // dp if r["global_batch"] else 0)
    return (r["model"], r["tp"], r["pp"], r["micro_batch"], batch, r["device"])


def short_model(model):
    """'dim 256 4 layers 8 heads ...' -> 'dim 256 4 layers' (a preset name stays)."""
    m = re.match(r"(.*?dim \d+ \d+ layers)", model)
    return m.group(1) if m else model


def series_label(key, sweep, full=False):
    model, tp, pp, mb, batch, _ = key
    model = model if full else short_model(model)
    b = f"global batch {batch}" if sweep == "strong" else f"{batch} seq/dp-rank"
    par = "" if tp == pp == 1 else f", tp {tp} pp {pp}"
    return f"{model or 'model ?'}: {b}, micro {mb}{par}"


def analyse(runs):
    """Group by sweep, then series (same deck, layout and batch rule); pool
    the measured steps of repeated runs of one point. Efficiency against the
    series' smallest rank count N0:  E(N) = T(N) / ((N/N0) T(N0)), T the
    median tokens/s (for weak scaling this is the per-rank throughput ratio
    (T(N)/N) / (T(N0)/N0), equal to t(N0)/t(N) of the step times)."""
    out = {}
    for r in runs:
        s = out.setdefault(r["sweep"], {}).setdefault(series_key(r), {})
        s.setdefault(r["ranks"], []).append(r)
    res = {}
    for sweep, sers in out.items():
        res[sweep] = []
        shorts = [series_label(k, sweep) for k in sers]
        for key, pts in sorted(sers.items()):
            points = []
            for n in sorted(pts):
                rs = pts[n]
                rows = [row for r in rs for row in r["rows"]]
                src, bd = breakdown(rows)
                p = {"ranks": n, "nodes": rs[0]["nodes"], "gpus_per_node": rs[0]["gpus_per_node"],
                     "global_batch": rs[0]["global_batch"], "micro_batch": rs[0]["micro_batch"],
                     "tp": rs[0]["tp"], "pp": rs[0]["pp"], "runs": [r["dir"] for r in rs],
                     "restarts": sum(r["restarts"] for r in rs), "steps_used": len(rows)}
                for k in ("tokens_per_s", "mfu", "tflops", "step_ms", "comm_ms"):
                    p[k] = stat([row.get(k) for row in rows])
                p["breakdown_source"], p["breakdown_ms"] = src, bd
                cores = rs[0]["cores"]
                p["cores_per_node"] = cores or None
                p["threads"] = rs[0]["threads"] or None
                p["other_load"] = max(r["other_load"] for r in rs)
                p["oversubscribed"] = bool(cores and rs[0]["threads"] and
                                           n * rs[0]["threads"] > cores * rs[0]["nodes"])
                points.append(p)
            base = points[0]
            t0 = base["tokens_per_s"]["median"] if base["tokens_per_s"] else None
            for p in points:
                t = p["tokens_per_s"]
                if t and t0:
                    f = p["ranks"] / base["ranks"] * t0
                    p["efficiency"] = {"value": t["median"] / f, "min": t["min"] / f, "max": t["max"] / f}
                else:
                    p["efficiency"] = None
            res[sweep].append({"series": series_label(key, sweep, shorts.count(series_label(key, sweep)) > 1),
                               "model": key[0], "tp": key[1], "pp": key[2],
                               "micro_batch": key[3],
                               ("global_batch" if sweep == "strong" else "per_dp_rank_batch"): key[4],
                               "base_ranks": base["ranks"], "points": points})
    return res


def fmt_bd(p):
    bd = p["breakdown_ms"]
    tot = sum(bd.values())
    if not tot:
        return "-"
    parts = sorted(bd.items(), key=lambda kv: -kv[1])[:4]
    return ", ".join(f"{k} {100 * v / tot:.0f}%" for k, v in parts)


def table(res):
    lines = ["| sweep | series | ranks | nodes | global batch | tokens/s median [min-max] | efficiency | MFU % "
             "| step ms | comm ms | breakdown (mean share of a step) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    def g(x, scale=1.0):
        return f"{scale * x['median']:.1f}" if x else "-"
    for sweep in sorted(res):
        for s in res[sweep]:
            for p in s["points"]:
                t, e, m = p["tokens_per_s"], p["efficiency"], p["mfu"]
                eff = f"{100 * e['value']:.0f}%" if e else "-"
                mark = " (oversub.)" if p["oversubscribed"] else ""
                lines.append(
                    f"| {sweep} | {s['series']} | {p['ranks']}{mark} | {p['nodes']} | {p['global_batch']} | "
                    f"{t['median']:.0f} [{t['min']:.0f}-{t['max']:.0f}] | "
                    f"{eff} | {g(m, 100)} | "
                    f"{g(p['step_ms'])} | {g(p['comm_ms'])} | {fmt_bd(p)} |")
    return "\n".join(lines)


def plot_sweep(sweep, series, path, note):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator, ScalarFormatter
    import numpy as np

    fig, axs = plt.subplots(2, 2, figsize=(11, 8.2), dpi=90, layout="constrained")
    a_tps, a_eff, a_mfu, a_bd = axs[0, 0], axs[0, 1], axs[1, 0], axs[1, 1]
    ranks_all = sorted({p["ranks"] for s in series for p in s["points"]})
    gpus = any(p["gpus_per_node"] for s in series for p in s["points"])
    threads = sorted({p["threads"] for s in series for p in s["points"] if p["threads"]})
    xlabel = ("ranks = GPUs" if gpus else "MPI ranks" +
              (f" (CPU, {threads[0]} thread{'s' if threads[0] > 1 else ''} each)" if len(threads) == 1 else ""))
    markers = "osD^v<>"
    over = sorted({p["ranks"] for s in series for p in s["points"] if p["oversubscribed"]})
    for i, s in enumerate(series):
        pts = [p for p in s["points"] if p["tokens_per_s"]]
        x = np.array([p["ranks"] for p in pts], float)
        med = np.array([p["tokens_per_s"]["median"] for p in pts])
        lo = med - np.array([p["tokens_per_s"]["min"] for p in pts])
        hi = np.array([p["tokens_per_s"]["max"] for p in pts]) - med
        c = f"C{i}"
        lab = f"{i + 1}: {s['series']}" if len(series) > 1 else "measured (median, min-max bars)"
        a_tps.errorbar(x, med, yerr=[lo, hi], fmt=markers[i % 7] + "-", color=c, capsize=3, label=lab)
        a_tps.plot(x, med[0] * x / x[0], "--", color=c, alpha=0.6,
                   label="ideal: linear from the smallest count" if i == 0 else None)
        ep = [p for p in pts if p["efficiency"]]
        e = np.array([100 * p["efficiency"]["value"] for p in ep])
        elo = e - np.array([100 * p["efficiency"]["min"] for p in ep])
        ehi = np.array([100 * p["efficiency"]["max"] for p in ep]) - e
        a_eff.errorbar([p["ranks"] for p in ep], e, yerr=[elo, ehi], fmt=markers[i % 7] + "-", color=c, capsize=3)
        for xx, ee in zip([p["ranks"] for p in ep], e):
            a_eff.annotate(f"{ee:.0f}%", (xx, ee), textcoords="offset points", xytext=(6, 6), fontsize=8, color=c)
        mp = [p for p in pts if p["mfu"]]
        mm = np.array([100 * p["mfu"]["median"] for p in mp])
        a_mfu.errorbar([p["ranks"] for p in mp], mm,
                       yerr=[mm - [100 * p["mfu"]["min"] for p in mp], [100 * p["mfu"]["max"] for p in mp] - mm],
                       fmt=markers[i % 7] + "-", color=c, capsize=3)
    a_eff.axhline(100, ls="--", color="grey", lw=1)
    a_tps.set_yscale("log")
    kfmt = FuncFormatter(lambda v, _: f"{v / 1e6:g}M" if v >= 1e6 else f"{v / 1e3:g}k" if v >= 1e3 else f"{v:g}")
    a_tps.yaxis.set_major_formatter(kfmt)
    a_tps.yaxis.set_minor_formatter(kfmt)
    a_tps.tick_params(axis="y", which="minor", labelsize=7)
    a_tps.set_ylabel("tokens/s (whole job)")
    a_tps.set_title("throughput")
    a_tps.legend(fontsize=8, loc="upper left")
    a_eff.set_ylabel("parallel efficiency %")
    a_eff.set_title("efficiency  T(N) / ((N/N0) T(N0))" if sweep == "strong"
                    else "efficiency  (T(N)/N) / (T(N0)/N0)")
    ymax = max([100] + [100 * p["efficiency"]["max"] for s in series for p in s["points"] if p["efficiency"]])
    a_eff.set_ylim(0, ymax * 1.15)
    a_mfu.set_ylabel("MFU % (per device, median)")
    a_mfu.set_title("model FLOPs utilisation")
    a_mfu.set_ylim(bottom=0)
    lo_x, hi_x = ranks_all[0] / 1.4, ranks_all[-1] * 1.4
    for ax in (a_tps, a_eff, a_mfu):
        ax.set_xscale("log", base=2)
        ax.set_xlim(lo_x, hi_x)
        ax.xaxis.set_major_locator(FixedLocator(ranks_all))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel(xlabel)
        ax.grid(True, alpha=0.3)
        if over:
            ax.axvspan(over[0] / 1.2, hi_x, color="0.85", zorder=0)
    if over:
        a_eff.text(over[0] / 1.15, ymax * 1.08, "oversubscribed:\nranks > cores", fontsize=8, va="top", color="0.3")

    # stacked breakdown: categorical x (one group per rank count, one bar per series)
    names = {}
    for s in series:
        for p in s["points"]:
            for k, v in p["breakdown_ms"].items():
                names[k] = names.get(k, 0.0) + v
    fixed_last = [k for k in ("other",) if k in names]
    order = [k for k, _ in sorted(names.items(), key=lambda kv: -kv[1]) if k not in fixed_last]
    if len(order) > 9:                 # open-ended region names: keep the 8 largest
        keep, rest = order[:8], set(order[8:])
        order = keep + ["rest"]
    else:
        rest = set()
    order += fixed_last
    # the same colour for a region in every figure: the usual phases fixed,
    # other names from the rest of tab20 in order of size
    tab = plt.get_cmap("tab20").colors
    fixed = {"forward_backward": 0, "compute": 0, "comm": 6, "optimizer": 4, "data": 8, "grad_norm": 2,
             "checkpoint": 10, "transfer": 18}
    free = [j for j in (1, 3, 5, 7, 9, 11, 12, 13, 16, 17, 19) if j not in fixed.values()]
    colour = {"other": "0.78", "rest": "0.45"}
    for k in order:
        if k in fixed:
            colour[k] = tab[fixed[k]]
        elif k not in colour:
            colour[k] = tab[free.pop(0)] if free else "0.6"
    w = 0.8 / len(series)
    srcs = set()
    for i, s in enumerate(series):
        for j, n in enumerate(ranks_all):
            p = next((p for p in s["points"] if p["ranks"] == n), None)
            if not p or not p["breakdown_ms"]:
                continue
            srcs.add(p["breakdown_source"])
            bd = dict(p["breakdown_ms"])
            if rest:
                bd["rest"] = sum(bd.pop(k) for k in list(bd) if k in rest)
            xpos = j - 0.4 + w * (i + 0.5)
            bottom = 0.0
            for k in order:
                v = bd.get(k, 0.0)
                if v <= 0:
                    continue
                a_bd.bar(xpos, v, w * 0.9, bottom=bottom, color=colour[k],
                         hatch="//" if p["oversubscribed"] else None, edgecolor="white", lw=0.5)
                bottom += v
            if p["step_ms"]:
                a_bd.plot([xpos], [p["step_ms"]["median"]], "k_", ms=14 * w)
            if len(series) > 1:
                a_bd.text(xpos, bottom, str(i + 1), ha="center", va="bottom", fontsize=7)
    from matplotlib.patches import Patch
    handles = [Patch(color=colour[k], label=k) for k in order]
    handles.append(plt.Line2D([], [], color="k", marker="_", ls="", ms=10, label="median step_ms"))
    a_bd.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    a_bd.set_xticks(range(len(ranks_all)))
    a_bd.set_xticklabels([str(n) for n in ranks_all])
    a_bd.set_xlabel(xlabel)
    a_bd.set_ylabel("ms per step (mean of the measured steps)")
    srcname = ("from metrics `regions` (exclusive ms)" if srcs == {"regions"} else
               "compute = step_ms - comm_ms (no `regions` in the log)" if srcs == {"comm_ms"} else
               "mixed: `regions` where logged, else compute/comm")
    a_bd.set_title("time per step, " + srcname, fontsize=9)
    a_bd.grid(True, axis="y", alpha=0.3)
    a_bd.set_ylim(0, max([1e-9] + [sum(p["breakdown_ms"].values()) for s in series for p in s["points"]]
                         + [p["step_ms"]["median"] for s in series for p in s["points"] if p["step_ms"]]) * 1.15)

    first = series[0]
    if sweep == "strong":
        what = (f"strong scaling: fixed global batch ({first['global_batch']} sequences per step, "
                f"micro-batch {first['micro_batch']})")
    else:
        what = (f"weak scaling: fixed work per data-parallel rank ({first['per_dp_rank_batch']} sequences "
                f"per rank per step, micro-batch {first['micro_batch']})")
    if len(series) > 1:
        what = f"{sweep} scaling, {len(series)} series (numbered in the breakdown as in the legend)"
    sub = []
    if over:
        cores = {p["cores_per_node"] for s in series for p in s["points"] if p["cores_per_node"]}
        c = min(cores)
        sub.append(f"more ranks than the {c} core{'s' if c > 1 else ''} run oversubscribed (grey, hatched): "
                   f"past {c} rank{'s' if c > 1 else ''} the efficiency measures the machine, not lamina")
    busy = max(p["other_load"] for s in series for p in s["points"])
    if busy > 0.25:
        sub.append(f"shared machine: other processes kept up to {busy:.1f} cores busy during a run")
    if note:
        sub.append(note)
    fig.suptitle(f"lamina {what}" + ("\n" + "\n".join(sub) if sub else ""), fontsize=11)
    fig.savefig(path)
    plt.close(fig)


def cmd_plot(a):
    if a.warmup < 0:
        raise BadInput("--warmup must be >= 0")
    found = find_runs(a.dirs)
    runs = [r for r in (run_info(d, a.warmup) for d in found) if r]
    if not runs:
        raise BadInput(f"no run folders (metrics.jsonl + job.env with steps past the warm-up) under "
                       f"{' '.join(a.dirs)}")
    res = analyse(runs)
    os.makedirs(a.out, exist_ok=True)
    for sweep in ("strong", "weak"):
        if sweep in res:
            plot_sweep(sweep, res[sweep], os.path.join(a.out, f"{sweep}.png"), a.note)
            print(f"wrote {os.path.join(a.out, sweep + '.png')}")
        else:
            print(f"no {sweep} runs: {sweep}.png not written")
    doc = {"warmup_steps": a.warmup,
           "definitions": {
               "statistics": "per point: median over the steps after the warm-up (of every restart segment), "
                             "min and max as the spread; repeated runs of a point are pooled",
               "efficiency_strong": "T(N) / ((N/N0) * T(N0)), T = median tokens/s of the job, N0 = the series' "
                                    "smallest rank count",
               "efficiency_weak": "(T(N)/N) / (T(N0)/N0), the same expression; = t(N0)/t(N) when the tokens "
                                  "per step grow as N",
               "efficiency_range": "[min T(N), max T(N)] / ((N/N0) * median T(N0))",
               "breakdown_ms": "mean over the measured steps of each `regions` entry plus other = step_ms - "
                               "sum(regions); without regions: compute = step_ms - comm_ms, comm = comm_ms"},
           "sweeps": res}
    with open(os.path.join(a.out, "scaling.json"), "w") as f:
        json.dump(doc, f, indent=1)
    md = table(res)
    with open(os.path.join(a.out, "scaling.md"), "w") as f:
        f.write(md + "\n")
    print(f"wrote {os.path.join(a.out, 'scaling.json')}, {os.path.join(a.out, 'scaling.md')}\n")
    print(md)


# ---------------------------------------------------------------------------

def main(argv):
    ap = argparse.ArgumentParser(prog="scaling.py", description="lamina scaling studies (perf/SCALING.md)")
    sub = ap.add_subparsers(dest="cmd", required=True)

    def batch_opts(p):
        p.add_argument("--sweep", required=True, choices=["strong", "weak", "both"])
        p.add_argument("--deck", help="lamina input deck (default: the built-in small deck)")
        p.add_argument("--steps", type=int, help="optimizer steps per run (default: the deck's)")
        p.add_argument("--global-batch", type=int, default=32,
                       help="strong: sequences per step, fixed (default 32)")
        p.add_argument("--per-rank-batch", type=int, default=8,
                       help="weak: sequences per data-parallel rank per step, fixed (default 8)")
        p.add_argument("--micro-batch", type=int, help="train.micro_batch (default: the deck's)")
        p.add_argument("overrides", nargs="*", metavar="section.key=value", help="passed to lamina train")

    p = sub.add_parser("run-local", help="run the sweep here with mpirun")
    batch_opts(p)
    p.add_argument("--ranks", default="1,2,4", help="rank counts (default 1,2,4)")
    p.add_argument("--out", required=True, help="folder for the run folders <sweep>/n<N>/")
    p.add_argument("--data", help="token file (default: the fortunes corpus prepped into OUT/data.h5)")
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS per rank (default 1)")
    p.add_argument("--warmup", type=int, default=1, help="steps left out of the printed median (default 1)")
    p.add_argument("--timeout", type=int, default=900, help="seconds per run (default 900)")
    p.add_argument("--keep-ckpt", action="store_true", help="keep each run's final checkpoint")
    p.add_argument("--wait-idle", type=float, default=0, metavar="S",
                   help="before each run wait up to S seconds for other processes to use <= --busy cores")
    p.add_argument("--busy", type=float, default=0.3, metavar="CORES",
                   help="other processes' load that counts as busy (default 0.3 cores)")
    p.add_argument("--retries", type=int, default=0,
                   help="run a point again (up to this many times) when others kept > --busy cores busy")
    p.add_argument("--lamina", default=os.path.join(REPO, "build", "lamina"))

    p = sub.add_parser("submit", help="submit the sweep through jobscripts/strong.sh, weak.sh")
    batch_opts(p)
    p.add_argument("--gpus", required=True, help="GPU counts, e.g. 8,16,32,64")
    p.add_argument("--out", help="run root for the jobs (LAMINA_RUNS; default: the job scripts' site.sh)")
    p.add_argument("--jobscripts", default=os.path.join(REPO, "jobscripts"))
    p.add_argument("--pbs", action="store_true", help="PBS: jobscripts/strong-pbs.sh, weak-pbs.sh")
    p.add_argument("--dry-run", action="store_true", help="print what would be called")

    p = sub.add_parser("plot", help="collect run folders, write strong.png, weak.png, scaling.json/.md")
    p.add_argument("dirs", nargs="+", metavar="DIR")
    p.add_argument("--out", required=True, help="folder for the plots and tables")
    p.add_argument("--warmup", type=int, default=1, help="logged steps skipped at the start of a run (default 1)")
    p.add_argument("--note", default="", help="extra subtitle line for the figures")

    a = ap.parse_args(argv)
    for k in ("steps", "global_batch", "per_rank_batch", "micro_batch", "threads"):
        v = getattr(a, k, None)
        if v is not None and v < 1:
            die(f"--{k.replace('_', '-')} {v}: must be positive")
    for k in ("retries", "wait_idle", "busy", "warmup"):
        v = getattr(a, k, None)
        if v is not None and v < 0:
            die(f"--{k.replace('_', '-')} {v}: must not be negative")
    try:
        {"run-local": cmd_run_local, "submit": cmd_submit, "plot": cmd_plot}[a.cmd](a)
    except BadInput as e:
        die(str(e), 2)


if __name__ == "__main__":
    main(sys.argv[1:])
