#!/usr/bin/env python3
"""Reference fixtures for torchvision's MobileNetV2 and ShuffleNetV2 (x1.0), in the layout of
``../shared/fixtures/families`` (gen_families.py) and its manifest:

  NAME.safetensors     the model's state_dict under torchvision's own names; floating tensors
                       rounded to float16 and stored as F16 (the reference below is computed from
                       exactly these rounded values, so float32 inference must land within 1e-4);
                       the weight, bias, running_mean and running_var of every BatchNorm
                       randomised, so folding BN into the convolutions is really exercised
  NAME.io.safetensors  'input' [N,3,H,W] float32 (item 0 is chelsea.png through torchvision's
                       ImageNet eval transform, the rest N(0,1) noise), 'logits' and the output of
                       each tap named in manifest.json 'taps', all from a float64 forward pass
                       (model.double()) of the float16-rounded weights, stored as float32 like
                       the families' (``--io-dtype float64`` keeps them float64; the crate's
                       read_safetensors accepts F32/F16/BF16 only)
  manifest.json        one entry per model: config, input_shape, seed, params, macs_per_image
                       (FlopCounterMode total // 2 at the fixture's size), taps, logits_norm,
                       torch_float32_rel_err (torchvision's own float32 forward against the
                       float64 one), weights_dtype; and an '_about' line

Taps
  mobilenet_v2        'stem' = features.0 (conv 3x3 s2 + BN + ReLU6), then features.1, .3, .6,
                      .13, .17 (outputs of those InvertedResidual blocks) and features.18
                      (the 1x1 conv to 1280 + BN + ReLU6)
  shufflenet_v2_x1_0  'stem' = after maxpool (conv1 + maxpool), stage2, stage3, stage4, conv5

Randomisation (per model, fixed seed). The convolutions keep torchvision's initialisation.
Every BatchNorm gets weight U(0.5,1.5)*gain and bias N(0,0.2^2) (+ 1.0*gain when a ReLU or
ReLU6 follows it), and running statistics calibrated on the fixture's own input so that
activations stay O(1) through the depth: with mu, var the per-channel mean and variance of the
BN's actual input (the earlier BNs already set), running_mean = mu + 0.2*sqrt(var)*N(0,1) and
running_var = var*U(0.5,2). gain is 1.5 on MobileNetV2's BNs before a ReLU6 (so that ReLU6
really clips: about 0.5% of its inputs lie above 6), 0.5 on the last BN of each skip-connected
MobileNetV2 block, 1 elsewhere. The classifier Linear gets N(0,1)/sqrt(in_features) weights and
N(0,0.1^2) biases. Why the +1.0 and the 0.5: with zero-mean biases (half the ReLUs switching)
these 50-odd-layer random nets amplify rounding errors ~300x over the depth (torchvision's
float32 logits 1e-5..4e-5 from float64, float16 several 1e-2); with them float32 lands ~2e-6
and float16 ~4e-3 (printed per tap when the script runs).

Usage: /tmp/tv/bin/python scripts/gen_mobile_fixtures.py [--io-dtype float32|float64] \
           [OUTDIR (default tests/fixtures/mobile)]
Made with torch 2.15.0+cu132, torchvision 0.29.2+cu132, safetensors 0.8.0, pillow 13.0.0
(the versions are also written into manifest.json '_about').
Needs: torch, torchvision, safetensors, pillow.
"""
import argparse
import copy
import json
import math
import os

import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file
from torch.utils.flop_counter import FlopCounterMode
from torchvision.transforms import v2 as T

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
IMAGES = os.path.join(ROOT, "assets")  # chelsea.png, the same file as shared/images

# name: (input shape, seed, ReLU6 gain on the BN weights before a ReLU6)
MODELS = {
    "mobilenet_v2": ((2, 3, 96, 80), 51, 1.5),
    "shufflenet_v2_x1_0": ((2, 3, 96, 80), 52, 1.0),
}
MOBILENET_TAPS = [1, 3, 6, 13, 17, 18]
ACT_SHIFT = 1.0  # added to the bias of each BN that a ReLU/ReLU6 follows (times the gain)
RESIDUAL_GAIN = 0.5  # on the weight of the last BN of MobileNetV2's skip-connected blocks


