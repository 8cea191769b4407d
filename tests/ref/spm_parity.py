#!/usr/bin/python3
"""Reference side of the SentencePiece tests (tests/t/64-spm-parity.t,
65-vocab-expand.t): python3-sentencepiece trains models and encodes and
decodes, and the merge and resize of `lamina vocab` are recomputed here
directly, with a protobuf reader of our own (python3-protobuf is not
installed, so sentencepiece_model_pb2 cannot be imported).

  spm_parity.py train OUT.model bpe|unigram CORPUS...    train a model
  spm_parity.py tiny OUT.model                           tests/data/spm_tiny.model
  spm_parity.py check MODEL INPUT IDS TEXT               lamina's ids/text vs python's
  spm_parity.py randids MODEL OUT N                      random id lines
  spm_parity.py checkdec MODEL IDS TEXT                  lamina's decode of them vs python's
  spm_parity.py expand BASE MERGED (--pieces F | --from M) [MAX]   the merge
  spm_parity.py resize A B FROM.h5 OUT.h5                the new rows
"""
import struct
import sys

import sentencepiece as spm


def train(out, kind, inputs, extra=None):
    prefix = out[:-6] if out.endswith(".model") else out
    kw = dict(input=",".join(inputs), model_prefix=prefix, model_type=kind, num_threads=1, minloglevel=2,
              character_coverage=0.9995, input_sentence_size=30000, shuffle_input_sentence=False)
    if kind == "bpe":  # LLaMA-2's settings, plus a user-defined and a control piece
        kw.update(vocab_size=3000, byte_fallback=True, split_digits=True, add_dummy_prefix=True,
                  remove_extra_whitespaces=False, normalization_rule_name="identity",
                  allow_whitespace_only_pieces=True, max_sentencepiece_length=16,
                  user_defined_symbols=["<sep>", "[[link]]"], control_symbols=["<ctl>"])
    else:  # the defaults: nmt_nfkc normalization (a charsmap), no byte fallback
        kw.update(vocab_size=3000, character_coverage=0.98)
    kw.update(extra or {})
    spm.SentencePieceTrainer.train(**kw)


def lines(path):
    """A file's lines: the bytes up to each '\\n', without it."""
    data = open(path, "rb").read()
    ls = data.split(b"\n")
    if ls and ls[-1] == b"":
        ls.pop()
    return ls


def check(model, inp, ids_path, text_path):
    sp = spm.SentencePieceProcessor(model_file=model)
    src, got_ids, got_text = lines(inp), lines(ids_path), lines(text_path)
    if len(got_ids) != len(src) or len(got_text) != len(src):
        print(f"line counts differ: input {len(src)}, ids {len(got_ids)}, text {len(got_text)}")
        return 1
    bad = nids = 0
    for i, (l, gi, gt) in enumerate(zip(src, got_ids, got_text)):
        want = sp.encode(l)
        have = [int(x) for x in gi.split()]
        text = sp.decode(want).encode("utf-8", "surrogateescape")
        nids += len(want)
        if have != want or gt != text:
            bad += 1
            if bad <= 3:
                print(f"line {i + 1}: {l[:60]!r}\n  python {want[:20]} {text[:60]!r}\n  lamina {have[:20]} {gt[:60]!r}")
    print(f"{model}: {len(src)} lines, {nids} ids compared, {bad} lines differ")
    return 1 if bad else 0


def randids(model, out, n):
    """n lines of random ids (bytes, controls, unk, user pieces, normal),
    leaving out the pieces that decode to a newline (a line per line)."""
    import random
    r = random.Random(64)
    sp = spm.SentencePieceProcessor(model_file=model)
    ok = [i for i in range(sp.get_piece_size()) if sp.id_to_piece(i) != "<0x0A>" and "\n" not in sp.id_to_piece(i)]
    with open(out, "w") as f:
        for i in range(int(n)):
            f.write(" ".join(str(r.choice(ok)) for _ in range(r.randrange(0, 30))) + "\n")
    return 0


def checkdec(model, ids_path, text_path):
    """lamina's decode of arbitrary id lines vs python's."""
    sp = spm.SentencePieceProcessor(model_file=model)
    src, got = lines(ids_path), lines(text_path)
    bad, nids = 0, 0
    if len(src) != len(got):
        print(f"line counts differ: {len(src)} vs {len(got)}")
        return 1
    for i, (l, g) in enumerate(zip(src, got)):
        ids = [int(x) for x in l.split()]
        nids += len(ids)
        want = sp.decode(ids).encode("utf-8", "surrogateescape")
        if want != g:
            bad += 1
            if bad <= 3:
                print(f"line {i + 1}: python {want[:60]!r} lamina {g[:60]!r}")
    print(f"{model}: decode of {len(src)} random id lines, {nids} ids, {bad} lines differ")
    return 1 if bad else 0


