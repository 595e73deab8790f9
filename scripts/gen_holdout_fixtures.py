#!/usr/bin/env python3
"""Holdout fixtures made by torchvision, with an older torch than the shared fixtures used.

The shared generator (``../shared/fixtures/gen_fixtures.py``, or ``--shared PATH``) defines
every fixture set, including ``tiny-holdout`` (hold_a..hold_d) and ``zoo-holdout``
(regnet_y_800mf, regnet_x_1_6gf), but it imports ``torch.utils.flop_counter`` and
``torchvision.transforms.v2``, which torch < 2.1 / torchvision < 0.15 lack (Debian's
torch 1.13 and torchvision 0.14, for instance). This script imports that generator with
two small stand-ins installed first, so the SETS, the model building, the BatchNorm
randomisation, the seeds, the float64 forward with its stage taps and the file layout are
all the shared script's own code:

* ``FlopCounterMode``: counts multiply-adds of ``Conv2d`` and ``Linear`` with a global
  forward hook (the only ops in a RegNet that torch's counter counts) and reports
  2 x MACs as FLOPs, so ``macs_per_image`` comes out the same.
* ``transforms.v2``: an empty module; the photo in item 0 of the zoo models is made by
  ``photo_v1`` instead (torchvision.transforms v1 on the PIL image), which may differ
  from the graders' by rounding (within one uint8 step).

Each model gets NAME.safetensors, NAME.io.safetensors and an entry in OUTDIR/manifest.json,
in the format of the shared manifest.

With ``--half`` the weights are rounded to float16 first and stored as F16 (half the size;
the reference is then exact for those weights, not for the graders' float32 ones).

Usage: /usr/bin/python3 scripts/gen_holdout_fixtures.py [--half] OUTDIR [SET ...]
       (SET defaults to tiny-holdout; e.g. zoo-holdout, shared, zoo-small)
Needs: torch, torchvision, safetensors, pillow.
"""
import argparse
import importlib.util
import json
import os
import sys
import types

import torch
import torchvision
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SHARED = os.path.join(HERE, "..", "..", "shared", "fixtures", "gen_fixtures.py")
IMAGES = os.path.join(HERE, "..", "assets")  # chelsea.png, the same file as shared/images


class MacCounterMode:
    """Stand-in for torch.utils.flop_counter.FlopCounterMode (torch >= 2.1) counting
    Conv2d and Linear multiply-adds through a global forward hook."""

    def __init__(self, display=False):
        self.macs = 0
        self._handle = None

    def _hook(self, module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            self.macs += output.numel() * (module.in_channels // module.groups) * k
        elif isinstance(module, torch.nn.Linear):
            self.macs += output.numel() * module.in_features

    def __enter__(self):
        self._handle = torch.nn.modules.module.register_module_forward_hook(self._hook)
        return self

    def __exit__(self, *exc):
        self._handle.remove()
        return False

    def get_total_flops(self):
        return 2 * self.macs


def photo_v1(h, w):
    """gen_fixtures.photo with torchvision.transforms v1 on the PIL image: resize the shorter
    side to 256*h/224 (PIL bilinear, antialiased), centre crop, to [0,1], normalise. On
    chelsea.png this lands within one uint8 step (mean 2e-5) of what transforms.v2 of
    torchvision 0.29 gives; v1's antialiased resize of a tensor lands further (mean 3e-3)."""
    from PIL import Image
    from torchvision import transforms as T1

    img = Image.open(os.path.join(IMAGES, "chelsea.png")).convert("RGB")
    tf = T1.Compose([T1.Resize(int(round(256 * min(h, w) / 224))), T1.CenterCrop((h, w)),
                     T1.ToTensor(),
                     T1.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    return tf(img)


def import_shared(path):
    """Imports the shared gen_fixtures.py, with stand-ins for what this torch lacks."""
    try:
        importlib.import_module("torch.utils.flop_counter")
    except ImportError:
        fc = types.ModuleType("torch.utils.flop_counter")
        fc.FlopCounterMode = MacCounterMode
        sys.modules["torch.utils.flop_counter"] = fc
    try:
        importlib.import_module("torchvision.transforms.v2")
    except ImportError:
        # Only gen_fixtures.photo uses it, and main() replaces that with photo_v1.
        sys.modules["torchvision.transforms.v2"] = types.ModuleType("torchvision.transforms.v2")
    spec = importlib.util.spec_from_file_location("gen_fixtures", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("sets", nargs="*", default=["tiny-holdout"])
    ap.add_argument("--shared", default=DEFAULT_SHARED, help="path of gen_fixtures.py")
    ap.add_argument("--half", action="store_true",
                    help="store the weights as F16 (half the size): every float parameter and "
                         "buffer is rounded to float16 before the reference forward passes, "
                         "so the logits are exact for the stored weights")
    args = ap.parse_args()

    gf = import_shared(args.shared)
    gf.photo = photo_v1
    if args.half:
        randomise = gf.randomise_batchnorm

        def randomise_and_round(net, gen):
            randomise(net, gen)
            with torch.no_grad():
                for t in list(net.parameters()) + list(net.buffers()):
                    if t.is_floating_point():
                        t.copy_(t.half().float())

        gf.randomise_batchnorm = randomise_and_round
    os.makedirs(args.outdir, exist_ok=True)
    path = os.path.join(args.outdir, "manifest.json")
    manifest = json.load(open(path)) if os.path.exists(path) else {}
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    for s in args.sets:
        for name, (cfg, shape, seed) in gf.SETS[s].items():
            manifest[name] = gf.generate(name, cfg, shape, seed, args.outdir)
            if args.half:
                wpath = os.path.join(args.outdir, f"{name}.safetensors")
                sd = load_file(wpath)
                save_file({k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()},
                          wpath)
                manifest[name]["weights_dtype"] = "float16"
    manifest["_about"] = (
        "Fixtures made by gen_holdout_fixtures.py (the shared gen_fixtures.py with stand-ins "
        "for FlopCounterMode and transforms.v2) with torch " + torch.__version__
        + ", torchvision " + torchvision.__version__
        + ". logits and stage outputs are torchvision's float64 forward pass.")
    with open(path, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
