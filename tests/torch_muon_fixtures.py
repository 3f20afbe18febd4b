#!/usr/bin/python3
"""Writes tests/fixtures/muon.safetensors: the Muon optimizer of airbench94_muon.py in float64 PyTorch.

  ns.<k>.input, ns.<k>.output        [O,I,KH,KW]: zeropower_via_newtonschulz5 of input.reshape(O, -1) (float64
                                     instead of the recipe's bfloat16), reshaped back; includes O > I*KH*KW
  muon.<k>.p0, g1, g2                [O,I,KH,KW]: the weight before, the gradients of two steps
  muon.<k>.buf1, p1, buf2, p2        momentum buffer and weight after step 1 and after step 2
  muon.<k>.hyper                     [4]: lr of step 1, lr of step 2, momentum, nesterov (1 or 0)

Every input is a float32 value (drawn in float64, rounded to float32) so a float32 implementation sees exactly
the same inputs; draws happen in a fixed order from one seeded generator. It is one of tests/torch_fixtures.py's
fixtures (which pins the reference BLAS that the float64 products depend on): this script hands over to it.

  /usr/bin/python3 tests/torch_muon_fixtures.py           write the file (= torch_fixtures.py muon)
  /usr/bin/python3 tests/torch_muon_fixtures.py --check   regenerate every fixture into a temporary folder and
                                                          compare bytes (= torch_fixtures.py --check)
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

if __name__ == "__main__":
    if sys.argv[1:] not in ([], ["--check"]):
        sys.exit("usage: torch_muon_fixtures.py [--check]")
    script = os.path.join(HERE, "torch_fixtures.py")
    os.execv(sys.executable, [sys.executable, script, *(sys.argv[1:] or ["muon"])])

import torch  # noqa: E402

sys.path.insert(0, HERE)
from torch_fixtures import write_safetensors  # noqa: E402

NAME = "muon.safetensors"
NS_SHAPES = [(16, 8, 3, 3), (40, 4, 3, 3), (64, 24, 3, 3), (7, 5, 1, 1), (12, 3, 3, 3), (30, 3, 3, 3)]
# (shape, lr per step, momentum, nesterov): the recipe's Muon(lr=0.24, momentum=0.6, nesterov=True) and variants
MUON_CASES = [
    ((16, 8, 3, 3), (0.24, 0.2), 0.6, True),
    ((40, 4, 3, 3), (0.24, 0.2), 0.6, True),
    ((30, 3, 3, 3), (0.1, 0.05), 0.9, False),
    ((32, 16, 3, 3), (0.24, 0.24), 0.6, True),
]


def zeropower_via_newtonschulz5(G, steps=3, eps=1e-7):
    """The recipe's function without the bfloat16 cast (and without torch.compile)."""
    assert G.ndim == 2
    a, b, c = (3.4445, -4.7750, 2.0315)
    X = G.clone()
    X /= X.norm() + eps
    if G.size(0) > G.size(1):
        X = X.T
    for _ in range(steps):
        A = X @ X.T
        B = b * A + c * A @ A
        X = a * X + B @ X
    if G.size(0) > G.size(1):
        X = X.T
    return X


def muon_step(p, g, buf, lr, momentum, nesterov):
    """Muon.step of the recipe for one parameter, in place on p and buf."""
    buf.mul_(momentum).add_(g)
    g = g.add(buf, alpha=momentum) if nesterov else buf
    p.mul_(len(p) ** 0.5 / p.norm())
    update = zeropower_via_newtonschulz5(g.reshape(len(g), -1)).view(g.shape)
    p.add_(update, alpha=-lr)


def fixture(out_dir):
    """Writes out_dir/muon.safetensors."""
    gen = torch.Generator().manual_seed(20240616)

    def draw(shape, scale=1.0):
        return (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).float().double()

    out = {}
    for k, shape in enumerate(NS_SHAPES):
        x = draw(shape)
        out[f"ns.{k}.input"] = x
        out[f"ns.{k}.output"] = zeropower_via_newtonschulz5(x.reshape(shape[0], -1)).reshape(shape)
    for k, (shape, lrs, momentum, nesterov) in enumerate(MUON_CASES):
        fan_in = shape[1] * shape[2] * shape[3]
        p = draw(shape, fan_in**-0.5)
        out[f"muon.{k}.p0"] = p.clone()
        buf = torch.zeros_like(p)
        for s, lr in enumerate(lrs, start=1):
            g = draw(shape, 0.01)
            out[f"muon.{k}.g{s}"] = g
            muon_step(p, g, buf, lr, momentum, nesterov)
            out[f"muon.{k}.buf{s}"] = buf.clone()
            out[f"muon.{k}.p{s}"] = p.clone()
        out[f"muon.{k}.hyper"] = torch.tensor([lrs[0], lrs[1], momentum, float(nesterov)], dtype=torch.float64)
    meta = {
        "description": "float64 Muon (airbench94_muon.py): Newton-Schulz outputs and two optimizer steps per case",
        "ns_count": len(NS_SHAPES),
        "muon_count": len(MUON_CASES),
        "torch": torch.__version__,
    }
    write_safetensors(os.path.join(out_dir, NAME), out, meta)
