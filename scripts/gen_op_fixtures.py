#!/usr/bin/env python3
"""Reference cases for the op library, made by torch and torchvision: tests/fixtures/ops/.

For every op below it writes a few hand-picked edge cases followed by cases drawn at random
(batch 1-3, channels 1-24 with odd counts, spatial 1-17, odd and non-square; random
strides, paddings, dilations, groups, ...), one safetensors file per case,
``OUTDIR/{op}-{k:02}.safetensors`` (k = 0, 1, ...), and ``OUTDIR/manifest.json``.

Ops: conv2d (plus the fused epilogue: optional ``residual``, then ``activation``; the last
cases also a BatchNorm in eval mode, ``bn.*`` tensors and ``bn_eps``, before the residual),
deform_conv2d (torchvision.ops, v1 without mask and v2 with), channel_shuffle, max_pool2d,
avg_pool2d, adaptive_avg_pool2d, batch_norm (inference), squeeze_excitation
(torchvision.ops.SqueezeExcitation), cbam (written out below), relu, relu6, silu, sigmoid.

File format (the Rust tests and the ``op`` CLI read it):

* the op's inputs, float32, contiguous, under torch's argument names: ``input``, ``weight``,
  ``bias`` (absent = no bias), ``offset``, ``mask`` (absent = deform v1), ``residual``,
  ``running_mean``, ``running_var``; for squeeze_excitation ``fc1.weight`` [S, C, 1, 1],
  ``fc1.bias``, ``fc2.weight`` [C, S, 1, 1], ``fc2.bias``; for cbam ``mlp.0.weight`` [R, C],
  ``mlp.0.bias``, ``mlp.2.weight`` [C, R], ``mlp.2.bias``, ``spatial.weight`` [1, 2, k, k],
  ``spatial.bias`` [1];
* ``output``: the reference, float64, computed by torch in float64 from exactly the stored
  float32 values (each is cast to double and the op is run in double);
* ``__metadata__``: ``op`` and the op's params as the CLI takes them: ints ``2``, per-axis
  pairs ``2,1`` (both elements always), bools ``true``/``false``, floats as Python's repr
  (``1e-05``), strings plain. Params per op: conv2d stride, padding, dilation, groups,
  activation (none|relu|relu6|silu|sigmoid, applied after bias and residual); deform_conv2d
  stride, padding, dilation (groups and offset groups follow from the weight and offset
  shapes, as in torchvision); channel_shuffle groups; max_pool2d kernel_size, stride,
  padding, dilation, ceil_mode; avg_pool2d kernel_size, stride, padding, ceil_mode,
  count_include_pad; adaptive_avg_pool2d output_size; batch_norm eps; cbam kernel_size;
  the others none.

The files are written by this script, not by safetensors' save_file, whose header lists the
metadata in a random (hash) order: here the header's keys are sorted, float64 tensors come
first and then float32 ones, each group by name (safetensors' own order), so every tensor
is aligned to its element size and reruns are byte-identical. The manifest records, per
case, the file, the op, the params (the same strings) and every tensor's shape.

CBAM (Woo et al. 2018): channel attention Mc = sigmoid(mlp(avgpool(x)) + mlp(maxpool(x))),
mlp = Linear(C, R) -> ReLU -> Linear(R, C), both with bias, shared by the two branches;
x1 = x * Mc; spatial attention Ms = sigmoid(conv_kxk(cat([mean_c(x1), max_c(x1)], dim=1)))
with a 2 -> 1 channel conv with bias and padding k // 2 (k = 7, or 3 in a few cases). The
spatial conv's input channel 0 is the channel mean and channel 1 the channel max, in the
order of the paper's [F_avg; F_max]. Output x1 * Ms.

Every case has its own seed (from the op name, the case number and --seed) for both the
shape draw (Python's random) and the values (a torch.Generator on the CPU); the float64
references run on one thread. Inputs are uniform in [-1, 1] (activations: [-8, 8]), conv
weights are scaled by sqrt(3 / fan_in) so that outputs are O(1).

The committed files were made with torch 2.15.0+cu132 and torchvision 0.29.2+cu132 (CPU).

Usage (from the repository root):
    python3 scripts/gen_op_fixtures.py            # writes tests/fixtures/ops/
    python3 scripts/gen_op_fixtures.py --out DIR [--seed 0]
    python3 scripts/gen_op_fixtures.py --tiles    # the autotuner's cases: tests/fixtures/tiles/
Needs: torch, torchvision (any recent; the files above came from the versions named).
"""
import argparse
import json
import math
import os
import random
import struct
import zlib

import torch
import torch.nn.functional as F
import torchvision
from torchvision.ops import SqueezeExcitation, deform_conv2d

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.normpath(os.path.join(HERE, "..", "tests", "fixtures", "ops"))

