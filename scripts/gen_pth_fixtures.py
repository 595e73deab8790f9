#!/usr/bin/env python3
"""Writes the PyTorch checkpoints that tests/pth.rs loads, from the tiny_y fixture's state_dict.

    python3 scripts/gen_pth_fixtures.py      # needs torch and safetensors

tests/fixtures/tiny_y.safetensors holds torchvision's state_dict of the tiny_y model (its
config in tests/fixtures/manifest.json). Each file below is `torch.save` of that state_dict
(an OrderedDict with torch's `_metadata`, as `model.state_dict()` returns it), made with the
torch this script runs on (2.x), into tests/data/pth/:

* tiny_y.zip.pth          float32, zip format (torch.save's default)
* tiny_y.legacy.pth       float32, legacy format (_use_new_zipfile_serialization=False)
* tiny_y.views.pth        float32, zip, every tensor a view: the 1-d ones (biases, BN
                          statistics) slices at offsets of one shared storage, the others
                          transposed twice (non-contiguous strides over a transposed storage)
* tiny_y.f16.pth          the state_dict .half() (integer buffers kept), zip
* tiny_y.f16.legacy.pth   the same, legacy format
* tiny_y.module.pth       float16, zip, every name prefixed with `module.` (DataParallel)
* tiny_y.f16.safetensors  exactly the float16 values of the f16 checkpoints, for comparison

Each checkpoint is loaded back with torch.load(weights_only=True) and compared with the
state_dict it was made from before the script moves on.
"""

import collections
import os

import torch
from safetensors.torch import load_file, save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "pth")


def state_dict():
    sd = load_file(os.path.join(ROOT, "tests", "fixtures", "tiny_y.safetensors"))
    # model.state_dict() order and metadata: build the model and load the values into it.
    from torchvision.models.regnet import BlockParams, RegNet

    params = BlockParams.from_init_params(depth=6, w_0=16, w_a=12.0, w_m=2.0, group_width=8, se_ratio=0.25)
    model = RegNet(params, num_classes=10, stem_width=16)
    model.load_state_dict(sd)
    out = model.state_dict()
    assert set(out) == set(sd)
    return out


def half(sd):
    out = collections.OrderedDict((k, v.half() if v.is_floating_point() else v) for k, v in sd.items())
    out._metadata = sd._metadata
    return out


def views(sd):
    """The same values, every tensor a view into a storage it does not own alone."""
    flat = [k for k, v in sd.items() if v.is_floating_point() and v.dim() == 1]
    shared = torch.cat([sd[k] for k in flat])
    out = collections.OrderedDict()
    off = 0
    for k, v in sd.items():
        if k in flat:
            out[k] = shared[off : off + v.numel()]
            off += v.numel()
        elif v.is_floating_point() and v.dim() >= 2:
            t = v.transpose(0, 1).contiguous().transpose(0, 1)
            assert not t.is_contiguous() or v.shape[0] == 1 or v.shape[1] == 1
            out[k] = t
        else:
            out[k] = v
    out._metadata = sd._metadata
    return out


def prefixed(sd):
    out = collections.OrderedDict(("module." + k, v) for k, v in sd.items())
    out._metadata = collections.OrderedDict(("module." + k if k else "module", v) for k, v in sd._metadata.items())
    return out


def save(sd, name, legacy=False):
    path = os.path.join(OUT, name)
    torch.save(sd, path, _use_new_zipfile_serialization=not legacy)
    back = torch.load(path, weights_only=True)
    assert list(back) == list(sd), name
    for k in sd:
        assert back[k].dtype == sd[k].dtype and torch.equal(back[k], sd[k]), (name, k)
    print(f"{path}: {os.path.getsize(path)} bytes, {len(sd)} tensors")


def main():
    os.makedirs(OUT, exist_ok=True)
    sd = state_dict()
    save(sd, "tiny_y.zip.pth")
    save(sd, "tiny_y.legacy.pth", legacy=True)
    save(views(sd), "tiny_y.views.pth")
    h = half(sd)
    save(h, "tiny_y.f16.pth")
    save(h, "tiny_y.f16.legacy.pth", legacy=True)
    save(prefixed(h), "tiny_y.module.pth")
    path = os.path.join(OUT, "tiny_y.f16.safetensors")
    save_file({k: v.contiguous() for k, v in h.items()}, path)
    print(f"{path}: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
