#!/usr/bin/python3
"""evalsets.py -- evaluation and training sets from text that ships with Debian
(issue 19 item 2; the sets are described in inputs/EVALSETS.md).

    python3 inputs/evalsets.py [--out DIR] [--seed S] [--heldout-frac F]
        [--max-heldout-per-category H] [--test-per-subject N]
        [--max-docs-per-category M] [--jobs J]

Sources (Debian packages): fortunes, fortunes-zh, manpages, manpages-zh,
debian-reference-en, debian-reference-zh-cn. Categories:
  en-quotes     English fortune files (all but ascii-art and the Chinese ones)
  en-manual     /usr/share/man/man1..8, rendered with groff to plain text
  en-reference  debian-reference.en.txt.gz
  zh-poetry     tang300, song100 (fortunes-zh)
  zh-classics   chinese (fortunes-zh) less its Debian tips (zh-reference has them)
  zh-manual     /usr/share/man/zh_CN/man1..8
  zh-reference  debian-reference.zh-cn.txt.gz
Manual and reference texts are cut into documents: a manual page into its
sections, a reference text into its numbered sections, each packed from whole
paragraphs into documents of at most ~2 KB.

Outputs under DIR (default out/evalsets):
  train/{en,zh}/<category>.jsonl  {"text", "category"}: the training documents
  heldout/{en,zh}.jsonl           {"text", "category"}: the held-out documents
  mc/{en,zh}.jsonl                SPEC section 10 items {"subject", "question",
                                  "choices", "answer", "split"}, built only from
                                  held-out documents
  MANIFEST.json                   counts and the sha256 of every output

Held-out selection: per category, whole source units (a fortune, a manual
page, a reference section) are drawn with a seeded RNG until
clamp(frac * documents, 40, H) documents (and at most a quarter) are held out.
A training document is dropped when it contains a line (>= 24 bytes) of any
held-out document of its language, so a multiple-choice answer is never in
the training text.

Multiple choice ("which line continues this passage?"): the question is 1-3
consecutive lines of a held-out document, the answer its next line, the three
distractors lines of OTHER held-out documents of the same subject, of the
nearest lengths (sampled among the 12 nearest); choices are shuffled. Per
subject, 5 dev items come from 5-10 dev documents and the test items
(--test-per-subject) from the other documents, so the worked examples in a
prompt never show a test item's text.

Determinism: sorted inputs, string-seeded random.Random per category (sha512
of the seed string: independent of PYTHONHASHSEED), no set/dict-order
dependence, groff run with LC_ALL=C.UTF-8, no hyphenation and whitespace runs
collapsed; no time stamps in the outputs. Stdlib only.
"""
import argparse
import gzip
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

FORTUNES = "/usr/share/games/fortunes"
MANDIR = "/usr/share/man"
DEBREF = "/usr/share/debian-reference/debian-reference.%s.txt.gz"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
WS = re.compile(r"[ \t\u3000]+")
ZH_FORTUNES = ("chinese", "song100", "tang300")
EN_FORTUNES_SKIP = ("ascii-art",)  # pictures, not text
# Boilerplate manual sections (same text in thousands of pages).
MAN_SKIP = re.compile(r"^(SEE ALSO|AUTHORS?|COPYRIGHT|REPORTING BUGS|COLOPHON|BUGS|"
                      r"HISTORY|AVAILABILITY|TRANSLATION|\u53e6\u89c1|\u4f5c\u8005|"
                      r"\u7248\u6743|\u53c2\u89c1|\u8bd1\u8005|\u4e2d\u6587\u7248|"
                      r"\u8ddf\u6211\u4eec\u8054\u7cfb|\[|\u300a|.*\u7ffb\u8bd1|.*\u4e2d\u6587\u7248|"
                      r".*\u624b\u518c\u9875\u8ba1\u5212)")  # [..], 《..》, 翻译, 中文版, 手册页计划
