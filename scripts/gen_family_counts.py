#!/usr/bin/env python3
"""Parameter counts, multiply-adds and tap shapes of torchvision's ResNets and timm's ReXNets.

For each model (built without weights, in eval mode) and each input size (224x224 and the
non-square 160x128) it records ``params`` (sum of the parameters' numel), ``macs``
(``FlopCounterMode`` total FLOPs // 2 for one zeros image) and the [C, H, W] output shape of
every tap: ResNet ``stem`` (the max pool), ``layer1`` .. ``layer4``; ReXNet ``stem`` and
every ``features.{i}``. ``tests/family_counts.rs`` checks the library's plans against it.

Usage: /path/to/python scripts/gen_family_counts.py tests/fixtures/family_counts.json
Needs: torch, torchvision, timm.
"""
import json
import sys

import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

TORCHVISION = [
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d",
    "wide_resnet50_2", "wide_resnet101_2",
]
TIMM = ["rexnet_100", "rexnet_130", "rexnet_150", "rexnet_200"]
SIZES = [(224, 224), (160, 128)]


def taps(name, net):
    """(tap name, module) pairs, in order."""
    if name.startswith("rexnet"):
        return [("stem", net.stem)] + [(f"features.{i}", m) for i, m in enumerate(net.features)]
    return [("stem", net.maxpool)] + [(f"layer{i}", getattr(net, f"layer{i}")) for i in range(1, 5)]


def measure(net, tap_modules, h, w):
    """MACs of one zeros image of h x w (FlopCounterMode // 2) and the [C, H, W] output of each
    (tap name, module) in tap_modules. scripts/gen_mobile_counts.py uses it too."""
    shapes = {}
    hooks = [
        m.register_forward_hook(lambda _m, _i, out, t=t: shapes.__setitem__(t, list(out.shape[1:])))
        for t, m in tap_modules
    ]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, 3, h, w))
    for hook in hooks:
        hook.remove()
    return {"macs": counter.get_total_flops() // 2, "taps": shapes}


def main(out_path):
    import timm  # here, so that gen_mobile_counts.py can import measure without timm

    torch.set_num_threads(2)
    models = {}
    for name in TORCHVISION + TIMM:
        if name in TIMM:
            net = timm.create_model(name, pretrained=False)
        else:
            net = torchvision.models.get_model(name, weights=None)
        net.eval()
        params = sum(p.numel() for p in net.parameters())
        sizes = {f"{h}x{w}": measure(net, taps(name, net), h, w) for h, w in SIZES}
        models[name] = {"params": params, "sizes": sizes}
        print(name, params, sizes["224x224"]["macs"], file=sys.stderr)
    versions = {"torch": torch.__version__, "torchvision": torchvision.__version__,
                "timm": timm.__version__}
    with open(out_path, "w") as f:
        json.dump({"versions": versions, "models": models}, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