def pb_fields(b):
    """Top-level protobuf fields of b: (number, wire type, value)."""
    i, out = 0, []
    def varint():
        nonlocal i
        x = s = 0
        while True:
            c = b[i]; i += 1
            x |= (c & 0x7F) << s; s += 7
            if c < 0x80:
                return x
    while i < len(b):
        key = varint()
        num, wt = key >> 3, key & 7
        if wt == 0:
            v = varint()
        elif wt == 1:
            v = b[i:i + 8]; i += 8
        elif wt == 5:
            v = b[i:i + 4]; i += 4
        elif wt == 2:
            n = varint(); v = b[i:i + n]; i += n
        else:
            raise ValueError(f"wire type {wt}")
        out.append((num, wt, v))
    return out


def pieces_of(path):
    """[(piece, score, type)] of a model file, by our reader; and vocab_size."""
    ps, vs = [], None
    for num, wt, v in pb_fields(open(path, "rb").read()):
        if num == 1:
            p, sc, ty = None, 0.0, 1
            for n2, w2, v2 in pb_fields(v):
                if n2 == 1: p = v2.decode("utf-8")
                elif n2 == 2: sc = struct.unpack("<f", v2)[0]
                elif n2 == 3: ty = v2
            ps.append((p, sc, ty))
        elif num == 2:
            for n2, w2, v2 in pb_fields(v):
                if n2 == 4: vs = v2
    return ps, vs


def expand(base, merged, args):
    """Colossal-LLaMA-2's merge, computed here, against lamina's file."""
    bp, _ = pieces_of(base)
    if args[0] == "--pieces":
        cands = [l.decode("utf-8") for l in lines(args[1]) if l]
    else:
        cands = [p for p, s, t in pieces_of(args[1])[0] if t == 1]
    mx = int(args[2]) if len(args) > 2 else None
    uniq = []
    seen = set()
    for c in cands:
        if c not in seen:
            seen.add(c); uniq.append(c)
    uniq.sort(key=len)  # stable
    have = {p for p, s, t in bp}
    new = [c for c in uniq if c not in have]
    if mx is not None:
        new = new[:mx]
    want = bp + [(c, 0.0, 1) for c in new]
    got, vs = pieces_of(merged)
    sp = spm.SentencePieceProcessor(model_file=merged)
    ok = got == want and vs in (None, len(want)) and sp.get_piece_size() == len(want)
    ok = ok and all(sp.id_to_piece(i) == want[i][0] and sp.get_score(i) == want[i][1] for i in range(len(want)))
    # BASE's ids unchanged: any text encodes to the same ids unless new pieces apply
    print(f"merge: base {len(bp)} + {len(new)} new = {len(want)}; lamina {len(got)} (vocab_size {vs}); "
          f"{'identical' if ok else 'DIFFERENT'}")
    if not ok:
        for i, (a, b) in enumerate(zip(got, want)):
            if a != b:
                print(f"  first difference at id {i}: lamina {a!r} python {b!r}"); break
    return 0 if ok else 1


def resize(a, b, src, dst):
    import h5py
    import numpy as np
    spa = spm.SentencePieceProcessor(model_file=a)
    pb, _ = pieces_of(b)
    na, nb = spa.get_piece_size(), len(pb)
    fs, fd = h5py.File(src, "r"), h5py.File(dst, "r")
    bad = 0
    if fd.attrs["step"] != 0 or "optim" in fd or fd["config"].attrs["vocab_size"] != nb:
        print("step, /optim or /config vocab_size wrong"); bad += 1
    for name in fs["model"]:
        x, y = fs["model"][name][()], fd["model"][name][()]
        if name not in ("model.embed_tokens.weight", "lm_head.weight"):
            if not np.array_equal(x.view(np.uint32), y.view(np.uint32)):
                print(f"{name}: changed"); bad += 1
            continue
        want = np.empty((nb, x.shape[1]), np.float32)
        want[:na] = x
        for i in range(na, nb):
            ids = spa.encode(pb[i][0])
            acc = np.zeros(x.shape[1], np.float64)
            for j in ids:  # in order, as lamina adds them
                acc += x[j]
            want[i] = (acc / len(ids)).astype(np.float32)
        if y.shape != want.shape or not np.array_equal(y.view(np.uint32), want.view(np.uint32)):
            d = np.abs(y - want).max() if y.shape == want.shape else "shape"
            print(f"{name}: rows differ (max abs diff {d})"); bad += 1
        else:
            print(f"{name}: {na} old rows bit-identical, {nb - na} new rows equal the numpy means")
    return 1 if bad else 0


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "train":
        train(args[0], args[1], args[2:]); return 0
    if cmd == "tiny":  # the unit test's model: LLaMA-2 settings, 400 pieces
        src = ["/usr/share/games/fortunes/" + f for f in ("wisdom", "tao", "linux")]
        train(args[0], "bpe", src, dict(vocab_size=400, character_coverage=0.999, user_defined_symbols=["<sep>"],
                                        control_symbols=["<ctl>"]))
        return 0
    if cmd == "check":
        return check(*args)
    if cmd == "randids":
        return randids(*args)
    if cmd == "checkdec":
        return checkdec(*args)
    if cmd == "expand":
        return expand(args[0], args[1], args[2:])
    if cmd == "resize":
        return resize(*args)
    print(__doc__); return 2


if __name__ == "__main__":
    sys.exit(main())
