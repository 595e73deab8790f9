#!/usr/bin/env python3
"""Convert a torchvision RegNet checkpoint (.pth) to the safetensors file regnet-wgpu loads.

regnet-wgpu reads a ``torch.save(state_dict)`` checkpoint directly (``--weights model.pth``,
``Weights::load``), so this script is only for those who want safetensors files, or whose
checkpoint is not a bare state_dict (a training checkpoint, a whole pickled model, float64
tensors), which the direct loader refuses. It writes torchvision's own state_dict names
(``stem.0.weight``, ``trunk_output.block1.block1-0.f.a.1.running_var``, ``fc.bias``, ...) in
F32, F16 or BF16:

* it loads the checkpoint on the CPU with ``torch.load(..., weights_only=True)`` (a plain
  ``torch.load`` on a torch too old for that argument; ``--trust`` for a full unpickling of a
  file you trust), accepting a bare state_dict, a dict that holds one under ``"state_dict"``
  or ``"model"`` (training scripts' checkpoints), or (with ``--trust``) a whole pickled model;
* strips a leading ``module.`` from every name (checkpoints saved from DataParallel /
  DistributedDataParallel);
* makes every tensor contiguous and casts floating-point tensors to ``--dtype`` (default
  f32, so a float64 checkpoint, which the loader refuses, comes out F32; f16 and bf16 halve
  the file); integer buffers such as BatchNorm's ``num_batches_tracked`` are kept as they
  are (the loader ignores them);
* saves with ``safetensors.torch.save_file``.

With ``--model NAME`` it instead builds ``torchvision.models.get_model(NAME, weights="DEFAULT")``
and saves that model's state_dict. This downloads the pretrained weights, so it needs network
access (and torchvision >= 0.14); on a machine without network, download the .pth elsewhere
(torchvision's URLs are listed in its documentation) and pass the file.

Requirements::

    pip install torch torchvision safetensors

Examples::

    # A checkpoint on disk (e.g. torchvision's regnet_y_400mf-e6988f5f.pth):
    python3 scripts/pth_to_safetensors.py regnet_y_400mf-e6988f5f.pth regnet_y_400mf.safetensors

    # Half the size, F16 (the loader widens to f32; logits move by ~5e-4 relative; bf16 ~4e-3):
    python3 scripts/pth_to_safetensors.py regnet_y_400mf-e6988f5f.pth y400.f16.safetensors --dtype f16

    # Straight from torchvision's pretrained weights (downloads them):
    python3 scripts/pth_to_safetensors.py --model regnet_y_400mf regnet_y_400mf.safetensors

    # Then, in Rust:
    #   let plan = Plan::new(&zoo::get("regnet_y_400mf")?, 224, 224)?;
    #   let weights = Weights::load("regnet_y_400mf.safetensors", &plan)?;
"""

import argparse
import sys
from collections import OrderedDict

DTYPES = ("f32", "f16", "bf16")


def load_checkpoint(path, trust=False):
    """Loads a .pth on the CPU, without running pickled code unless `trust`."""
    import torch

    if trust:
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except TypeError:
            return torch.load(path, map_location="cpu")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except TypeError:
        # A torch too old for weights_only (it came in 1.13): a plain load, which unpickles
        # arbitrary objects, so only use it on checkpoints you trust.
        return torch.load(path, map_location="cpu")
    except FileNotFoundError:
        raise SystemExit(f"{path}: no such file")
    except Exception as e:  # pickle.UnpicklingError and friends
        raise SystemExit(
            f"{path}: cannot load with weights_only=True ({type(e).__name__}: {e}).\n"
            "Whole pickled models (torch.save(model, ...)) and checkpoints holding other Python "
            "objects need a full unpickling: if you trust the file, rerun with --trust."
        )


def find_state_dict(obj, path):
    """The state_dict in a checkpoint: the object itself, or its "state_dict" / "model"."""
    import torch

    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if not isinstance(obj, dict):
        raise SystemExit(f"{path}: expected a state_dict (a dict of tensors), got {type(obj).__name__}")
    for key in ("state_dict", "model"):
        inner = obj.get(key)
        if isinstance(inner, torch.nn.Module):
            return inner.state_dict()
        if isinstance(inner, dict) and inner and all(torch.is_tensor(v) for v in inner.values()):
            return inner
    tensors = {k: v for k, v in obj.items() if torch.is_tensor(v)}
    if not tensors:
        raise SystemExit(
            f"{path}: no tensors found (top-level keys: {', '.join(map(str, list(obj)[:10]))})"
        )
    skipped = [k for k in obj if not torch.is_tensor(obj[k])]
    if skipped:
        print(f"note: skipping non-tensor entries: {', '.join(map(str, skipped[:10]))}", file=sys.stderr)
    return tensors


def prepare(state_dict, dtype):
    """Strips `module.`, casts floating tensors to `dtype`, makes everything contiguous."""
    import torch

    target = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[dtype]
    out = OrderedDict()
    for name, t in state_dict.items():
        if name.startswith("module."):
            name = name[len("module."):]
        if name in out:
            raise SystemExit(f"tensor `{name}` appears twice (with and without `module.`)")
        t = t.detach().cpu()
        if t.is_floating_point():
            t = t.to(target)
        # save_file refuses views that share storage or are not contiguous: copy each tensor.
        out[name] = t.contiguous().clone()
    return out


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Convert a torchvision RegNet checkpoint to safetensors for regnet-wgpu.",
        epilog="Needs: pip install torch torchvision safetensors. "
        "--model downloads torchvision's pretrained weights (network access).",
    )
    p.add_argument("input", nargs="?", help="checkpoint (.pth / .pt); omit with --model")
    p.add_argument("output", help="safetensors file to write")
    p.add_argument("--dtype", choices=DTYPES, default="f32", help="dtype of floating tensors (default: f32)")
    p.add_argument(
        "--model",
        metavar="NAME",
        help='build torchvision.models.get_model(NAME, weights="DEFAULT") instead of reading a file '
        "(downloads the weights)",
    )
    p.add_argument(
        "--trust",
        action="store_true",
        help="load with weights_only=False, which runs the file's pickled code: only for files "
        "you trust (needed for whole pickled models, and for checkpoints holding objects "
        "torch's weights-only loader refuses, e.g. floats in torch 1.13)",
    )
    args = p.parse_args(argv)
    if (args.input is None) == (args.model is None):
        p.error("give either IN.pth OUT.safetensors or --model NAME OUT.safetensors")

    try:
        from safetensors.torch import save_file
    except ImportError:
        raise SystemExit("the safetensors package is missing: pip install safetensors")

    if args.model:
        import torchvision

        try:
            model = torchvision.models.get_model(args.model, weights="DEFAULT")
        except (OSError, RuntimeError) as e:  # urllib's URLError is an OSError
            raise SystemExit(
                f"cannot get torchvision's pretrained {args.model} ({type(e).__name__}: {e}).\n"
                "--model downloads the weights and needs network access; without it, download "
                "the .pth elsewhere and pass the file instead."
            )
        state_dict = model.state_dict()
        source = f"torchvision {args.model} (DEFAULT weights)"
    else:
        state_dict = find_state_dict(load_checkpoint(args.input, args.trust), args.input)
        source = args.input

    tensors = prepare(state_dict, args.dtype)
    save_file(tensors, args.output, metadata={"format": "pt", "source": str(source)})
    n = sum(t.numel() for t in tensors.values())
    print(f"{args.output}: {len(tensors)} tensors, {n} values ({args.dtype}) from {source}")


if __name__ == "__main__":
    main()