# Google Cloud CLI pages: 16k near-identical generated pages, not Debian text.
MAN_SKIP_PAGES = ("gcloud",)
DOC_MIN, DOC_MAX = 200, 2000     # bytes of a packed document
LINE_MAX = 200                   # characters of a question line or a choice
ZH_Q = "\u4e0b\u9762\u8fd9\u6bb5\u6587\u5b57\u63a5\u4e0b\u6765\u662f\u54ea\u4e00\u53e5\uff1f\n"  # 下面这段文字接下来是哪一句？
OVERLAP_MIN = 24                 # bytes of a held-out line that marks a train doc
MIN_HELDOUT = 40
BOILER_GROUPS = 4                # a line in this many source units is boilerplate
DEV_ITEMS, DEV_DOCS = 5, 10
ENV = {"LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin", "MANWIDTH": "80"}

CATEGORIES = [("en", "en-quotes"), ("en", "en-manual"), ("en", "en-reference"),
              ("zh", "zh-poetry"), ("zh", "zh-classics"), ("zh", "zh-manual"),
              ("zh", "zh-reference")]


def nbytes(s):
    return len(s.encode("utf-8"))


def decode(b):
    for enc in ("utf-8", "gb18030", "latin-1"):
        try:
            return b.decode(enc)
        except UnicodeDecodeError:
            pass
    raise AssertionError("unreachable: latin-1 decodes anything")


def clean_block(text):
    """Strip ANSI colours, expand tabs, drop trailing spaces and blank edges."""
    lines = [ANSI.sub("", l).expandtabs(8).rstrip() for l in text.split("\n")]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def norm_line(l):
    """Whitespace runs (Unicode's, NBSP and ideographic space included) to one space."""
    return " ".join(l.split())


# ---------------------------------------------------------------- sources ---
# Each source gives a list of (group, text): a group is the unit held out
# together (one fortune, one manual page, one reference section).

def fortune_entries(path):
    with open(path, "rb") as f:
        text = decode(f.read())
    out, cur = [], []
    for line in text.split("\n"):
        if line.strip() == "%":
            out.append("\n".join(cur)); cur = []
        else:
            cur.append(line)
    out.append("\n".join(cur))
    return [t for t in (clean_block(e) for e in out) if t]


def fortune_docs(names, drop=None):
    docs = []
    for name in names:
        for i, t in enumerate(fortune_entries(os.path.join(FORTUNES, name))):
            if drop and drop(t):
                continue
            docs.append(("%s:%d" % (name, i), t))
    return docs


def en_fortune_files():
    out = []
    for name in sorted(os.listdir(FORTUNES)):
        p = os.path.join(FORTUNES, name)
        if ("." in name or name in ZH_FORTUNES or name in EN_FORTUNES_SKIP
                or not os.path.isfile(p)):
            continue
        out.append(name)
    return out


def pack(paras, head=None):
    """Whole paragraphs into documents of at most DOC_MAX bytes (a longer
    paragraph is cut between lines); a document under DOC_MIN bytes joins the
    one before when the result stays under 1.25 * DOC_MAX."""
    pieces = []
    for p in paras:
        if nbytes(p) <= DOC_MAX:
            pieces.append(p); continue
        cur = []
        for l in p.split("\n"):
            if cur and nbytes("\n".join(cur + [l])) > DOC_MAX:
                pieces.append("\n".join(cur)); cur = []
            cur.append(l)
        if cur:
            pieces.append("\n".join(cur))
    docs, cur = [], []
    for p in pieces:
        if cur and nbytes("\n\n".join(cur + [p])) > DOC_MAX:
            docs.append("\n\n".join(cur)); cur = []
        cur.append(p)
    if cur:
        docs.append("\n\n".join(cur))
    if head and docs:
        docs[0] = head + "\n" + docs[0]
    out = []
    for d in docs:
        if out and nbytes(d) < DOC_MIN and nbytes(out[-1]) + nbytes(d) + 2 <= DOC_MAX * 5 // 4:
            out[-1] += "\n\n" + d
        else:
            out.append(d)
    return out


def paragraphs(lines):
    """Blank-line separated blocks, dedented by their common indentation;
    table blocks (lines starting with | or +-) dropped."""
    out, cur = [], []
    for l in lines + [""]:
        if l.strip():
            cur.append(l); continue
        if cur:
            if not any(x.lstrip().startswith(("|", "+-")) for x in cur):
                ind = min(len(x) - len(x.lstrip()) for x in cur)
                out.append("\n".join(x[ind:] for x in cur))
            cur = []
    return out


