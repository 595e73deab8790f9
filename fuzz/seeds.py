#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (standard library only).

    python3 fuzz/seeds.py        # from the repository root

fuzz/corpus/weights_loader/seed-*: tiny_y's state_dict converted to F16 (a file the loader
accepts), a truncation of it, and small hand-made safetensors files that each stop at a
different check (wrong shape, `module.` prefix, unsupported dtype, NaN, negative variance,
empty, metadata only, bad header) plus `input` tensors for tensor::read_input_tensor.

fuzz/corpus/pth_loader/seed-*: PyTorch checkpoints written the way torch.save writes them
(protocol-2 pickles of an OrderedDict of _rebuild_tensor_v2 calls with torch's `_metadata`, in
the zip or the legacy container): tiny_y's state_dict in F16 (legacy: a file the loader
accepts), its stem in both containers, views (transposed, offsets), protocol 4 opcodes,
parameters, a `module.` prefix, and files that each stop at a different check (disallowed
global, missing storage, view out of range, float64, big-endian, compressed entry, deep
nesting, a memo copy bomb, truncations).

fuzz/corpus/spec_parser/seed-*: four bytes of plan size (height, width: little-endian
u16, value + 1) then a spec: the 25 zoo models and the tiny fixtures' configs in the form
`RegNetParams`'s Display writes, the short key aliases, and malformed specs.
"""

import json
import math
import os
import struct
import zipfile
import io

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


# --- PyTorch checkpoints -------------------------------------------------------------------

MAGIC = 0x1950A86A20F9469CFC6C
CLASSES = {"F32": "FloatStorage", "F16": "HalfStorage", "BF16": "BFloat16Storage",
           "I64": "LongStorage", "F64": "DoubleStorage"}
SIZES = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "F64": 8}


def p_str(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def p_int(v):
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if -(1 << 31) <= v < (1 << 31):
        return b"J" + struct.pack("<i", v)
    n = (v.bit_length() + 8) // 8
    return b"\x8a" + bytes([n]) + v.to_bytes(n, "little", signed=True)


def p_tuple(items):
    return b"(" + b"".join(items) + b"t"


def state_dict_pickle(tensors, protocol=2, metadata=True, parameter=False, legacy=False):
    """tensors: list of (name, dtype, key, storage numel, offset, shape, stride).
    torch.save's pickle of an OrderedDict state_dict (memo use simplified); `legacy`: the
    legacy format's persistent ids, which end with a `view_metadata` None."""
    def glob(module, name):
        if protocol >= 4:
            return b"\x8c" + bytes([len(module)]) + module.encode() + b"\x8c" + bytes([len(name)]) + name.encode() + b"\x93\x94"
        return b"c" + module.encode() + b"\n" + name.encode() + b"\n"

    p = b"\x80" + bytes([protocol])
    if protocol >= 4:
        p += b"\x95" + struct.pack("<Q", 0)  # FRAME (a length hint)
    p += glob("collections", "OrderedDict") + b"q\x00)R(" if protocol < 4 else glob("collections", "OrderedDict") + b")R("
    for name, dtype, key, numel, off, shape, stride in tensors:
        p += p_str(name)
        param = parameter and dtype != "I64"
        if param:
            p += glob("torch._utils", "_rebuild_parameter") + b"("
        p += glob("torch._utils", "_rebuild_tensor_v2")
        pid = p_tuple([p_str("storage"), glob("torch", CLASSES[dtype]), p_str(key), p_str("cpu"), p_int(numel)] + ([b"N"] if legacy else []))
        hooks = (b"h\x00)R" if protocol < 4 else glob("collections", "OrderedDict") + b")R")
        p += p_tuple([pid + b"Q", p_int(off), p_tuple([p_int(x) for x in shape]),
                      p_tuple([p_int(x) for x in stride]), b"\x89", hooks]) + b"R"
        if param:
            p += b"\x88" + (b"h\x00)R" if protocol < 4 else glob("collections", "OrderedDict") + b")R") + b"tR"
    p += b"u"
    if metadata:
        # torch's `_metadata`: BUILD with {'_metadata': OrderedDict({'': {'version': 1}})}
        od = b"h\x00)R" if protocol < 4 else glob("collections", "OrderedDict") + b")R"
        p += b"}" + p_str("_metadata") + od + p_str("") + b"}" + p_str("version") + p_int(1) + b"ss" + b"sb"
    return p + b"."


def contiguous(shape):
    stride, acc = [], 1
    for s in reversed(shape):
        stride.insert(0, acc)
        acc *= s
    return stride


def pth_zip(pkl, storages, byteorder=b"little", compress=False):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        if byteorder is not None:
            z.writestr("archive/byteorder", byteorder)
        for key, raw in storages:
            z.writestr("archive/data/" + key, raw)
        z.writestr("archive/version", b"3\n")
    return buf.getvalue()


