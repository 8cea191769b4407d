#!/usr/bin/python3
"""make_hf.py — tiny Hugging Face LlamaForCausalLM folders for the tests, and
checks of what lamina convert writes. No transformers/safetensors package:
the safetensors format is written and read by hand (8-byte little-endian
header length, JSON header, raw little-endian data).

  make_hf.py make DIR [--dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 176
                       --vocab 258 --dtype F32|BF16|F16 --tied --shards N --seed S]
      random weights drawn in float64 (torch), cast to the dtype (round to
      nearest even), config.json, model.safetensors or N shards + index.
  make_hf.py cmp-h5 DIR FILE.h5
      every tensor of /model equals the folder's, widened exactly to
      float32 (bit for bit); no /optim; root step 0; /config shape.
  make_hf.py cmp-st DIR_A DIR_B
      the same tensor names, dtypes, shapes and identical data bytes.
  make_hf.py check-out DIR DTYPE SHARD_BYTES
      config.json keys and values of SPEC §7, the index (total_size, every
      tensor mapped to the shard that holds it), shard count and names,
      every header 8-byte aligned.
  make_hf.py cmp-cast DIR FILE.h5
      the folder's tensors are torch's casts of the checkpoint's float32.
  make_hf.py mutate DIR CASE
      break the folder one way (the cases of tests/t/61-hf-bad.t).
  make_hf.py ref-loss DIR DATA.h5 SEQ_LEN BATCH
      float64 reference loss (tests/ref/llama_ref.py) of the folder's
      weights on the first global batch of the token file.
"""
import json
import os
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

ST = {"F32": ("<f4", 4), "F16": ("<f2", 2), "BF16": ("<u2", 2)}


def names_shapes(c):
    d, f, v = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    hd = d // c["num_attention_heads"]
    kv = c["num_key_value_heads"] * hd
    out = [("model.embed_tokens.weight", (v, d))]
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out += [(p + "input_layernorm.weight", (d,)), (p + "self_attn.q_proj.weight", (d, d)),
                (p + "self_attn.k_proj.weight", (kv, d)), (p + "self_attn.v_proj.weight", (kv, d)),
                (p + "self_attn.o_proj.weight", (d, d)), (p + "post_attention_layernorm.weight", (d,)),
                (p + "mlp.gate_proj.weight", (f, d)), (p + "mlp.up_proj.weight", (f, d)),
                (p + "mlp.down_proj.weight", (d, f))]
    out.append(("model.norm.weight", (d,)))
    if not c.get("tie_word_embeddings", False):
        out.append(("lm_head.weight", (v, d)))
    return out


def to_bytes(t64, dtype):
    """float64 torch tensor -> little-endian bytes of the dtype (torch's casts
    round to nearest even)."""
    import torch
    if dtype == "F32":
        return t64.to(torch.float32).numpy().astype("<f4").tobytes()
    if dtype == "F16":
        return t64.to(torch.float16).numpy().astype("<f2").tobytes()
    return t64.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes()