def zh_enough(text):
    """Chinese documents must be Chinese: >= 15% CJK of non-space characters."""
    n = sum(1 for c in text if not c.isspace())
    return n > 0 and len(CJK.findall(text)) >= 0.15 * n


def reference_docs(lang):
    with gzip.open(DEBREF % lang, "rb") as f:
        lines = [l.expandtabs(8).rstrip() for l in decode(f.read()).split("\n")]
    # Skip the title page and the table of contents: the body starts at the
    # second column-0 occurrence of the first entry of the contents.
    i = next(k for k, l in enumerate(lines) if re.fullmatch(r"-{20,}", l))
    col0 = [k for k in range(i + 1, len(lines)) if lines[k] and not lines[k][0].isspace()]
    first = lines[col0[1]]
    start = next(k for k in col0[2:] if lines[k] == first)
    heading = re.compile(r"^(\d+(\.\d+)*\.|[A-Z]\.(\d+\.)*|Chapter |Appendix |Preface|"
                         r"\u7b2c|\u9644\u5f55|\u524d\u8a00)")
    docs, sect, body = [], None, []

    def flush():
        if sect is not None:
            ps = [p for p in paragraphs(body)
                  if not all(heading.match(l.strip()) for l in p.split("\n"))]
            for d in pack(ps, head=sect):
                if lang == "en" or zh_enough(d):
                    docs.append((sect, d))
    for l in lines[start:]:
        if l and not l[0].isspace() and heading.match(l) and not l.startswith(("|", "+")):
            flush(); sect, body = l.strip(), []
        else:
            body.append(l)
    flush()
    return docs


def man_pages(root):
    pages = []
    for sec in range(1, 9):
        d = os.path.join(root, "man%d" % sec)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            p = os.path.join(d, name)
            if os.path.islink(p) or not os.path.isfile(p) or name.startswith(MAN_SKIP_PAGES):
                continue
            pages.append(p)
    return pages


def render_man(path):
    """A manual page as plain UTF-8 text: groff -Tutf8 with 80 columns, no
    hyphenation, no colours or overstrikes; stderr (warnings) discarded."""
    with open(path, "rb") as f:
        raw = f.read()
    if path.endswith(".gz"):
        raw = gzip.decompress(raw)
    src = decode(raw)
    if src.lstrip().startswith(".so ") and src.count("\n") <= 2:
        return ""                                     # a link to another page
    r = subprocess.run(["groff", "-Kutf-8", "-t", "-man", "-Tutf8", "-rLL=80n", "-rHY=0",
                        "-P-cbou"], input=src.encode("utf-8"), stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, env=ENV)
    return r.stdout.decode("utf-8", "replace") if r.returncode == 0 else ""


def man_page_docs(path, text, zh):
    lines = [l.rstrip() for l in text.split("\n")]
    nz = [k for k, l in enumerate(lines) if l.strip()]
    if len(nz) < 3:
        return []
    lines = lines[nz[0] + 1:nz[-1]]                    # header and footer lines
    paras, sect, body = [], None, []

    def flush():
        if sect is None or MAN_SKIP.match(sect):
            return
        # Justification pads lines with runs of spaces: collapse them (the
        # indentation is kept). The heading starts the section's first paragraph.
        ps = ["\n".join(l[:len(l) - len(l.lstrip())] + WS.sub(" ", l.strip())
                         for l in p.split("\n")) for p in paragraphs(body)]
        if ps:
            ps[0] = sect + "\n" + ps[0]
            paras.extend(ps)
    for l in lines:
        if l and not l[0].isspace():
            flush(); sect, body = WS.sub(" ", l.strip()), []
        else:
            body.append(l)
    flush()
    return [(path, d) for d in pack(paras) if not zh or zh_enough(d)]


def man_docs(root, zh, limit, rng, jobs):
    """Pages in a seeded order, rendered in batches until `limit` documents."""
    pages = man_pages(root)
    rng.shuffle(pages)
    docs, k, batch = [], 0, max(8, 4 * jobs)
    with ThreadPoolExecutor(max_workers=jobs) as ex:
        while k < len(pages) and len(docs) < limit:
            chunk = pages[k:k + batch]; k += batch
            for p, text in zip(chunk, ex.map(render_man, chunk)):
                docs.extend(man_page_docs(os.path.relpath(p, root), text, zh))
    return docs[:limit], min(k, len(pages)), len(pages)