CHANNELS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 16, 17, 24]
ACTIVATIONS = ["none", "relu", "relu6", "silu", "sigmoid"]


class Invalid(Exception):
    """The drawn case is not valid for torch (or too big); draw again."""


# ---------------------------------------------------------------------------------------
# values

class Values:
    """float32 tensors from one seeded torch.Generator."""

    def __init__(self, seed):
        self.g = torch.Generator().manual_seed(seed)

    def uniform(self, shape, lo=-1.0, hi=1.0):
        return torch.rand(shape, generator=self.g, dtype=torch.float32) * (hi - lo) + lo

    def conv_weight(self, shape):
        fan_in = shape[1] * shape[2] * shape[3]
        return self.uniform(shape) * math.sqrt(3.0 / fan_in)

    def linear_weight(self, shape):
        return self.uniform(shape) * math.sqrt(3.0 / shape[1])


def d(t):
    return t.to(torch.float64)


def pair(v):
    return v if isinstance(v, tuple) else (v, v)


def fmt(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, tuple):
        return ",".join(fmt(x) for x in v)
    return str(v)


def nbytes(shapes_f32, shape_out):
    return 4 * sum(math.prod(s) for s in shapes_f32) + 8 * math.prod(shape_out)


def out_len(size, k, s, p, dil):
    return (size + 2 * p - dil * (k - 1) - 1) // s + 1


def pick_channels(rng, lo=1, hi=24):
    return rng.choice([c for c in CHANNELS if lo <= c <= hi])


def act(name, x):
    return {
        "none": lambda t: t,
        "relu": F.relu,
        "relu6": F.relu6,
        "silu": F.silu,
        "sigmoid": torch.sigmoid,
    }[name](x)


# ---------------------------------------------------------------------------------------
# conv2d (+ residual, activation)

CONV_EDGES = [
    dict(n=1, c=8, h=9, w=7, o=12, k=(1, 1), s=(1, 1), p=(0, 0), dil=(1, 1), g=1),
    dict(n=2, c=6, h=10, w=9, o=5, k=(1, 1), s=(2, 2), p=(0, 0), dil=(1, 1), g=1),
    dict(n=1, c=13, h=11, w=12, o=13, k=(3, 3), s=(1, 1), p=(1, 1), dil=(1, 1), g=13),
    dict(n=1, c=5, h=12, w=11, o=7, k=(3, 3), s=(1, 1), p=(2, 2), dil=(2, 2), g=1),
    dict(n=1, c=4, h=13, w=9, o=6, k=(3, 3), s=(2, 1), p=(1, 1), dil=(1, 1), g=1),
    dict(n=1, c=6, h=8, w=13, o=4, k=(1, 7), s=(1, 1), p=(0, 3), dil=(1, 1), g=1),
    dict(n=2, c=3, h=13, w=6, o=5, k=(7, 1), s=(1, 1), p=(3, 0), dil=(1, 1), g=1),
    dict(n=1, c=3, h=5, w=17, o=4, k=(1, 11), s=(1, 2), p=(0, 5), dil=(1, 1), g=1),
    dict(n=1, c=7, h=10, w=11, o=14, k=(5, 5), s=(2, 2), p=(2, 2), dil=(1, 1), g=7),
    dict(n=1, c=6, h=9, w=16, o=6, k=(3, 9), s=(1, 1), p=(1, 4), dil=(1, 1), g=3),
]