def write_st(path, tensors, meta=None):
    """tensors: [(name, dtype, shape, bytes)] in order."""
    hdr, off = {}, 0
    if meta is not None:
        hdr["__metadata__"] = meta
    for name, dt, shape, b in tensors:
        hdr[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for t in tensors:
            f.write(t[3])


def read_st(path):
    """{name: (dtype, shape, raw bytes)}, header length."""
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    hdr.pop("__metadata__", None)
    base = 8 + n
    return {k: (v["dtype"], tuple(v["shape"]), raw[base + v["data_offsets"][0]:base + v["data_offsets"][1]])
            for k, v in hdr.items()}, n


def widen(dt, shape, b):
    """Exact float32 of the raw data."""
    a = np.frombuffer(b, ST[dt][0])
    if dt == "BF16":
        a = (a.astype(np.uint32) << 16).view(np.float32)
    return a.astype(np.float32).reshape(shape)


def read_folder(d):
    if os.path.exists(os.path.join(d, "model.safetensors")):
        return read_st(os.path.join(d, "model.safetensors"))[0]
    idx = json.load(open(os.path.join(d, "model.safetensors.index.json")))
    out = {}
    for fn in sorted(set(idx["weight_map"].values())):
        out.update(read_st(os.path.join(d, fn))[0])
    return out


def make(args):
    import torch
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--ffn", type=int, default=176)
    ap.add_argument("--vocab", type=int, default=258)
    ap.add_argument("--dtype", default="F32", choices=list(ST))
    ap.add_argument("--tied", action="store_true")
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args(args)
    os.makedirs(a.dir, exist_ok=True)
    torch_dtype = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[a.dtype]
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
           "hidden_size": a.dim, "intermediate_size": a.ffn, "num_attention_heads": a.heads,
           "num_key_value_heads": a.kv_heads, "num_hidden_layers": a.layers, "vocab_size": a.vocab,
           "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "max_position_embeddings": 256,
           "tie_word_embeddings": a.tied, "torch_dtype": torch_dtype, "bos_token_id": 256,
           "eos_token_id": 257, "rope_scaling": None, "attention_bias": False, "mlp_bias": False}
    json.dump(cfg, open(os.path.join(a.dir, "config.json"), "w"), indent=2)
    g = torch.Generator().manual_seed(a.seed)
    tensors = []
    for name, shape in names_shapes(cfg):
        if len(shape) == 1:
            t = 1.0 + 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)
        else:
            t = 0.05 * torch.randn(shape, generator=g, dtype=torch.float64)
        tensors.append((name, a.dtype, shape, to_bytes(t, a.dtype)))
    meta = {"format": "pt"}
    if a.shards == 1:
        write_st(os.path.join(a.dir, "model.safetensors"), tensors, meta)
        return
    per = -(-len(tensors) // a.shards)
    wm, total = {}, 0
    for k in range(a.shards):
        fn = f"model-{k + 1:05d}-of-{a.shards:05d}.safetensors"
        part = tensors[k * per:(k + 1) * per]
        write_st(os.path.join(a.dir, fn), part, meta)
        for t in part:
            wm[t[0]] = fn
            total += len(t[3])
    json.dump({"metadata": {"total_size": total}, "weight_map": wm},
              open(os.path.join(a.dir, "model.safetensors.index.json"), "w"), indent=2)


def cmp_h5(d, path):
    import h5py
    src = read_folder(d)
    cfg = json.load(open(os.path.join(d, "config.json")))
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] in ("lamina-ckpt", b"lamina-ckpt"), "format"
        assert int(f.attrs["step"]) == 0, "step"
        assert "optim" not in f, "/optim present"
        c = f["config"].attrs
        for k, h in [("dim", "hidden_size"), ("n_layers", "num_hidden_layers"), ("n_heads", "num_attention_heads"),
                     ("n_kv_heads", "num_key_value_heads"), ("ffn_dim", "intermediate_size"),
                     ("vocab_size", "vocab_size")]:
            assert int(c[k]) == cfg[h], f"/config {k}"
        assert int(c["tie_embeddings"]) == int(cfg["tie_word_embeddings"]), "tie"
        got = set(f["model"].keys())
        assert got == set(src), f"tensor sets differ: {sorted(got ^ set(src))}"
        for name, (dt, shape, b) in src.items():
            a = np.asarray(f["model"][name][()])
            assert a.dtype == np.float32, name
            w = widen(dt, shape, b)
            assert a.shape == w.shape, f"{name} shape {a.shape} vs {w.shape}"
            assert np.array_equal(a.view(np.uint32), w.view(np.uint32)), f"{name} differs"
    print(f"{len(src)} tensors bit-identical")


def cmp_st(da, db):
    a, b = read_folder(da), read_folder(db)
    assert set(a) == set(b), f"names differ: {sorted(set(a) ^ set(b))}"
    for k in a:
        assert a[k][0] == b[k][0], f"{k} dtype {a[k][0]} vs {b[k][0]}"
        assert a[k][1] == b[k][1], f"{k} shape"
        assert a[k][2] == b[k][2], f"{k} data differs"
    print(f"{len(a)} tensors byte-identical")