# ----------------------------------------------------------- held-out split ---

def dedup(docs):
    seen, out = set(), []
    for g, t in docs:
        if t not in seen:
            seen.add(t); out.append((g, t))
    return out


def strip_boilerplate(docs):
    """Manual and reference categories: lines (>= 16 bytes) found in
    BOILER_GROUPS or more source units of the category are boilerplate (a manual's "display this help and exit", a
    translator's credit): they are removed from every document of the
    category; a document left under 60 bytes is dropped. Returns (docs, lines
    removed)."""
    seen = {}
    for g, t in docs:
        for l in doc_lines(t):
            if nbytes(l) >= 16:
                gs = seen.setdefault(l, [])
                if not gs or gs[-1] != g:
                    if g not in gs:
                        gs.append(g)
    boiler = {l for l, gs in seen.items() if len(gs) >= BOILER_GROUPS}
    out = []
    for g, t in docs:
        if any(norm_line(l) in boiler for l in t.split("\n")):
            t = "\n".join(l for l in t.split("\n") if norm_line(l) not in boiler)
            t = clean_block(re.sub(r"\n{3,}", "\n\n", t))
        if nbytes(t) >= 60:
            out.append((g, t))
    return out, len(boiler)


def cap(docs, limit, rng):
    if len(docs) <= limit:
        return docs
    keep = sorted(rng.sample(range(len(docs)), limit))
    return [docs[i] for i in keep]


