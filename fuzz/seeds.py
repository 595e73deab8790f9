#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (standard library only).

    python3 fuzz/seeds.py        # from the repository root

fuzz/corpus/weights_loader/seed-*: tiny_y's state_dict converted to F16 (a file the loader
accepts), a truncation of it, and small hand-made safetensors files that each stop at a
different check (wrong shape, `module.` prefix, unsupported dtype, NaN, negative variance,
empty, metadata only, bad header) plus `input` tensors for tensor::read_input_tensor.

fuzz/corpus/spec_parser/seed-*: four bytes of plan size (height, width: little-endian
u16, value + 1) then a spec: the 25 zoo models and the tiny fixtures' configs in the form
`RegNetParams`'s Display writes, the short key aliases, and malformed specs.
"""

import json
import math
import os
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def safetensors(tensors, metadata=None, header_pad=True):
    """tensors: list of (name, dtype, shape, raw bytes). Returns the file's bytes."""
    header, data, off = {}, b"", 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        data += raw
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    if header_pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def read_safetensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8 : 8 + n])
    header.pop("__metadata__", None)
    base = 8 + n
    out = []
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        s, e = info["data_offsets"]
        out.append((name, info["dtype"], info["shape"], b[base + s : base + e]))
    return out


def f32_to(dtype, raw):
    vals = struct.unpack(f"<{len(raw) // 4}f", raw)
    if dtype == "F16":
        return struct.pack(f"<{len(vals)}e", *vals)
    if dtype == "BF16":  # truncate the f32 bit pattern (the fixtures hold no NaN)
        return b"".join(struct.pack("<I", struct.unpack("<I", struct.pack("<f", v))[0])[2:] for v in vals)
    raise ValueError(dtype)


def f32(*vals):
    return struct.pack(f"<{len(vals)}f", *vals)


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def weights_loader():
    t = read_safetensors(os.path.join(ROOT, "tests", "fixtures", "tiny_y.safetensors"))
    half = [(n, "F16", s, f32_to("F16", r)) if d == "F32" else (n, d, s, r) for n, d, s, r in t]
    full = safetensors(half)
    write("weights_loader", "tiny_y_f16.safetensors", full)
    write("weights_loader", "tiny_y_truncated.safetensors", full[:4096])

    stem = [x for x in t if x[0].startswith("stem.")]
    stem_w = next(x for x in stem if x[0] == "stem.0.weight")
    w = lambda dt: [(stem_w[0], dt, stem_w[2], f32_to(dt, stem_w[3]) if dt != "F32" else stem_w[3])]
    write("weights_loader", "stem_bf16.safetensors", safetensors(
        [(n, "BF16", s, f32_to("BF16", r)) if d == "F32" else (n, d, s, r) for n, d, s, r in stem]))
    write("weights_loader", "stem_f32.safetensors", safetensors(stem))
    bad_var = [(n, d, s, f32(*([-1.0] * 16)) if n == "stem.1.running_var" else r) for n, d, s, r in stem]
    write("weights_loader", "negative_var.safetensors", safetensors(bad_var))
    tiny_var = [(n, d, s, f32(*([-1e-5] * 16)) if n == "stem.1.running_var" else r) for n, d, s, r in stem]
    write("weights_loader", "tiny_var.safetensors", safetensors(tiny_var))
    write("weights_loader", "wrong_shape.safetensors",
          safetensors([("stem.0.weight", "F16", [16, 3, 9], f32_to("F16", stem_w[3]))]))
    write("weights_loader", "module_prefix.safetensors",
          safetensors([("module.stem.0.weight", "F16", [16, 3, 3, 3], f32_to("F16", stem_w[3]))]))
    write("weights_loader", "int_dtype.safetensors",
          safetensors([("stem.0.weight", "I32", [16, 3, 3, 3], stem_w[3])]))
    write("weights_loader", "nan.safetensors",
          safetensors([("stem.0.weight", "F32", [16, 3, 3, 3], f32(math.nan) + stem_w[3][4:])]))
    write("weights_loader", "empty.safetensors", safetensors([]))
    write("weights_loader", "metadata.safetensors", safetensors([], metadata={"format": "pt"}))
    write("weights_loader", "unexpected.safetensors",
          safetensors([("fc.extra", "F32", [2], f32(1.0, 2.0))]))
    write("weights_loader", "zero_dim.safetensors", safetensors([("stem.0.weight", "F32", [0, 3, 3, 3], b"")]))
    write("weights_loader", "bad_offsets.safetensors",
          struct.pack("<Q", 64) + b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,0]}}'.ljust(64) + b"\0" * 8)
    write("weights_loader", "huge_header_len.safetensors", struct.pack("<Q", 1 << 62) + b"{}")
    write("weights_loader", "input_f32.safetensors",
          safetensors([("input", "F32", [1, 3, 2, 2], f32(*[i / 7 for i in range(12)]))]))
    write("weights_loader", "input_f16.safetensors",
          safetensors([("input", "F16", [1, 3, 1, 1], f32_to("F16", f32(0.5, -1.0, 2.0)))]))
    write("weights_loader", "input_rank3.safetensors",
          safetensors([("input", "F32", [3, 1, 1], f32(0.5, -1.0, 2.0))]))
    write("weights_loader", "input_inf.safetensors",
          safetensors([("input", "F32", [1, 3, 1, 1], f32(0.5, math.inf, 2.0))]))