def check_out(d, dtype, shard_bytes):
    """shard_bytes: the --shard-size given; the expected shard count follows
    transformers' rule (a tensor that would take a non-empty shard over the
    cap starts the next one)."""
    c = json.load(open(os.path.join(d, "config.json")))
    cap, cur, nshards = int(shard_bytes), 0, 1
    for _, shape in names_shapes(c):
        b = int(np.prod(shape)) * ST[dtype][1]
        if cur > 0 and cur + b > cap:
            nshards, cur = nshards + 1, 0
        cur += b
    for k in ["architectures", "hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads",
              "num_hidden_layers", "vocab_size", "rms_norm_eps", "rope_theta", "max_position_embeddings",
              "tie_word_embeddings", "torch_dtype", "bos_token_id", "eos_token_id", "model_type", "hidden_act",
              "transformers_version"]:
        assert k in c, f"config.json lacks {k}"
    assert c["architectures"] == ["LlamaForCausalLM"] and c["model_type"] == "llama" and c["hidden_act"] == "silu"
    assert c["torch_dtype"] == {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[dtype], c["torch_dtype"]
    assert c["rms_norm_eps"] == 1e-05 and c["rope_theta"] == 10000.0, (c["rms_norm_eps"], c["rope_theta"])
    assert os.path.exists(os.path.join(d, "generation_config.json"))
    files = sorted(f for f in os.listdir(d) if f.endswith(".safetensors"))
    want = ["model.safetensors"] if nshards == 1 else \
        [f"model-{k + 1:05d}-of-{nshards:05d}.safetensors" for k in range(nshards)]
    assert files == want, f"shards {files}, want {want}"
    idxp = os.path.join(d, "model.safetensors.index.json")
    assert os.path.exists(idxp) == (nshards > 1), "index presence"
    total, where = 0, {}
    for fn in files:
        t, n = read_st(os.path.join(d, fn))
        assert (8 + n) % 8 == 0, f"{fn}: header not 8-byte aligned"
        for k, v in t.items():
            assert v[0] == dtype, f"{k} dtype {v[0]}"
            where[k] = fn
            total += len(v[2])
    assert set(where) == {n for n, _ in names_shapes(c)}, "tensor set"
    if nshards > 1:
        idx = json.load(open(idxp))
        assert idx["weight_map"] == where, "weight_map"
        assert idx["metadata"]["total_size"] == total, "total_size"
    print(f"config and {nshards} shard(s) ok, {total} bytes")


def cmp_cast(d, path):
    """Every tensor of folder d equals torch's cast (round to nearest even)
    of the float32 tensor in FILE.h5: lamina's narrowing is the standard one."""
    import torch
    import h5py
    src = read_folder(d)
    with h5py.File(path, "r") as f:
        for name, (dt, shape, b) in src.items():
            a = torch.tensor(np.asarray(f["model"][name][()], np.float32), dtype=torch.float64)
            assert to_bytes(a, dt) == b, f"{name}: {dt} bytes differ from torch's rounding"
    print(f"{len(src)} tensors rounded as torch rounds")


def header_edit(path, fn):
    """Rewrite a safetensors header through fn(dict) (data unchanged)."""
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    fn(hdr)
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + raw[8 + n:])


def holder(d, name):
    """Path of the safetensors file of folder d that holds tensor name."""
    ip = os.path.join(d, "model.safetensors.index.json")
    if not os.path.exists(ip):
        return os.path.join(d, "model.safetensors")
    return os.path.join(d, json.load(open(ip))["weight_map"][name])