def photo(h, w):
    """gen_fixtures.photo: torchvision's ImageNet eval transform (resize the shorter side to
    256*h/224, centre crop, normalise) applied to the CC0 photograph chelsea.png."""
    img = Image.open(os.path.join(IMAGES, "chelsea.png")).convert("RGB")
    tf = T.Compose([T.PILToTensor(), T.Resize(int(round(256 * min(h, w) / 224)), antialias=True),
                    T.CenterCrop((h, w)), T.ToDtype(torch.float32, scale=True),
                    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    return tf(img)


def tap_modules(name, net):
    """(tap name, module) pairs, in forward order."""
    if name.startswith("mobilenet"):
        return [("stem", net.features[0])] + [(f"features.{i}", net.features[i])
                                              for i in MOBILENET_TAPS]
    return [("stem", net.maxpool)] + [(n, getattr(net, n))
                                      for n in ("stage2", "stage3", "stage4", "conv5")]


def classifier(net):
    return net.classifier[1] if hasattr(net, "classifier") else net.fc


def activations(net):
    """{BatchNorm: the ReLU / ReLU6 that directly follows it} (the BNs not in it are linear)."""
    out = {}
    for m in net.modules():
        kids = list(m.children())
        for a, b in zip(kids, kids[1:]):
            if isinstance(a, torch.nn.BatchNorm2d) and isinstance(b, (torch.nn.ReLU, torch.nn.ReLU6)):
                out[a] = b
    return out


def residual_projections(net):
    """The last BN of each MobileNetV2 block with a skip connection (x + conv(x))."""
    return {list(m.conv.children())[-1] for m in net.modules() if getattr(m, "use_res_connect", False)}


def randomise(net, gen, x, relu6_gain):
    """BN weight/bias random, running statistics calibrated on x (see the module docstring)."""
    act = activations(net)
    res = residual_projections(net)

    def calibrate(m, inputs):
        t = inputs[0].detach()
        c = m.num_features
        mu = t.mean(dim=(0, 2, 3))
        var = t.var(dim=(0, 2, 3), unbiased=False).clamp_min(1e-2)
        gain = relu6_gain if isinstance(act.get(m), torch.nn.ReLU6) else RESIDUAL_GAIN if m in res else 1.0
        m.weight.data = (torch.rand(c, generator=gen) + 0.5) * gain
        m.bias.data = torch.randn(c, generator=gen) * 0.2 + (ACT_SHIFT * gain if m in act else 0.0)
        m.running_mean.data = mu + 0.2 * var.sqrt() * torch.randn(c, generator=gen)
        m.running_var.data = var * (torch.rand(c, generator=gen) * 1.5 + 0.5)
        m.num_batches_tracked.fill_(1000)

    hooks = [m.register_forward_pre_hook(calibrate) for m in net.modules()
             if isinstance(m, torch.nn.BatchNorm2d)]
    fc = classifier(net)
    fc.weight.data = torch.randn(fc.weight.shape, generator=gen) / math.sqrt(fc.in_features)
    fc.bias.data = torch.randn(fc.bias.shape, generator=gen) * 0.1
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()


def relu6_clip_fraction(net, x):
    """Fraction of ReLU6 inputs above 6 (printed only, to show the clamp is exercised)."""
    above, total = [0], [0]

    def count(m, inputs):
        above[0] += (inputs[0] > 6).sum().item()
        total[0] += inputs[0].numel()

    hooks = [m.register_forward_pre_hook(count) for m in net.modules()
             if isinstance(m, torch.nn.ReLU6)]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    return above[0] / total[0] if total[0] else 0.0


def tap_errors(name, net, x, ref, dtype):
    """Relative error of each tap and the logits of a copy of net run in dtype, against ref."""
    net = copy.deepcopy(net).to(dtype)
    outs = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: outs.__setitem__(n, o.double()))
             for n, m in tap_modules(name, net)]
    with torch.no_grad():
        outs["logits"] = net(x.to(dtype)).double()
    for h in hooks:
        h.remove()
    return {n: ((outs[n] - r).norm() / r.norm()).item() for n, r in ref.items()}


