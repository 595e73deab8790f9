#!/usr/bin/env python3
"""PyTorch CPU on the shapes of benches/ops.rs (keep the two lists equal), for BENCHMARKS.md.

Each op runs in float32 under torch.inference_mode() with `--threads` intra-op threads (default
2, this machine's cores), `--warmup` untimed runs, then `--runs` timed ones; prints one JSON
line per op with the median and best in milliseconds and GFLOP/s (2 x multiply-adds, as
criterion's throughput in the Rust bench).

Usage: /path/to/python scripts/bench_ops_torch.py [--threads 2] [--runs 50] [--warmup 10]
Needs: torch, torchvision.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
import torchvision


def cases():
    g = torch.Generator().manual_seed(0)
    r = lambda *s, scale=1.0: (torch.rand(*s, generator=g) * 2 - 1) * scale
    x64 = r(1, 64, 56, 56)
    w3 = r(64, 64, 3, 3, scale=1 / (64 * 9) ** 0.5)
    x17 = r(1, 128, 17, 17)
    w17 = r(128, 128, 1, 7, scale=1 / (128 * 7) ** 0.5)
    off = r(1, 18, 56, 56, scale=2.0)
    x112 = r(1, 64, 112, 112)
    x116 = r(1, 116, 28, 28)
    x256 = r(1, 256, 28, 28)
    mlp0, b0 = r(16, 256, scale=1 / 16), r(16)
    mlp2, b2 = r(256, 16, scale=1 / 4), r(256)
    sw, sb = r(1, 2, 7, 7, scale=1 / 7), r(1)

    def cbam(x):
        mlp = lambda v: F.linear(F.relu(F.linear(v, mlp0, b0)), mlp2, b2)
        a = torch.sigmoid(mlp(x.mean((2, 3))) + mlp(x.amax((2, 3))))[:, :, None, None]
        x = x * a
        s = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        return x * torch.sigmoid(F.conv2d(s, sw, sb, padding=3))

    x512 = r(1, 512, 14, 14)
    bn = [r(256), r(256, scale=0.5) + 1.0, r(256), r(256)]  # mean, var, weight, bias
    se = torchvision.ops.SqueezeExcitation(256, 64).eval()

    macs = lambda w, h, wd: w.numel() * h * wd
    return [
        ("conv2d_3x3_64_56", lambda: F.conv2d(x64, w3, padding=1), macs(w3, 56, 56)),
        ("conv2d_3x3_dilation2_64_56", lambda: F.conv2d(x64, w3, padding=2, dilation=2), macs(w3, 56, 56)),
        ("conv2d_1x7_128_17", lambda: F.conv2d(x17, w17, padding=(0, 3)), macs(w17, 17, 17)),
        ("deform_conv2d_3x3_64_56",
         lambda: torchvision.ops.deform_conv2d(x64, off, w3, padding=(1, 1)), macs(w3, 56, 56)),
        ("max_pool2d_3s2_64_112", lambda: F.max_pool2d(x112, 3, 2, 1), 0),
        ("avg_pool2d_3s2_ceil_64_112", lambda: F.avg_pool2d(x112, 3, 2, 1, ceil_mode=True), 0),
        ("adaptive_avg_pool2d_7_512_14", lambda: F.adaptive_avg_pool2d(x512, 7), 0),
        ("batch_norm_256_28", lambda: F.batch_norm(x256, *bn, training=False), 0),
        ("squeeze_excitation_256_28", lambda: se(x256), 0),
        ("channel_shuffle_g2_116_28", lambda: F.channel_shuffle(x116, 2), 0),
        ("cbam_256_28", lambda: cbam(x256), 0),
        ("relu6_256_28", lambda: F.relu6(x256), 0),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with torch.inference_mode():
        for name, f, macs in cases():
            for _ in range(a.warmup):
                f()
            times = []
            for _ in range(a.runs):
                t = time.perf_counter()
                f()
                times.append((time.perf_counter() - t) * 1e3)
            med = statistics.median(times)
            print(json.dumps({
                "engine": "pytorch-cpu", "torch": torch.__version__,
                "torchvision": torchvision.__version__, "threads": a.threads, "op": name,
                "median_ms": round(med, 4), "best_ms": round(min(times), 4),
                "gflops": round(2 * macs / med / 1e6, 2) if macs else None,
            }))


if __name__ == "__main__":
    main()
