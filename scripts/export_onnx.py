#!/usr/bin/env python3
"""Exports torchvision's regnet_y_400mf with a state_dict (safetensors) to ONNX, for the race
against ONNX Runtime Web (scripts/web bench): both engines run the same weights.

    python3 scripts/export_onnx.py WEIGHTS.safetensors OUT.onnx

Batch is dynamic; opset 17; the graph is checked with onnx.checker, and ONNX Runtime's CPU
output on a random batch is compared with torch's (printed).
"""
import sys

import numpy as np
import onnx
import onnxruntime
import torch
import torchvision
from safetensors.torch import load_file


def main(weights: str, out: str) -> None:
    model = torchvision.models.regnet_y_400mf()
    model.load_state_dict(load_file(weights))
    model.eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    torch.onnx.export(
        model, (x,), out, input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17,
        dynamo=False,
    )
    onnx.checker.check_model(onnx.load(out))
    with torch.no_grad():
        ref = model(x).numpy()
    got = onnxruntime.InferenceSession(out).run(None, {"input": x.numpy()})[0]
    rel = np.linalg.norm(got - ref) / np.linalg.norm(ref)
    print(f"wrote {out}; ONNX Runtime CPU vs torch: rel err {rel:.2e}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