def generate(name, shape, seed, relu6_gain, out, io_dtype):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = torchvision.models.get_model(name, weights=None)
    net.eval()
    x = torch.randn(shape, generator=gen)
    x[0] = photo(shape[2], shape[3])
    randomise(net, gen, x, relu6_gain)
    # Round every floating tensor to float16 once; the reference uses exactly these values.
    with torch.no_grad():
        for t in list(net.parameters()) + [b for b in net.buffers() if b.is_floating_point()]:
            t.copy_(t.half().float())
            assert torch.isfinite(t).all(), f"{name}: a tensor overflows float16"
    sd = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in net.state_dict().items()}

    net64 = net.double()
    outs = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: outs.__setitem__(n, o.detach().clone()))
             for n, m in tap_modules(name, net64)]
    with torch.no_grad():
        y64 = net64(x.double())
    for h in hooks:
        h.remove()
    taps = [n for n, _ in tap_modules(name, net64)]
    dt = torch.float64 if io_dtype == "float64" else torch.float32
    io = {"input": x.contiguous(), "logits": y64.to(dt).contiguous()}
    io.update({n: outs[n].to(dt).contiguous() for n in taps})

    net32 = net64.float()
    with torch.no_grad():
        y32 = net32(x)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        net32(torch.zeros(1, *shape[1:]))
    rel = ((y32.double() - y64).norm() / y64.norm()).item()
    assert rel < 1e-5, f"{name}: torch float32 vs float64 rel err {rel:.2e}"
    save_file(sd, os.path.join(out, f"{name}.safetensors"))
    save_file(io, os.path.join(out, f"{name}.io.safetensors"))
    entry = dict(config=dict(kind="torchvision", name=name), input_shape=list(shape), seed=seed,
                 params=sum(p.numel() for p in net32.parameters()),
                 macs_per_image=fc.get_total_flops() // 2, taps=taps,
                 weights_dtype="float16", logits_norm=y64.norm().item(), torch_float32_rel_err=rel)
    stds = " ".join(f"{n}={outs[n].std().item():.2f}" for n in taps)
    errs = {dt: tap_errors(name, net32, x, {**outs, "logits": y64}, dt) for dt in (torch.float32, torch.float16)}
    errs = " ".join(f"{n}={errs[torch.float32][n]:.1e}/{errs[torch.float16][n]:.1e}" for n in taps + ["logits"])
    print(f"{name}: params={entry['params']} macs={entry['macs_per_image']} "
          f"|logits|={entry['logits_norm']:.3g} torch f32 rel err={rel:.2e}\n  tap std: {stds}"
          f"\n  torch float32/float16 rel err: {errs}"
          + (f"\n  ReLU6 inputs above 6: {relu6_clip_fraction(net32, x):.2%}"
             if name.startswith("mobilenet") else ""))
    return entry


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir", nargs="?", default=os.path.join(ROOT, "tests", "fixtures", "mobile"))
    ap.add_argument("--io-dtype", choices=["float32", "float64"], default="float32")
    args = ap.parse_args()
    os.makedirs(args.outdir, exist_ok=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    manifest = {}
    for name, (shape, seed, gain) in MODELS.items():
        manifest[name] = generate(name, shape, seed, gain, args.outdir, args.io_dtype)
    manifest["_about"] = (f"Fixtures made by gen_mobile_fixtures.py with torch {torch.__version__}, "
                          f"torchvision {torchvision.__version__}; logits and taps are the float64 "
                          f"forward pass of the float16-rounded weights, stored as {args.io_dtype}.")
    with open(os.path.join(args.outdir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
