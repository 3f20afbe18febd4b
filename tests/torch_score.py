#!/usr/bin/python3
"""Scores weights exported by main.ts (--save-weights) with PyTorch: loads the safetensors into the recipe's
nn.Sequential built for the same widths with load_state_dict(strict=True), and prints the test accuracy.

  /usr/bin/python3 tests/torch_score.py WEIGHTS.safetensors --widths 16,32,32,32 [--tta 0|1|2] [--data-dir DIR]
"""

import argparse
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference_train import evaluate, load_cifar, make_net, normalize  # noqa: E402

DTYPES = {"F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64, "U8": np.uint8}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, h in header.items():
        a, b = h["data_offsets"]
        data = np.frombuffer(raw[8 + n + a : 8 + n + b], dtype=DTYPES[h["dtype"]]).reshape(h["shape"])
        out[name] = torch.from_numpy(data.copy())
    return out


def load_state_dict_file(net, path):
    """Loads a safetensors into net: every entry must match by name and shape, apart from BatchNorm's
    num_batches_tracked (not written by the TS ports), which may be absent."""
    state = read_safetensors(path)
    expected = net.state_dict()
    shapes = [f"{k} {list(v.shape)} (net: {list(expected[k].shape)})" for k, v in state.items()
              if k in expected and v.shape != expected[k].shape]
    if shapes:
        raise SystemExit(f"{path}: shape mismatch (check --widths): {', '.join(shapes)}")
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise SystemExit(f"state dict mismatch: missing {missing}, unexpected {unexpected}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights")
    p.add_argument("--widths", required=True)
    p.add_argument("--tta", type=int, default=0, choices=[0, 1, 2])
    p.add_argument("--data-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "cifar-10-batches-bin"))
    args = p.parse_args()
    torch.set_num_threads(2)
    net = make_net(tuple(int(w) for w in args.widths.split(",")))
    net.load_state_dict(read_safetensors(args.weights), strict=True)
    net.eval()
    _, _, test_images, test_labels = load_cifar(args.data_dir)
    acc = evaluate(net, normalize(test_images.float() / 255), test_labels, tta_level=args.tta, chunk=500)
    print(json.dumps({"weights": args.weights, "widths": args.widths, "tta_level": args.tta, "test_acc": acc}))


if __name__ == "__main__":
    main()