def mutate(d, case):
    """Break folder d in one way (tests/t/61-hf-bad.t)."""
    single = os.path.join(d, "model.safetensors")
    cfgp = os.path.join(d, "config.json")
    cfg = json.load(open(cfgp))
    L0 = "model.layers.0."
    if case == "hdrlen":  # header length beyond the file
        raw = bytearray(open(single, "rb").read())
        raw[:8] = struct.pack("<Q", len(raw) + 100)
        open(single, "wb").write(raw)
    elif case == "offsets":  # a tensor's range past the data section
        def f(h):
            b, e = h["model.norm.weight"]["data_offsets"]
            h["model.norm.weight"]["data_offsets"] = [b + 10 ** 7, e + 10 ** 7]
        header_edit(single, f)
    elif case == "overlap":  # two tensors share bytes
        def f(h):
            h[L0 + "post_attention_layernorm.weight"]["data_offsets"] = list(h[L0 + "input_layernorm.weight"]["data_offsets"])
        header_edit(single, f)
    elif case == "dtype":
        def f(h):
            h[L0 + "mlp.up_proj.weight"]["dtype"] = "I32"
        header_edit(single, f)
    elif case == "shape":  # config.json disagrees with the tensors
        cfg["intermediate_size"] = 160
        json.dump(cfg, open(cfgp, "w"))
    elif case == "missing":  # gone from its file (and from the index)
        name = L0 + "self_attn.v_proj.weight"
        path = holder(d, name)
        t = read_st(path)[0]
        del t[name]
        write_st(path, [(k, v[0], v[1], v[2]) for k, v in t.items()])
        ip = os.path.join(d, "model.safetensors.index.json")
        if os.path.exists(ip):
            idx = json.load(open(ip))
            del idx["weight_map"][name]
            json.dump(idx, open(ip, "w"))
    elif case == "extra":
        t = read_st(single)[0]
        t[L0 + "self_attn.rotary_emb.inv_freq"] = ("F32", (8,), np.ones(8, "<f4").tobytes())
        write_st(single, [(k, v[0], v[1], v[2]) for k, v in t.items()])
    elif case == "tied-lm-head":  # tie_word_embeddings true, lm_head.weight kept
        cfg["tie_word_embeddings"] = True
        json.dump(cfg, open(cfgp, "w"))
    elif case == "truncated":  # the last shard cut short
        idx = json.load(open(os.path.join(d, "model.safetensors.index.json")))
        last = os.path.join(d, sorted(set(idx["weight_map"].values()))[-1])
        raw = open(last, "rb").read()
        open(last, "wb").write(raw[:-100])
    elif case == "noshard":
        idx = json.load(open(os.path.join(d, "model.safetensors.index.json")))
        os.remove(os.path.join(d, sorted(set(idx["weight_map"].values()))[1]))
    elif case == "rope_scaling":
        cfg["rope_scaling"] = {"type": "linear", "factor": 2.0}
        json.dump(cfg, open(cfgp, "w"))
    elif case == "attention_bias":
        cfg["attention_bias"] = True
        json.dump(cfg, open(cfgp, "w"))
    elif case == "badjson":
        open(cfgp, "w").write('{"hidden_size": 64,')
    elif case == "badheader":
        raw = bytearray(open(single, "rb").read())
        raw[8] = ord("[")
        open(single, "wb").write(raw)
    elif case == "nan":
        t = read_st(single)[0]
        dt, sh, b = t["model.norm.weight"]
        a = np.frombuffer(b, "<f4").copy()
        a[3] = np.nan
        t["model.norm.weight"] = (dt, sh, a.tobytes())
        write_st(single, [(k, v[0], v[1], v[2]) for k, v in t.items()])
    else:
        sys.exit(f"unknown case {case}")


def ref_loss(d, data, seq_len, batch):
    import torch
    import llama_ref as R
    import h5py
    c = json.load(open(os.path.join(d, "config.json")))
    cfg = R.ModelCfg(dim=c["hidden_size"], n_layers=c["num_hidden_layers"], n_heads=c["num_attention_heads"],
                     n_kv_heads=c["num_key_value_heads"], ffn_dim=c["intermediate_size"], vocab_size=c["vocab_size"],
                     norm_eps=c["rms_norm_eps"], rope_theta=c["rope_theta"],
                     tie_embeddings=c["tie_word_embeddings"])
    P = {k: torch.tensor(widen(*v), dtype=torch.float64) for k, v in read_folder(d).items()}
    with h5py.File(data, "r") as f:
        toks = np.asarray(f["tokens"][()], np.int64)
        offs = np.asarray(f["samples/offsets"][()], np.int64)
    samples = [toks[offs[i]:offs[i + 1]] for i in range(len(offs) - 1)]
    idx = R.step_indices(1, int(batch), len(samples))
    inputs, targets, mask, _ = R.make_batch(samples, idx, int(seq_len))
    with torch.no_grad():
        loss = R.ce_sum(P, cfg, inputs, targets, mask) / mask.sum()
    print(repr(float(loss)))


if __name__ == "__main__":
    cmd, rest = sys.argv[1], sys.argv[2:]
    if cmd == "make":
        make(rest)
    elif cmd == "cmp-h5":
        cmp_h5(*rest)
    elif cmd == "cmp-st":
        cmp_st(*rest)
    elif cmd == "check-out":
        check_out(*rest)
    elif cmd == "cmp-cast":
        cmp_cast(*rest)
    elif cmd == "mutate":
        mutate(*rest)
    elif cmd == "ref-loss":
        ref_loss(*rest)
    else:
        sys.exit(f"unknown command {cmd}")