def split_heldout(docs, frac, max_heldout, rng):
    """Indices of held-out documents: whole groups in seeded order."""
    want = min(max_heldout, max(MIN_HELDOUT, round(frac * len(docs))), len(docs) // 4)
    groups, order = {}, []
    for i, (g, _) in enumerate(docs):
        if g not in groups:
            groups[g] = []; order.append(g)
        groups[g].append(i)
    rng.shuffle(order)
    held = []
    for g in order:
        if len(held) >= want:
            break
        if len(held) + len(groups[g]) > max(want, 1) * 5 // 4 and held:
            continue                                  # a big group would overshoot
        held.extend(groups[g])
    return sorted(held)


# ---------------------------------------------------------- multiple choice ---

def line_ok(l, lang):
    """A line usable as an answer or distractor: long enough, not too long,
    not an attribution ("-- Author", "作者：")."""
    if len(l) > LINE_MAX or l.startswith(("--", "\u2014\u2014", "\u4f5c\u8005")):
        return False
    if lang == "zh":
        return len(CJK.findall(l)) >= 3
    return len(l) >= 16 and len(re.findall(r"[A-Za-z]{2,}", l)) >= 3


def doc_lines(text):
    return [x for x in (norm_line(l) for l in text.split("\n")) if x]


CLAUSE = re.compile(r"(?<=[\uff0c\u3002\uff1b\uff01\uff1f\uff1a])(?![\u201d\u300b\uff09])")


def doc_clauses(text):
    """Classical Chinese: the unit is the clause (cut after ，。；！？：, a
    closing quote kept with its clause), most entries being one line."""
    return [c for l in doc_lines(text) for c in (x.strip() for x in CLAUSE.split(l)) if c]


def make_items(lang, subject, docs, n_test, rng, clauses=False):
    """docs: the held-out texts of one subject. Returns (dev, test) items."""
    lines = [(doc_clauses if clauses else doc_lines)(t) for t in docs]
    order = list(range(len(docs)))
    rng.shuffle(order)
    # Candidate targets per document: line i >= 1 with a usable answer and
    # usable passage lines.
    cands = {}
    for d in order:
        ls = lines[d]
        cs = [i for i in range(1, len(ls)) if line_ok(ls[i], lang) and len(ls[i - 1]) <= LINE_MAX]
        if cs:
            cands[d] = cs
    usable = [d for d in order if d in cands]
    nd = max(DEV_ITEMS, min(DEV_DOCS, len(usable) // 4))
    dev_docs, test_docs = usable[:nd], usable[nd:]

    def pool_of(ds):
        seen, pool = set(), []
        for d in sorted(ds):
            for l in lines[d]:
                if line_ok(l, lang) and l not in seen:
                    seen.add(l); pool.append((len(l), l, d))
        pool.sort()
        return pool

    def build(ds, want, pool):
        items, used = [], {d: [] for d in ds}
        for d in ds:
            rng.shuffle(cands[d])
        rnd = 0
        while len(items) < want:
            progressed = False
            for d in ds:
                if len(items) >= want:
                    break
                if rnd >= len(cands[d]):
                    continue
                progressed = True
                i = cands[d][rnd]
                ls = lines[d]
                p = rng.choice([1, 2, 3])
                lo = i - 1
                while lo > 0 and i - lo < p and len(ls[lo - 1]) <= LINE_MAX:
                    lo -= 1
                passage, answer = ls[lo:i], ls[i]
                bad = set(passage) | {answer}
                near = sorted(((abs(n - len(answer)), l) for n, l, dd in pool
                               if dd != d and l not in bad))[:12]
                if len(near) < 3:
                    continue
                wrong = [l for _, l in rng.sample(near, 3)]
                choices = wrong + [answer]
                rng.shuffle(choices)
                if lang == "zh":
                    q = ZH_Q + "\n".join(passage)
                else:
                    q = "Which line comes next after this passage?\n" + "\n".join(passage)
                items.append({"subject": subject, "question": q, "choices": choices,
                              "answer": "ABCD"[choices.index(answer)]})
            if not progressed:
                break
            rnd += 1
        return items

    dev = build(dev_docs, DEV_ITEMS, pool_of(dev_docs))
    test = build(test_docs, n_test, pool_of(test_docs))
    for it in dev:
        it["split"] = "dev"
    for it in test:
        it["split"] = "test"
    return dev, test


# ------------------------------------------------------------------- main ---

def jsonl(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False, sort_keys=False) + "\n")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="out/evalsets")
    ap.add_argument("--seed", type=int, default=19)
    ap.add_argument("--heldout-frac", type=float, default=0.05)
    ap.add_argument("--max-heldout-per-category", type=int, default=500)
    ap.add_argument("--test-per-subject", type=int, default=100)
    ap.add_argument("--max-docs-per-category", type=int, default=5000)
    ap.add_argument("--jobs", type=int, default=2, help="groff processes at a time")
    a = ap.parse_args()
    if not (0 < a.heldout_frac < 1) or a.test_per_subject < 1 or a.max_docs_per_category < 100:
        ap.error("need 0 < --heldout-frac < 1, --test-per-subject >= 1, --max-docs-per-category >= 100")
    t0 = time.time()
    M = a.max_docs_per_category
    R = lambda cat, what: random.Random("%d:%s:%s" % (a.seed, cat, what))

    sources, docs = {}, {}
    en_files = en_fortune_files()
    docs["en-quotes"] = fortune_docs(en_files)
    sources["en-quotes"] = {"files": len(en_files)}
    docs["zh-poetry"] = fortune_docs(["tang300", "song100"])
    sources["zh-poetry"] = {"files": 2}
    debian = re.compile(r"Debian|Osamu Aoki|\u53c2\u8003\u624b\u518c")
    docs["zh-classics"] = fortune_docs(["chinese"], drop=lambda t: bool(debian.search(t)))
    sources["zh-classics"] = {"files": 1}
    docs["en-reference"] = reference_docs("en")
    docs["zh-reference"] = reference_docs("zh-cn")
    sources["en-reference"] = sources["zh-reference"] = {"files": 1}
    for cat, root, zh in (("en-manual", MANDIR, False),
                          ("zh-manual", os.path.join(MANDIR, "zh_CN"), True)):
        d, rendered, total = man_docs(root, zh, M + M // 4,
                                      R(cat, "pages"), a.jobs)
        docs[cat] = d
        sources[cat] = {"pages": total, "pages_rendered": rendered}

    train, held, cats = {}, {}, {}
    for lang, cat in CATEGORIES:
        ds, nboiler = dedup(docs[cat]), 0
        if cat.endswith(("-manual", "-reference")):        # verse and quotes repeat on purpose
            ds, nboiler = strip_boilerplate(ds)
        ds = cap(dedup(ds), M, R(cat, "cap"))
        h = split_heldout(ds, a.heldout_frac, a.max_heldout_per_category, R(cat, "heldout"))
        hs = set(h)
        held[cat] = [ds[i][1] for i in h]
        train[cat] = [ds[i][1] for i in range(len(ds)) if i not in hs]
        cats[cat] = dict(sources[cat], lang=lang, docs=len(ds), boilerplate_lines=nboiler)
    # Drop training documents that contain a held-out line of their language.
    for lang in ("en", "zh"):
        mark = set()
        for l2, cat in CATEGORIES:
            if l2 == lang:
                for t in held[cat]:
                    mark.update(l for l in doc_lines(t) if nbytes(l) >= OVERLAP_MIN)
        for l2, cat in CATEGORIES:
            if l2 == lang:
                before = len(train[cat])
                train[cat] = [t for t in train[cat] if not any(l in mark for l in doc_lines(t))]
                cats[cat]["train_dropped_overlap"] = before - len(train[cat])

    out = a.out
    for sub in ("train/en", "train/zh", "heldout", "mc"):    # stale outputs of a former run
        d = os.path.join(out, sub)
        if os.path.isdir(d):
            for n in sorted(os.listdir(d)):
                if n.endswith(".jsonl"):
                    os.remove(os.path.join(d, n))
    files = []
    mc = {}
    for lang in ("en", "zh"):
        hrows, items = [], []
        for l2, cat in CATEGORIES:
            if l2 != lang:
                continue
            p = os.path.join(out, "train", lang, cat + ".jsonl")
            jsonl(p, ({"text": t, "category": cat} for t in train[cat]))
            files.append(p)
            hrows += [{"text": t, "category": cat} for t in held[cat]]
            dev, test = make_items(lang, cat, held[cat], a.test_per_subject, R(cat, "mc"),
                                   clauses=cat == "zh-classics")
            if len(dev) < DEV_ITEMS or not test:
                sys.exit("evalsets: %s: only %d dev and %d test items from %d held-out documents"
                         % (cat, len(dev), len(test), len(held[cat])))
            items += dev + test
            c = cats[cat]
            c.update(train_docs=len(train[cat]), train_bytes=sum(nbytes(t) for t in train[cat]),
                     heldout_docs=len(held[cat]), heldout_bytes=sum(nbytes(t) for t in held[cat]))
            mc.setdefault(lang, {})[cat] = {"dev": len(dev), "test": len(test)}
        p = os.path.join(out, "heldout", lang + ".jsonl"); jsonl(p, hrows); files.append(p)
        p = os.path.join(out, "mc", lang + ".jsonl"); jsonl(p, items); files.append(p)

    man = {"generator": "inputs/evalsets.py",
           "args": {"seed": a.seed, "heldout_frac": a.heldout_frac,
                    "max_heldout_per_category": a.max_heldout_per_category,
                    "test_per_subject": a.test_per_subject, "max_docs_per_category": M},
           "categories": cats, "mc": mc, "files": {}}
    for p in files:
        with open(p, "rb") as f:
            n = f.read().count(b"\n")
        man["files"][os.path.relpath(p, out)] = {"lines": n, "bytes": os.path.getsize(p),
                                                 "sha256": sha256(p)}
    with open(os.path.join(out, "MANIFEST.json"), "w", encoding="utf-8") as f:
        json.dump(man, f, ensure_ascii=False, indent=1, sort_keys=True)
        f.write("\n")

    print("%-13s %4s %7s %7s %10s %8s %9s %4s %5s" % ("category", "lang", "docs", "train",
          "train_B", "heldout", "dropped", "dev", "test"))
    for lang, cat in CATEGORIES:
        c = cats[cat]
        print("%-13s %4s %7d %7d %10d %8d %9d %4d %5d" % (cat, lang, c["docs"], c["train_docs"],
              c["train_bytes"], c["heldout_docs"], c["train_dropped_overlap"],
              mc[lang][cat]["dev"], mc[lang][cat]["test"]))
    print("wrote %s (%d files) in %.1f s" % (out, len(files) + 1, time.time() - t0))


if __name__ == "__main__":
    main()