def pth_legacy(pkl, storages):
    out = b"\x80\x02" + p_int(MAGIC) + b"."
    out += b"\x80\x02M\xe9\x03."
    out += b"\x80\x02}(" + p_str("protocol_version") + b"M\xe9\x03" + p_str("little_endian") + b"\x88" + p_str("type_sizes") + b"}(" + p_str("short") + p_int(2) + p_str("int") + p_int(4) + p_str("long") + p_int(4) + b"uu."
    out += pkl
    out += b"\x80\x02](" + b"".join(p_str(k) for k, _, _ in storages) + b"e."
    for _, numel, raw in storages:
        out += struct.pack("<Q", numel) + raw
    return out


def checkpoint(entries):
    """entries: (name, dtype, shape, raw) -> (tensor records, zip storages, legacy storages),
    one storage per tensor, keys '0', '1', ..."""
    recs, zs, ls = [], [], []
    for i, (name, dtype, shape, raw) in enumerate(entries):
        n = len(raw) // SIZES[dtype]
        recs.append((name, dtype, str(i), n, 0, shape, contiguous(shape)))
        zs.append((str(i), raw))
        ls.append((str(i), n, raw))
    return recs, zs, ls


def pth_loader():
    t = read_safetensors(os.path.join(ROOT, "tests", "fixtures", "tiny_y.safetensors"))
    half = [(n, "F16", s, f32_to("F16", r)) if d == "F32" else (n, d, s, r) for n, d, s, r in t]
    recs, zs, ls = checkpoint(half)
    write("pth_loader", "tiny_y_f16_legacy.pth", pth_legacy(state_dict_pickle(recs, legacy=True), ls))

    stem = [x for x in t if x[0].startswith("stem.")]
    recs, zs, ls = checkpoint(stem)
    pkl = state_dict_pickle(recs)
    write("pth_loader", "stem_zip.pth", pth_zip(pkl, zs))
    write("pth_loader", "stem_legacy.pth", pth_legacy(state_dict_pickle(recs, legacy=True), ls))
    write("pth_loader", "stem_proto4.pth", pth_zip(state_dict_pickle(recs, protocol=4), zs))
    write("pth_loader", "stem_parameters.pth", pth_zip(state_dict_pickle(recs, parameter=True), zs))
    write("pth_loader", "stem_no_metadata.pth", pth_zip(state_dict_pickle(recs, metadata=False), zs, byteorder=None))
    mrecs = [("module." + r[0],) + r[1:] for r in recs]
    write("pth_loader", "stem_module_prefix.pth", pth_zip(state_dict_pickle(mrecs), zs))
    write("pth_loader", "stem_big_endian.pth", pth_zip(pkl, zs, byteorder=b"big"))
    write("pth_loader", "stem_deflated.pth", pth_zip(pkl, zs, compress=True))
    legacy = pth_legacy(state_dict_pickle(recs, legacy=True), ls)
    write("pth_loader", "stem_legacy_truncated.pth", legacy[: len(legacy) - 9])

    # Views into one shared storage: a [2, 3] matrix, its transpose, a slice at an offset.
    six = f32(0, 1, 2, 3, 4, 5)
    views = [("a", "F32", "0", 6, 0, [2, 3], [3, 1]), ("b", "F32", "0", 6, 0, [3, 2], [1, 3]),
             ("c", "F32", "0", 6, 4, [2], [1]), ("d", "F32", "0", 6, 6, [0], [1])]
    write("pth_loader", "views_zip.pth", pth_zip(state_dict_pickle(views), [("0", six)]))
    write("pth_loader", "views_legacy.pth", pth_legacy(state_dict_pickle(views, legacy=True), [("0", 6, six)]))
    bad_views = [("a", "F32", "0", 6, 5, [2], [1])]
    write("pth_loader", "view_out_of_range.pth", pth_legacy(state_dict_pickle(bad_views, legacy=True), [("0", 6, six)]))
    write("pth_loader", "missing_storage.pth", pth_zip(state_dict_pickle(views), [("1", six)]))
    write("pth_loader", "f64.pth", pth_zip(state_dict_pickle([("stem.0.weight", "F64", "0", 432, 0, [16, 3, 3, 3], contiguous([16, 3, 3, 3]))]), [("0", b"\0" * 3456)]))
    evil = state_dict_pickle(views, legacy=True).replace(b"collections\nOrderedDict", b"os\nsystem", 1)
    write("pth_loader", "os_system.pth", pth_legacy(evil, [("0", 6, six)]))
    # Nesting and memo copies: refused by limits, not by running out of stack or memory.
    write("pth_loader", "deep_nesting.pth", pth_legacy(b"\x80\x02" + b"]" * 100 + b"a" * 99 + b".", []))
    bomb = b"\x80\x02)q\x000" + b"h\x00h\x00\x86q\x000" * 40 + b"N."
    write("pth_loader", "memo_bomb.pth", pth_legacy(bomb, []))
    write("pth_loader", "magic_only.pth", b"\x80\x02" + p_int(MAGIC) + b".")


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
    for t in ("weights_loader", "pth_loader", "spec_parser"):
        d = os.path.join(CORPUS, t)
        if os.path.isdir(d):
            for f in os.listdir(d):
                if f.startswith("seed-"):
                    os.remove(os.path.join(d, f))
    weights_loader()
    pth_loader()
    spec_parser()
