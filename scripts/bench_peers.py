#!/usr/bin/env python3
"""Times the peers of regnet-wgpu's CPU backend on the same model, batch and size:
PyTorch CPU eager and ONNX Runtime CPU (the model exported from torchvision).

Prints one JSON object per line per (backend, batch), with the keys
`backend` ("pytorch-cpu" / "onnxruntime-cpu"), `version`, `adapter` (the CPU's model name
from /proc/cpuinfo), `model`, `batch`, `size`, `precision` ("f32"), `median_ms`, `min_ms`,
`max_ms`, `iters`, `warmup`, `threads`, `images_per_s` and `gflops`
(2 x MACs x batch / median time, in GFLOP/s; MACs counted by forward hooks on Conv2d and
Linear, weight.numel() x output H x W, which is torchvision's published count:
401,842,848 per 224x224 image for regnet_y_400mf). Weights are random (timing only).

Needs: python3 with torch and torchvision (Debian's python3-torch 1.13 and
python3-torchvision 0.14 work) and onnxruntime (torch's exporter does not need the `onnx`
package). Tested with Debian's python 3.11.2, torch 1.13.0, torchvision 0.14.1, numpy 1.24.2
and onnxruntime 1.32.0 from PyPI:

    echo numpy==1.24.2 > /tmp/keep-numpy.txt   # keep the system's numpy
    /usr/bin/python3 -m pip install --break-system-packages -c /tmp/keep-numpy.txt onnxruntime

Run it with the same python:

    /usr/bin/python3 scripts/bench_peers.py --model regnet_y_400mf --batch 1,8 \\
        --size 224 --iters 20 --warmup 3 --threads 2

`--backends pytorch-cpu,onnxruntime-cpu` picks which peers to time (both by default).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import torch
import torchvision


# pycls' RegNets that torchvision has no builder for (its zoo stops at the ones it trained):
# depth, w_0, w_a, w_m, group width, SE ratio, as src/config/zoo.rs has them. They are built
# with torchvision's own RegNet class, as its named builders are.
PYCLS_ONLY = {
    "regnet_x_200mf": (13, 24, 36.44, 2.49, 8, None),
    "regnet_x_600mf": (16, 48, 36.97, 2.24, 24, None),
    "regnet_x_4_0gf": (23, 96, 38.65, 2.43, 40, None),
    "regnet_x_6_4gf": (17, 184, 60.83, 2.07, 56, None),
    "regnet_x_12gf": (19, 168, 73.36, 2.37, 112, None),
    "regnet_y_200mf": (13, 24, 36.44, 2.49, 8, 0.25),
    "regnet_y_600mf": (15, 48, 32.54, 2.32, 16, 0.25),
    "regnet_y_4_0gf": (22, 96, 31.41, 2.24, 64, 0.25),
    "regnet_y_6_4gf": (25, 112, 33.22, 2.27, 72, 0.25),
    "regnet_y_12gf": (19, 168, 73.36, 2.37, 112, 0.25),
}


def build_model(name):
    """torchvision's model, timm's ReXNet, or a pycls RegNet through torchvision's class."""
    if name.startswith("rexnet"):
        import timm  # timm's ReXNet, as the library builds it

        return timm.create_model(name, pretrained=False).eval()
    if name in PYCLS_ONLY:
        from functools import partial

        from torchvision.models.regnet import BlockParams, RegNet

        d, w0, wa, wm, g, se = PYCLS_ONLY[name]
        params = BlockParams.from_init_params(d, w0, wa, wm, g, se_ratio=se)
        norm = partial(torch.nn.BatchNorm2d, eps=1e-05, momentum=0.1)
        return RegNet(params, norm_layer=norm).eval()
    return getattr(torchvision.models, name)().eval()


def cpu_name():
    """The CPU's model name, as /proc/cpuinfo spells it (platform's name elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def count_macs(model, size):
    """Multiply-adds of one `size` x `size` image: Conv2d and Linear weights x output pixels."""
    total = 0

    def hook(module, _inputs, output):
        nonlocal total
        pixels = output.shape[2] * output.shape[3] if output.dim() == 4 else 1
        total += module.weight.numel() * pixels

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    ]
    with torch.inference_mode():
        model(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return total


def time_calls(fn, iters, warmup):
    """Runs `fn` `warmup` times untimed, then `iters` times; the times in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def record(backend, version, args, batch, times, macs, adapter):
    """The JSON line of one (backend, batch) measurement."""
    med = statistics.median(times)
    return {
        "backend": backend,
        "version": version,
        "adapter": adapter,
        "model": args.model,
        "batch": batch,
        "size": args.size,
        "precision": "f32",
        "median_ms": round(med, 4),
        "min_ms": round(min(times), 4),
        "max_ms": round(max(times), 4),
        "iters": len(times),
        "warmup": args.warmup,
        "threads": args.threads,
        "images_per_s": round(batch * 1e3 / med, 3),
        "gflops": round(2.0 * macs * batch / (med * 1e-3) / 1e9, 3),
    }


def bench_torch(model, x, args):
    """PyTorch eager on the CPU with `args.threads` intra-op threads."""
    with torch.inference_mode():
        return time_calls(lambda: model(x), args.iters, args.warmup)


def bench_ort(model, x, args, tmpdir):
    """ONNX Runtime's CPU provider on the model exported for this batch (static shapes)."""
    import onnxruntime as ort

    path = os.path.join(tmpdir, f"{args.model}_b{x.shape[0]}.onnx")
    with torch.inference_mode():
        torch.onnx.export(
            model, x, path, opset_version=args.opset, input_names=["x"], output_names=["y"]
        )
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    feed = {"x": x.numpy()}
    return time_calls(lambda: sess.run(None, feed), args.iters, args.warmup)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="regnet_y_400mf",
                    help="a torchvision model name, a timm rexnet_*, or any of pycls' RegNets")
    ap.add_argument("--batch", default="1,8", help="comma-separated batch sizes")
    ap.add_argument("--size", type=int, default=224, help="input height and width")
    ap.add_argument("--iters", type=int, default=20, help="timed runs per measurement")
    ap.add_argument("--warmup", type=int, default=3, help="untimed runs before them")
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads of both peers")
    ap.add_argument("--opset", type=int, default=17, help="ONNX opset of the export (13-17)")
    ap.add_argument(
        "--backends",
        default="pytorch-cpu,onnxruntime-cpu",
        help="comma-separated subset of pytorch-cpu,onnxruntime-cpu",
    )
    args = ap.parse_args()
    batches = [int(b) for b in args.batch.split(",") if b]
    backends = [b for b in args.backends.split(",") if b]
    unknown = set(backends) - {"pytorch-cpu", "onnxruntime-cpu"}
    if unknown or args.iters < 1 or args.warmup < 0 or not batches:
        ap.error(f"bad arguments (unknown backends: {sorted(unknown)})")

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(args.model)
    macs = count_macs(model, args.size)
    adapter = cpu_name()
    with tempfile.TemporaryDirectory() as tmpdir:
        for batch in batches:
            x = torch.randn(batch, 3, args.size, args.size)
            for backend in backends:
                if backend == "pytorch-cpu":
                    times, version = bench_torch(model, x, args), torch.__version__
                else:
                    import onnxruntime

                    times = bench_ort(model, x, args, tmpdir)
                    version = onnxruntime.__version__
                line = record(backend, version, args, batch, times, macs, adapter)
                print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
