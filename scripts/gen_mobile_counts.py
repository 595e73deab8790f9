#!/usr/bin/env python3
"""Parameter counts, multiply-adds and tap shapes of torchvision's MobileNetV2 and ShuffleNetV2
(x0.5, x1.0, x1.5, x2.0), in the format of tests/fixtures/family_counts.json
(scripts/gen_family_counts.py).

For each model (built without weights, in eval mode) and each input size (224x224 and the
non-square 160x128) it records ``params`` (sum of the parameters' numel), ``macs``
(``FlopCounterMode`` total FLOPs // 2 for one zeros image: convolutions, depthwise included,
and the classifier's Linear; BN, activations, pools, adds, concatenations and the channel
shuffle count nothing) and the [C, H, W] output shape of every tap:

  mobilenet_v2         ``stem`` (features.0: conv 3x3 s2 + BN + ReLU6) and every
                       ``features.{i}``, i = 1..18 (features.18 is the 1x1 conv to 1280 + BN + ReLU6)
  shufflenet_v2_x*     ``stem`` (after maxpool: conv1 + maxpool), ``stage2``, ``stage3``,
                       ``stage4``, ``conv5``

Usage: /tmp/tv/bin/python scripts/gen_mobile_counts.py [tests/fixtures/mobile_counts.json]
Made with torch 2.15.0+cu132, torchvision 0.29.2+cu132 (also written into the file's
"versions").
Needs: torch, torchvision.
"""
import json
import os
import sys

import torch
import torchvision

from gen_family_counts import measure  # the same count and hooks as the ResNets' and ReXNets'

MODELS = ["mobilenet_v2", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5",
          "shufflenet_v2_x2_0"]
SIZES = [(224, 224), (160, 128)]
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                           "mobile_counts.json")


def taps(name, net):
    """(tap name, module) pairs, in order."""
    if name.startswith("mobilenet"):
        return [("stem", net.features[0])] + [(f"features.{i}", net.features[i])
                                              for i in range(1, len(net.features))]
    return [("stem", net.maxpool)] + [(n, getattr(net, n)) for n in ("stage2", "stage3", "stage4", "conv5")]


def main(out_path):
    torch.set_num_threads(2)
    models = {}
    for name in MODELS:
        net = torchvision.models.get_model(name, weights=None)
        net.eval()
        params = sum(p.numel() for p in net.parameters())
        sizes = {f"{h}x{w}": measure(net, taps(name, net), h, w) for h, w in SIZES}
        models[name] = {"params": params, "sizes": sizes}
        print(name, params, sizes["224x224"]["macs"], file=sys.stderr)
    versions = {"torch": torch.__version__, "torchvision": torchvision.__version__}
    with open(out_path, "w") as f:
        json.dump({"versions": versions, "models": models}, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    if len(sys.argv) > 2:
        sys.exit(__doc__)
    main(sys.argv[1] if len(sys.argv) == 2 else DEFAULT_OUT)