def fmt(x):
    """A float as Rust's Display writes it (1.0 -> 1, 0.25 -> 0.25)."""
    r = repr(float(x))
    return r[:-2] if r.endswith(".0") else r


def size(h, w):
    return struct.pack("<HH", h - 1, w - 1)


def spec(depth, w0, wa, wm, g, b=1.0, se=None, stem=32, classes=1000):
    s = f"depth={depth},w0={w0},wa={fmt(wa)},wm={fmt(wm)},group_width={g},bottleneck={fmt(b)}"
    if se is not None:
        s += f",se={fmt(se)}"
    return s + f",stem={stem},classes={classes}"


def zoo():
    """(name, depth, w0, wa, wm, group_width, se_ratio) of the 25 zoo models, from torchvision's
    own plans (tests/fixtures/zoo_plans.json), which tests/plans.rs checks src/config/zoo.rs
    against."""
    with open(os.path.join(ROOT, "tests", "fixtures", "zoo_plans.json")) as f:
        plans = json.load(f)
    for name, entry in plans.items():
        p = entry["params"]
        se = p["se_ratio"] or None
        yield name, p["depth"], p["w_0"], p["w_a"], p["w_m"], p["group_width"], se


def spec_parser():
    for name, d, w0, wa, wm, g, se in zoo():
        write("spec_parser", name, size(224, 224) + spec(d, w0, wa, wm, g, se=se).encode())
    # The tiny fixtures' configs (tests/fixtures/manifest.json), at their input sizes.
    tiny = {
        "tiny_y": ((32, 32), spec(6, 16, 12.0, 2.0, 8, se=0.25, stem=16, classes=10)),
        "tiny_x": ((32, 32), spec(6, 16, 12.0, 2.0, 8, stem=16, classes=10)),
        "tiny_bottleneck_half": ((40, 40), spec(7, 24, 16.0, 2.2, 8, b=0.5, se=0.25, stem=16, classes=10)),
        "tiny_clipped_groups": ((24, 24), spec(5, 8, 6.0, 2.0, 24, se=0.25, stem=8, classes=10)),
        "tiny_depthwise": ((32, 32), spec(6, 16, 10.0, 2.0, 1, se=0.25, stem=16, classes=10)),
        "tiny_odd_input": ((37, 29), spec(6, 24, 20.0, 2.3, 8, stem=16, classes=10)),
        "tiny_six_stages": ((64, 64), spec(12, 8, 10.0, 1.6, 8, stem=8, classes=10)),
    }
    for name, ((h, w), s) in tiny.items():
        write("spec_parser", name, size(h, w) + s.encode())
    others = {
        "aliases": (size(1, 1), "d=16, w_0=48, w_a=27.89, w_m=2.09, g=8, b=1.0, se_ratio=0.25, stem_width=32, num_classes=1000"),
        "se_none": (size(7, 300), "depth=4,w0=8,wa=0,wm=1.5,group_width=1,se=None"),
        "se_zero": (size(16, 16), "depth=3,w0=16,wa=8,wm=2,group_width=4,se=0"),
        "exp_floats": (size(33, 2), "depth=20,w0=64,wa=1e2,wm=2.5e0,group_width=16,bottleneck=2.5e-1"),
        "huge_side": (size(32768, 32768), "depth=1,w0=8,wa=0,wm=2,group_width=8,classes=1"),
        "missing_key": (size(224, 224), "depth=16,w0=48,wa=27.89,wm=2.09"),
        "twice": (size(224, 224), "depth=16,depth=17,w0=48,wa=27.89,wm=2.09,group_width=8"),
        "alias_twice": (size(224, 224), "depth=16,d=17,w0=48,wa=27.89,wm=2.09,group_width=8"),
        "unknown_key": (size(224, 224), "depth=16,w0=48,wa=27.89,wm=2.09,group_width=8,foo=1"),
        "not_number": (size(224, 224), "depth=16,w0=48,wa=abc,wm=inf,group_width=8"),
        "negative": (size(224, 224), "depth=-3,w0=50,wa=-2,wm=0.5,group_width=0,stem=0,classes=0"),
        "no_equals": (size(224, 224), "depth"),
        "empty": (size(224, 224), ""),
    }
    for name, (prefix, s) in others.items():
        write("spec_parser", name, prefix + s.encode())


if __name__ == "__main__":
    for t in ("weights_loader", "spec_parser"):
        d = os.path.join(CORPUS, t)
        if os.path.isdir(d):
            for f in os.listdir(d):
                if f.startswith("seed-"):
                    os.remove(os.path.join(d, f))
    weights_loader()
    spec_parser()
