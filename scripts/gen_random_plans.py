#!/usr/bin/env python3
"""Random RegNet configurations, expanded by torchvision itself: test data for tests/plans.rs.

For N samples of the RegNet design space (the same sampling as shared/reference/gen_plans.py)
this records what torchvision builds: per stage depth, widths, groups; per block width_in,
stride, SE width, projection; the parameter count; and, at a random input size, the
multiply-adds of every Conv2d and Linear (weight elements x output pixels, counted with
forward hooks, as torch's FlopCounterMode counts them). Configurations that torchvision
rejects are kept with "rejected": true, so that we check we reject them too.

Usage: python3 scripts/gen_random_plans.py N SEED OUT.json
Needs: torch, torchvision (Debian: apt-get install python3-torchvision).
"""
import json
import random
import sys
from functools import partial

import torch
from torchvision.models.regnet import BlockParams, RegNet


def expand(cfg, h, w):
    bp = BlockParams.from_init_params(depth=cfg["depth"], w_0=cfg["w_0"], w_a=cfg["w_a"],
                                      w_m=cfg["w_m"], group_width=cfg["group_width"],
                                      se_ratio=cfg["se_ratio"],
                                      bottleneck_multiplier=cfg["bottleneck_multiplier"])
    net = RegNet(bp, num_classes=cfg["num_classes"], stem_width=cfg["stem_width"],
                 norm_layer=partial(torch.nn.BatchNorm2d, eps=1e-5, momentum=0.1))
    stages = []
    for _, stage in net.trunk_output.named_children():
        blocks = []
        for blk in stage.children():
            f = blk.f
            blocks.append(dict(width_in=f.a[0].in_channels, stride=f.b[0].stride[0],
                               se_width=(f.se.fc1.out_channels if hasattr(f, "se") else None),
                               projection=blk.proj is not None))
        b0 = stage[0].f.b[0]
        stages.append(dict(depth=len(blocks), width_out=stage[0].f.c[0].out_channels,
                           width_bottleneck=b0.out_channels, groups=b0.groups,
                           group_width=b0.out_channels // b0.groups, blocks=blocks))
    macs = [0]

    def hook(m, i, o):
        spatial = o.shape[2] * o.shape[3] if o.dim() == 4 else 1
        macs[0] += m.weight.numel() * spatial

    for m in net.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            m.register_forward_hook(hook)
    net.eval()
    with torch.no_grad():
        net(torch.zeros(1, 3, h, w))
    return dict(stages=stages, num_params=sum(p.numel() for p in net.parameters()),
                size=[h, w], macs=macs[0])


def main():
    n, seed, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    torch.set_num_threads(2)
    rng = random.Random(seed)
    res = []
    while len(res) < n:
        cfg = dict(depth=rng.randint(1, 30), w_0=8 * rng.randint(1, 32),
                   w_a=round(rng.uniform(0.0, 128.0), rng.choice([1, 2, 3])),
                   w_m=round(rng.uniform(1.05, 3.0), 2),
                   group_width=rng.choice([1, 2, 3, 4, 8, 12, 16, 24, 32, 48, 64, 96, 112]),
                   bottleneck_multiplier=rng.choice([1.0, 1.0, 1.0, 0.5, 0.25, 0.75, 2.0, 0.3, 1.5]),
                   se_ratio=rng.choice([None, 0.25, 0.25, 0.5, 0.1]),
                   stem_width=rng.choice([32, 32, 16, 24, 8]),
                   num_classes=rng.choice([1000, 10, 7]))
        h, w = rng.randint(1, 96), rng.randint(1, 96)
        try:
            out = expand(cfg, h, w)
        except Exception as e:  # torchvision rejects some corners: record that
            out = dict(rejected=True, error=str(e).splitlines()[0][:200])
        if out.get("num_params", 0) > 30e6:
            continue
        res.append(dict(params=cfg, **out))
    json.dump(res, open(path, "w"), indent=None, separators=(",", ":"))
    print(f"{len(res)} configurations, {sum(1 for r in res if r.get('rejected'))} rejected")


if __name__ == "__main__":
    main()