def draw_conv(rng):
    kind = rng.choice(["1", "1", "2", "3", "dw"])
    if kind == "1":
        g, c, o = 1, pick_channels(rng), pick_channels(rng)
    elif kind == "dw":
        c = pick_channels(rng)
        g, o = c, c * rng.choice([1, 1, 2])
    else:
        g = int(kind)
        c, o = g * rng.randint(1, 24 // g), g * rng.randint(1, 24 // g)
    k = [rng.randint(1, 7), rng.randint(1, 7)]
    if rng.random() < 0.25:
        k[rng.randint(0, 1)] = 1
    s = (rng.randint(1, 3), rng.randint(1, 3))
    dil = tuple(1 if rng.random() < 0.5 else rng.randint(2, 3) for _ in range(2))
    p = (rng.randint(0, 4), rng.randint(0, 4))
    return dict(n=rng.randint(1, 3), c=c, h=rng.randint(1, 17), w=rng.randint(1, 17), o=o,
                k=tuple(k), s=s, p=p, dil=dil, g=g)


# Dense "same" convolutions (one group, stride 1, output plane = input plane), which runners on
# CPU-backed adapters compute as a GEMM over the kernel's taps: planes of 49 pixels in a batch
# of 3 (planes starting mid-vec4), a 3x3 as ResNet's, a 5x5 on a non-square plane, and
# one-row planes (every vertical tap in the padding). Cases CONV_SAME_FROM on.
SAME_CASES = [
    dict(n=3, c=5, h=7, w=7, o=9, k=(3, 3), s=(1, 1), p=(1, 1), dil=(1, 1), g=1),
    dict(n=1, c=16, h=12, w=12, o=16, k=(3, 3), s=(1, 1), p=(1, 1), dil=(1, 1), g=1),
    dict(n=1, c=6, h=5, w=11, o=7, k=(5, 5), s=(1, 1), p=(2, 2), dil=(1, 1), g=1),
    dict(n=2, c=3, h=1, w=9, o=4, k=(3, 3), s=(1, 1), p=(1, 1), dil=(1, 1), g=1),
]
CONV_SAME_FROM = 26

# Stride-2 1x1s whose input planes and rows start on a vec4, which the GEMM reads as aligned
# vec4s a row of output pixels at a time: 4- and 7-pixel output rows (tiles of 4 and 8), a
# residual, and a batch of 2. Cases CONV_ROWS_FROM on.
ROW_CASES = [
    dict(n=2, c=6, h=10, w=8, o=5, k=(1, 1), s=(2, 2), p=(0, 0), dil=(1, 1), g=1),
    dict(n=1, c=20, h=6, w=14, o=24, k=(1, 1), s=(2, 2), p=(0, 0), dil=(1, 1), g=1,
         residual=True),
]
CONV_ROWS_FROM = CONV_SAME_FROM + len(SAME_CASES)


def gen_conv2d(k, rng, v):
    if k < len(CONV_EDGES):
        spec = CONV_EDGES[k]
    elif k >= CONV_ROWS_FROM:
        spec = ROW_CASES[k - CONV_ROWS_FROM]
    elif k >= CONV_SAME_FROM:
        spec = SAME_CASES[k - CONV_SAME_FROM]
    else:
        spec = draw_conv(rng)
    ho = out_len(spec["h"], spec["k"][0], spec["s"][0], spec["p"][0], spec["dil"][0])
    wo = out_len(spec["w"], spec["k"][1], spec["s"][1], spec["p"][1], spec["dil"][1])
    if ho < 1 or wo < 1:
        raise Invalid
    with_bias = rng.random() < 2 / 3
    with_residual = rng.random() < 1 / 3
    with_residual = spec.get("residual", with_residual)  # a case may ask for one
    activation = ACTIVATIONS[k % len(ACTIVATIONS)]
    xs = (spec["n"], spec["c"], spec["h"], spec["w"])
    ws = (spec["o"], spec["c"] // spec["g"]) + spec["k"]
    ys = (spec["n"], spec["o"], ho, wo)
    if nbytes([xs, ws, ys if with_residual else (0,)], ys) > 48_000:
        raise Invalid
    t = {"input": v.uniform(xs), "weight": v.conv_weight(ws)}
    if with_bias:
        t["bias"] = v.uniform((spec["o"],))
    if with_residual:
        t["residual"] = v.uniform(ys)
    params = dict(stride=spec["s"], padding=spec["p"], dilation=spec["dil"], groups=spec["g"],
                  activation=activation)
    y = F.conv2d(d(t["input"]), d(t["weight"]), d(t["bias"]) if with_bias else None,
                 spec["s"], spec["p"], spec["dil"], spec["g"])
    if k >= CONV_BN_FROM:  # the fused epilogue's BatchNorm (eval), folded by the library
        o = spec["o"]
        t["bn.weight"], t["bn.bias"] = v.uniform((o,), 0.5, 1.5), v.uniform((o,))
        t["bn.running_mean"], t["bn.running_var"] = v.uniform((o,)), v.uniform((o,), 0.2, 2.0)
        params["bn_eps"] = 1e-3
        y = F.batch_norm(y, d(t["bn.running_mean"]), d(t["bn.running_var"]), d(t["bn.weight"]),
                         d(t["bn.bias"]), training=False, eps=1e-3)
    if with_residual:
        y = y + d(t["residual"])
    return t, params, act(activation, y)


# The autotuner's cases (--tiles, tests/fixtures/tiles/): convolutions large enough for every
# candidate tile to matter, and for the subgroup entry points to run (a 1x1 GEMM needs 7
# blocks of output channels: 112 channels at 16 a block; a direct conv 7 pixel tiles a block).
TILE_CASES = [
    dict(n=1, c=64, h=12, w=12, o=112, k=(1, 1), s=(1, 1), p=(0, 0), dil=(1, 1), g=1),
    dict(n=2, c=40, h=9, w=7, o=64, k=(1, 1), s=(1, 1), p=(0, 0), dil=(1, 1), g=1),
    dict(n=1, c=24, h=15, w=15, o=120, k=(1, 1), s=(2, 2), p=(0, 0), dil=(1, 1), g=1),
    dict(n=1, c=64, h=14, w=14, o=64, k=(3, 3), s=(1, 1), p=(1, 1), dil=(1, 1), g=8),
    dict(n=2, c=48, h=20, w=20, o=48, k=(3, 3), s=(2, 2), p=(1, 1), dil=(1, 1), g=6),
    dict(n=1, c=32, h=17, w=13, o=32, k=(3, 3), s=(1, 1), p=(1, 1), dil=(1, 1), g=32),
    dict(n=1, c=3, h=32, w=32, o=32, k=(3, 3), s=(2, 2), p=(1, 1), dil=(1, 1), g=1),
    dict(n=1, c=3, h=30, w=30, o=16, k=(7, 7), s=(2, 2), p=(3, 3), dil=(1, 1), g=1),
]


def gen_tile_conv(k, rng, v):
    """A TILE_CASES conv with bias; every third with a residual; activations in turn."""
    spec = TILE_CASES[k]
    ho = out_len(spec["h"], spec["k"][0], spec["s"][0], spec["p"][0], spec["dil"][0])
    wo = out_len(spec["w"], spec["k"][1], spec["s"][1], spec["p"][1], spec["dil"][1])
    activation = ACTIVATIONS[k % len(ACTIVATIONS)]
    xs = (spec["n"], spec["c"], spec["h"], spec["w"])
    ws = (spec["o"], spec["c"] // spec["g"]) + spec["k"]
    ys = (spec["n"], spec["o"], ho, wo)
    t = {"input": v.uniform(xs), "weight": v.conv_weight(ws), "bias": v.uniform((spec["o"],))}
    if k % 3 == 1:
        t["residual"] = v.uniform(ys)
    params = dict(stride=spec["s"], padding=spec["p"], dilation=spec["dil"], groups=spec["g"],
                  activation=activation)
    y = F.conv2d(d(t["input"]), d(t["weight"]), d(t["bias"]), spec["s"], spec["p"],
                 spec["dil"], spec["g"])
    if "residual" in t:
        y = y + d(t["residual"])
    return t, params, act(activation, y)


# conv2d cases from this one on carry a BatchNorm (bn.weight, bn.bias, bn.running_mean,
# bn.running_var; param bn_eps) after the conv and before the residual and activation.
CONV_BN_FROM = 22


# ---------------------------------------------------------------------------------------
# deform_conv2d

DEFORM_EDGES = [
    # zero offsets: a plain convolution
    dict(n=1, c=4, h=7, w=8, o=5, k=(3, 3), s=(1, 1), p=(1, 1), dil=(1, 1), g=1, og=1,
         mask=False, offsets="zero"),
    dict(n=1, c=4, h=6, w=9, o=3, k=(3, 3), s=(1, 1), p=(1, 1), dil=(1, 1), g=1, og=1,
         mask=True, offsets="int"),
    dict(n=2, c=6, h=7, w=5, o=4, k=(3, 3), s=(1, 1), p=(1, 1), dil=(1, 1), g=2, og=2,
         mask=False, offsets="frac"),
    dict(n=1, c=5, h=11, w=10, o=6, k=(3, 3), s=(2, 2), p=(2, 2), dil=(2, 2), g=1, og=1,
         mask=True, offsets="frac"),
    # a 1x1 kernel: a pure bilinear resampling, pushed outside the image
    dict(n=1, c=5, h=6, w=7, o=3, k=(1, 1), s=(1, 1), p=(0, 0), dil=(1, 1), g=1, og=1,
         mask=False, offsets="outside"),
    # a tiny image: most samples land in the (-1, 0) and (H-1, H) bands
    dict(n=2, c=3, h=2, w=3, o=2, k=(3, 3), s=(1, 1), p=(1, 1), dil=(1, 1), g=1, og=1,
         mask=True, offsets="outside"),
    dict(n=1, c=6, h=8, w=6, o=6, k=(3, 2), s=(1, 2), p=(1, 0), dil=(1, 1), g=1, og=3,
         mask=False, offsets="int"),
    dict(n=1, c=8, h=9, w=9, o=6, k=(3, 3), s=(1, 1), p=(1, 1), dil=(1, 1), g=2, og=2,
         mask=True, offsets="outside"),
]


def draw_deform(rng):
    g = rng.choice([1, 1, 2])
    c = g * rng.randint(1, 12 // g)
    o = g * rng.randint(1, 12 // g)
    og = rng.choice([x for x in (1, 2, 3) if c % x == 0])
    k = (rng.randint(1, 5), rng.randint(1, 5))
    return dict(n=rng.randint(1, 2), c=c, h=rng.randint(1, 13), w=rng.randint(1, 13), o=o, k=k,
                s=(rng.randint(1, 2), rng.randint(1, 2)),
                p=(rng.randint(0, 2), rng.randint(0, 2)),
                dil=tuple(1 if rng.random() < 0.6 else 2 for _ in range(2)), g=g, og=og,
                mask=rng.random() < 0.5,
                offsets=rng.choice(["frac", "frac", "int", "outside"]))


def gen_deform_conv2d(k, rng, v):
    spec = DEFORM_EDGES[k] if k < len(DEFORM_EDGES) else draw_deform(rng)
    if k >= len(DEFORM_EDGES):
        spec["mask"] = k % 2 == 1  # v2 in half the random cases, v1 in the other half
    kh, kw = spec["k"]
    ho = out_len(spec["h"], kh, spec["s"][0], spec["p"][0], spec["dil"][0])
    wo = out_len(spec["w"], kw, spec["s"][1], spec["p"][1], spec["dil"][1])
    if ho < 1 or wo < 1:
        raise Invalid
    n, og = spec["n"], spec["og"]
    xs = (n, spec["c"], spec["h"], spec["w"])
    ws = (spec["o"], spec["c"] // spec["g"], kh, kw)
    os_ = (n, 2 * og * kh * kw, ho, wo)
    ms = (n, og * kh * kw, ho, wo)
    ys = (n, spec["o"], ho, wo)
    with_bias = rng.random() < 2 / 3
    if nbytes([xs, ws, os_, ms if spec["mask"] else (0,)], ys) > 40_000:
        raise Invalid
    t = {"input": v.uniform(xs), "weight": v.conv_weight(ws)}
    if with_bias:
        t["bias"] = v.uniform((spec["o"],))
    mode = spec["offsets"]
    if mode == "zero":
        t["offset"] = torch.zeros(os_)
    elif mode == "int":
        t["offset"] = torch.round(v.uniform(os_) * rng.choice([1.0, 2.0]))
    elif mode == "frac":
        t["offset"] = v.uniform(os_) * rng.choice([0.5, 1.0, 1.5])
    else:  # outside
        t["offset"] = v.uniform(os_) * rng.choice([2.0, 3.0, 4.0])
    if spec["mask"]:
        t["mask"] = v.uniform(ms, 0.0, 1.0)
    params = dict(stride=spec["s"], padding=spec["p"], dilation=spec["dil"])
    y = deform_conv2d(d(t["input"]), d(t["offset"]), d(t["weight"]),
                      d(t["bias"]) if with_bias else None, stride=spec["s"],
                      padding=spec["p"], dilation=spec["dil"],
                      mask=d(t["mask"]) if spec["mask"] else None)
    return t, params, y


# ---------------------------------------------------------------------------------------
# channel_shuffle

SHUFFLE_EDGES = [(1, 6, 1), (6, 6, 1), (2, 2, 1), (3, 12, 2), (2, 24, 2)]  # (groups, C, N)


def gen_channel_shuffle(k, rng, v):
    if k < len(SHUFFLE_EDGES):
        groups, c, n = SHUFFLE_EDGES[k]
    else:
        groups = rng.randint(1, 8)
        c, n = groups * rng.randint(1, 24 // groups), rng.randint(1, 3)
    xs = (n, c, rng.randint(1, 9), rng.randint(1, 9))
    t = {"input": v.uniform(xs)}
    x = d(t["input"])
    y = F.channel_shuffle(x, groups)
    # torchvision's shufflenetv2 formulation; the two must agree
    alt = x.view(n, groups, c // groups, xs[2], xs[3]).transpose(1, 2).reshape(xs)
    assert torch.equal(y, alt)
    return t, dict(groups=groups), y


# ---------------------------------------------------------------------------------------
# max_pool2d

MAXPOOL_EDGES = [
    # the ResNet stem pool
    dict(n=1, c=8, h=16, w=15, k=(3, 3), s=(2, 2), p=(1, 1), dil=(1, 1), ceil=False),
    # ceil: the extra window starts inside the input and hangs past its right edge
    dict(n=1, c=3, h=6, w=7, k=(3, 3), s=(2, 2), p=(0, 0), dil=(1, 1), ceil=True),
    # ceil: the extra window would start in the right padding, so torch drops it
    dict(n=2, c=2, h=5, w=5, k=(2, 2), s=(2, 2), p=(1, 1), dil=(1, 1), ceil=True),
    # ceil: the extra window starts on the last input row / column, padding 1, stride 3
    dict(n=1, c=5, h=9, w=9, k=(3, 3), s=(3, 3), p=(1, 1), dil=(1, 1), ceil=True),
    dict(n=1, c=4, h=10, w=9, k=(3, 3), s=(2, 2), p=(1, 1), dil=(2, 2), ceil=True),
    dict(n=1, c=3, h=7, w=11, k=(2, 3), s=(1, 2), p=(1, 1), dil=(1, 1), ceil=False),
    dict(n=2, c=7, h=7, w=7, k=(7, 7), s=(1, 1), p=(0, 0), dil=(1, 1), ceil=False),
]


def draw_pool(rng, with_dilation):
    k = (rng.randint(1, 5), rng.randint(1, 5))
    return dict(n=rng.randint(1, 3), c=pick_channels(rng, hi=16), h=rng.randint(1, 17),
                w=rng.randint(1, 17), k=k, s=(rng.randint(1, 3), rng.randint(1, 3)),
                p=(rng.randint(0, k[0] // 2), rng.randint(0, k[1] // 2)),
                dil=tuple(1 if not with_dilation or rng.random() < 0.6 else rng.randint(2, 3)
                          for _ in range(2)),
                ceil=rng.random() < 0.5, cip=rng.random() < 0.5)


def pool_input(spec, v, k_out, budget):
    xs = (spec["n"], spec["c"], spec["h"], spec["w"])
    if nbytes([xs], (spec["n"], spec["c"]) + k_out) > budget:
        raise Invalid
    return {"input": v.uniform(xs)}


def gen_max_pool2d(k, rng, v):
    spec = MAXPOOL_EDGES[k] if k < len(MAXPOOL_EDGES) else draw_pool(rng, True)
    xs = (spec["n"], spec["c"], spec["h"], spec["w"])
    try:
        y = F.max_pool2d(torch.zeros(xs, dtype=torch.float64), spec["k"], spec["s"], spec["p"],
                         spec["dil"], spec["ceil"])
    except RuntimeError:
        raise Invalid
    t = pool_input(spec, v, tuple(y.shape[2:]), 24_000)
    y = F.max_pool2d(d(t["input"]), spec["k"], spec["s"], spec["p"], spec["dil"], spec["ceil"])
    params = dict(kernel_size=spec["k"], stride=spec["s"], padding=spec["p"],
                  dilation=spec["dil"], ceil_mode=spec["ceil"])
    return t, params, y


# ---------------------------------------------------------------------------------------
# avg_pool2d

AVGPOOL_EDGES = [
    # ceil: the last window (rows/cols 5..7 of the padded 8) hangs past the padded edge
    dict(n=1, c=3, h=6, w=6, k=(3, 3), s=(2, 2), p=(1, 1), ceil=True, cip=True),
    dict(n=1, c=3, h=6, w=6, k=(3, 3), s=(2, 2), p=(1, 1), ceil=True, cip=False),
    dict(n=1, c=4, h=9, w=9, k=(3, 3), s=(3, 3), p=(1, 1), ceil=True, cip=True),
    dict(n=1, c=4, h=9, w=9, k=(3, 3), s=(3, 3), p=(1, 1), ceil=True, cip=False),
    # ceil, no padding: the hanging window is divided by its in-image size even with cip
    dict(n=2, c=2, h=6, w=7, k=(3, 3), s=(2, 2), p=(0, 0), ceil=True, cip=True),
    dict(n=1, c=5, h=7, w=5, k=(3, 2), s=(2, 2), p=(1, 1), ceil=True, cip=True),
    dict(n=1, c=5, h=8, w=10, k=(3, 3), s=(2, 2), p=(1, 1), ceil=False, cip=True),
    # ResNet-D's shortcut pool, on odd sizes
    dict(n=2, c=6, h=7, w=9, k=(2, 2), s=(2, 2), p=(0, 0), ceil=True, cip=False),
    dict(n=1, c=3, h=11, w=8, k=(5, 4), s=(3, 3), p=(2, 2), ceil=True, cip=True),
]


def gen_avg_pool2d(k, rng, v):
    spec = AVGPOOL_EDGES[k] if k < len(AVGPOOL_EDGES) else draw_pool(rng, False)
    xs = (spec["n"], spec["c"], spec["h"], spec["w"])
    try:
        y = F.avg_pool2d(torch.zeros(xs, dtype=torch.float64), spec["k"], spec["s"], spec["p"],
                         spec["ceil"], spec["cip"])
    except RuntimeError:
        raise Invalid
    t = pool_input(spec, v, tuple(y.shape[2:]), 24_000)
    y = F.avg_pool2d(d(t["input"]), spec["k"], spec["s"], spec["p"], spec["ceil"], spec["cip"])
    params = dict(kernel_size=spec["k"], stride=spec["s"], padding=spec["p"],
                  ceil_mode=spec["ceil"], count_include_pad=spec["cip"])
    return t, params, y


# ---------------------------------------------------------------------------------------
# adaptive_avg_pool2d

ADAPTIVE_EDGES = [  # (N, C, H, W, oh, ow)
    (1, 4, 7, 7, 3, 5), (1, 3, 5, 5, 7, 7), (2, 5, 9, 6, 1, 1), (1, 3, 17, 13, 4, 3),
    (1, 2, 1, 1, 3, 2), (1, 3, 6, 10, 6, 10), (1, 7, 14, 14, 7, 7),
]


def gen_adaptive_avg_pool2d(k, rng, v):
    if k < len(ADAPTIVE_EDGES):
        n, c, h, w, oh, ow = ADAPTIVE_EDGES[k]
    else:
        n, c, h, w = rng.randint(1, 3), pick_channels(rng, hi=16), rng.randint(1, 17), rng.randint(1, 17)
        oh, ow = rng.randint(1, min(h + 3, 9)), rng.randint(1, min(w + 3, 9))
    xs = (n, c, h, w)
    if nbytes([xs], (n, c, oh, ow)) > 24_000:
        raise Invalid
    t = {"input": v.uniform(xs)}
    return t, dict(output_size=(oh, ow)), F.adaptive_avg_pool2d(d(t["input"]), (oh, ow))


# ---------------------------------------------------------------------------------------
# batch_norm (inference)

def gen_batch_norm(k, rng, v):
    if k == 0:
        xs, eps = (3, 1, 1, 1), 1e-5
    elif k == 1:
        xs, eps = (1, 13, 7, 5), 1e-3
    else:
        xs = (rng.randint(1, 3), pick_channels(rng), rng.randint(1, 12), rng.randint(1, 12))
        eps = rng.choice([1e-5, 1e-5, 1e-3, 0.1])
    if nbytes([xs], xs) > 16_000:
        raise Invalid
    c = xs[1]
    t = {"input": v.uniform(xs), "running_mean": v.uniform((c,)),
         "running_var": v.uniform((c,), 0.2, 2.0), "weight": v.uniform((c,), -1.5, 1.5),
         "bias": v.uniform((c,))}
    y = F.batch_norm(d(t["input"]), d(t["running_mean"]), d(t["running_var"]), d(t["weight"]),
                     d(t["bias"]), training=False, eps=eps)
    return t, dict(eps=eps), y


# ---------------------------------------------------------------------------------------
# squeeze_excitation (torchvision.ops.SqueezeExcitation)

def gen_squeeze_excitation(k, rng, v):
    if k == 0:
        c, s, xs = 1, 1, (1, 1, 3, 3)
    else:
        c = pick_channels(rng, lo=2)
        s = rng.randint(1, max(1, c // 2))
        xs = (rng.randint(1, 3), c, rng.randint(1, 11), rng.randint(1, 11))
    if nbytes([xs], xs) > 16_000:
        raise Invalid
    t = {"input": v.uniform(xs), "fc1.weight": v.conv_weight((s, c, 1, 1)),
         "fc1.bias": v.uniform((s,)), "fc2.weight": v.conv_weight((c, s, 1, 1)),
         "fc2.bias": v.uniform((c,))}
    se = SqueezeExcitation(c, s).double().eval()
    se.load_state_dict({name: d(t[name]) for name in ("fc1.weight", "fc1.bias", "fc2.weight",
                                                        "fc2.bias")})
    with torch.no_grad():
        y = se(d(t["input"]))
    return t, {}, y


# ---------------------------------------------------------------------------------------
# cbam

def cbam(x, w, ksize):
    """CBAM in float64; w maps the tensor names to double tensors."""
    def mlp(z):
        return F.linear(F.relu(F.linear(z, w["mlp.0.weight"], w["mlp.0.bias"])),
                        w["mlp.2.weight"], w["mlp.2.bias"])
    mc = torch.sigmoid(mlp(x.mean(dim=(2, 3))) + mlp(x.amax(dim=(2, 3))))
    x1 = x * mc[:, :, None, None]
    pooled = torch.cat([x1.mean(dim=1, keepdim=True), x1.amax(dim=1, keepdim=True)], dim=1)
    ms = torch.sigmoid(F.conv2d(pooled, w["spatial.weight"], w["spatial.bias"],
                                padding=ksize // 2))
    return x1 * ms


def gen_cbam(k, rng, v):
    ksize = 3 if k in (2, 5) else 7
    if k == 0:
        c, r, xs = 1, 1, (1, 1, 1, 1)
    else:
        c = pick_channels(rng, lo=2)
        r = rng.randint(1, max(1, c // 2))
        xs = (rng.randint(1, 3), c, rng.randint(1, 13), rng.randint(1, 13))
    if nbytes([xs], xs) > 16_000:
        raise Invalid
    t = {"input": v.uniform(xs), "mlp.0.weight": v.linear_weight((r, c)),
         "mlp.0.bias": v.uniform((r,)), "mlp.2.weight": v.linear_weight((c, r)),
         "mlp.2.bias": v.uniform((c,)), "spatial.weight": v.conv_weight((1, 2, ksize, ksize)),
         "spatial.bias": v.uniform((1,))}
    y = cbam(d(t["input"]), {name: d(x) for name, x in t.items()}, ksize)
    return t, dict(kernel_size=ksize), y


# ---------------------------------------------------------------------------------------
# activations

BOUNDARY_VALUES = [-8.0, -6.0, -1.0, -0.0, 0.0, 1.0, 6.0, 8.0]


def gen_activation(name):
    def gen(k, rng, v):
        xs = [(1, 5, 4, 7), (2, 3, 5, 5), (1, 1, 1, 13)][k]
        x = v.uniform(xs, -8.0, 8.0)
        if k == 0:
            x.view(-1)[:len(BOUNDARY_VALUES)] = torch.tensor(BOUNDARY_VALUES)
        return {"input": x}, {}, act(name, d(x))
    return gen


# ---------------------------------------------------------------------------------------

OPS = [  # (op, generator, number of cases)
    ("conv2d", gen_conv2d, CONV_ROWS_FROM + len(ROW_CASES)),
    ("deform_conv2d", gen_deform_conv2d, 20),
    ("channel_shuffle", gen_channel_shuffle, 10),
    ("max_pool2d", gen_max_pool2d, 18),
    ("avg_pool2d", gen_avg_pool2d, 20),
    ("adaptive_avg_pool2d", gen_adaptive_avg_pool2d, 14),
    ("batch_norm", gen_batch_norm, 10),
    ("squeeze_excitation", gen_squeeze_excitation, 10),
    ("cbam", gen_cbam, 12),
    ("relu", gen_activation("relu"), 3),
    ("relu6", gen_activation("relu6"), 3),
    ("silu", gen_activation("silu"), 3),
    ("sigmoid", gen_activation("sigmoid"), 3),
]

TILE_OPS = [("conv2d", gen_tile_conv, len(TILE_CASES))]

DTYPES = {torch.float32: ("F32", "<f4"), torch.float64: ("F64", "<f8")}


def write_safetensors(path, tensors, metadata):
    """safetensors with a deterministic header: sorted keys, float64 tensors first."""
    order = sorted(tensors, key=lambda name: (-tensors[name].element_size(), name))
    header, blobs, offset = {"__metadata__": dict(sorted(metadata.items()))}, [], 0
    for name in order:
        x = tensors[name].contiguous()
        code, np_dtype = DTYPES[x.dtype]
        blob = x.numpy().astype(np_dtype, copy=False).tobytes()
        header[name] = {"dtype": code, "shape": list(x.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for blob in blobs:
            f.write(blob)


def make_case(op, gen, k, base_seed):
    seed = zlib.crc32(f"{op}-{k}".encode()) ^ base_seed
    rng = random.Random(seed)
    for _ in range(10_000):
        v = Values(rng.getrandbits(63))
        try:
            t, params, y = gen(k, rng, v)
        except Invalid:
            continue
        if not torch.isfinite(y).all():
            continue
        assert y.dtype == torch.float64
        assert all(x.dtype == torch.float32 for x in t.values())
        return t, params, y
    raise RuntimeError(f"{op}-{k}: no valid case drawn")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="output folder (tests/fixtures/ops)")
    ap.add_argument("--seed", type=int, default=0, help="mixed into every case's seed")
    ap.add_argument("--tiles", action="store_true",
                    help="the autotuner's cases instead (default --out tests/fixtures/tiles)")
    args = ap.parse_args()
    ops, limit = OPS, 150_000
    if args.tiles:
        ops, limit = TILE_OPS, 400_000
        if args.out == DEFAULT_OUT:
            args.out = os.path.join(os.path.dirname(DEFAULT_OUT), "tiles")
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    names = {op for op, _, _ in ops}
    for f in os.listdir(args.out):  # stale cases of ours, e.g. after a count went down
        stem, _, rest = f.rpartition("-")
        if stem in names and rest.endswith(".safetensors"):
            os.remove(os.path.join(args.out, f))
    cases, total = [], 0
    for op, gen, count in ops:
        for k in range(count):
            t, params, y = make_case(op, gen, k, args.seed)
            params = {name: fmt(value) for name, value in params.items()}
            tensors = {name: x.contiguous() for name, x in t.items()}
            tensors["output"] = y.contiguous()
            fname = f"{op}-{k:02}.safetensors"
            path = os.path.join(args.out, fname)
            write_safetensors(path, tensors, {"op": op, **params})
            size = os.path.getsize(path)
            assert size < limit, (fname, size)
            total += size
            cases.append({"file": fname, "op": op, "params": params,
                          "shapes": {name: list(x.shape) for name, x in sorted(tensors.items())}})
        print(f"{op}: {count} cases")
    manifest = {"generator": "scripts/gen_op_fixtures.py", "torch": torch.__version__,
                "torchvision": torchvision.__version__, "cases": []}
    head = json.dumps(manifest)[:-len('[]}')]  # one case a line
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        f.write(head + "[\n" + ",\n".join(json.dumps(c) for c in cases) + "\n]}\n")
    print(f"wrote {len(cases)} cases, {total} bytes, to {args.out}")


if __name__ == "__main__":
    main()
