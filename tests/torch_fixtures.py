#!/usr/bin/python3
"""Generates the PyTorch reference fixtures under tests/fixtures/ (run with /usr/bin/python3 from anywhere):

  net_small.safetensors  forward/backward/2 SGD steps of the BatchNorm-free airbench94 net at widths 8,16,16
  net_deep.safetensors   the same for a four-block net, widths 8,8,12,16 (global pool MaxPool2d(1), head 8.weight)
  eigh.safetensors       symmetric matrices and their torch.linalg.eigh eigenvalues (float64)
  schedule.json          triangle lr schedule, alpha (lookahead) schedule and decoupled hyperparameters

and, through tests/torch_bn.py's fixture(), net_bn.safetensors (the BatchNorm net), and through
tests/torch_muon_fixtures.py's, muon.safetensors (the Muon optimizer), and through tests/torch_muon_train.py's
write_fixture(), net_muon.safetensors (two training steps of the airbench94_muon net and optimizers).

safetensors files are written by hand (struct + json); no safetensors package is needed. Every random draw is
seeded and made in a fixed order, so on one machine a regeneration is byte-for-byte the committed file:

  /usr/bin/python3 tests/torch_fixtures.py [NAME...]   rewrite the fixtures (all, or e.g. net_deep)
  /usr/bin/python3 tests/torch_fixtures.py --check     regenerate all into a temporary folder and compare
                                                       bytes with the committed ones (exit 1 on a difference)
"""

import glob
import json
import math
import os
import shutil
import struct
import sys
import tempfile


def reference_blas_dirs():
    """Debian's reference (netlib) BLAS and LAPACK, which python3-torch pulls in (libblas3, liblapack3)."""
    return sorted(glob.glob("/usr/lib/*-linux-gnu/blas")) + sorted(glob.glob("/usr/lib/*-linux-gnu/lapack"))


def pin_reference_blas():
    """torch's float64 matmul and eigh call the system BLAS/LAPACK, whichever Debian's alternatives point to;
    installing OpenBLAS (e.g. with python3-scipy) changes the last bits of eigh.safetensors. The fixtures are
    made with the reference libraries: the script re-executes itself once with them first on the library path
    (the dynamic loader reads LD_LIBRARY_PATH only at start)."""
    dirs = reference_blas_dirs()
    path = os.environ.get("LD_LIBRARY_PATH", "")
    if not dirs or path.split(":")[: len(dirs)] == dirs:
        return
    env = dict(os.environ, LD_LIBRARY_PATH=":".join(dirs + ([path] if path else [])))
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]], env)


if __name__ == "__main__":
    pin_reference_blas()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference_train import alpha_schedule_fn, decoupled_hyperparameters, make_net, triangle  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")

DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.int32: "I32", torch.int64: "I64", torch.uint8: "U8"}


def write_safetensors(path, tensors, metadata=None):
    """tensors: dict name -> torch tensor (dtype in DTYPES). Written in name order, atomically."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        raw = t.numpy().astype(t.numpy().dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)
    print(f"wrote {path} ({os.path.getsize(path)} bytes, {len(tensors)} tensors)")


# ----------------------------------------------------------------------------------------------------------


def net_fixture(out_dir, widths=(8, 16, 16), filename="net_small.safetensors"):
    n = 10
    lr, momentum, weight_decay, label_smoothing = 0.05, 0.85, 0.02, 0.2
    torch.manual_seed(1234)
    net = make_net(widths)  # float32, default init (uniform +-1/sqrt(fan_in), zero biases, dirac)
    with torch.no_grad():
        # Perturb so that every path is exercised: whitening weight and all biases random, and small noise on
        # the 3x3 conv weights (which are partly or entirely dirac identities after the default init).
        net[0].weight.copy_(torch.randn_like(net[0].weight) * 0.5)
        for name, p in net.named_parameters():
            if name.endswith(".bias"):
                p.copy_(torch.randn_like(p) * 0.1)
            elif name.endswith(".weight") and p.dim() == 4 and p.shape[-1] == 3:
                fan_in = p.shape[1] * 9
                p.add_(torch.randn_like(p) * (0.1 / fan_in**0.5))
    x32 = torch.randn(n, 3, 32, 32, dtype=torch.float32)
    labels = torch.randint(0, 10, (n,))
    params32 = {k: v.clone() for k, v in net.state_dict().items()}

    # All computation in float64 from the exact float32 values.
    net = net.double()
    x = x32.double()
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing, reduction="sum")
    trainable = [(k, p) for k, p in net.named_parameters() if p.requires_grad]
    assert [k for k, _ in net.named_parameters() if not _.requires_grad] == ["0.weight"]
    opt = torch.optim.SGD([p for _, p in trainable], lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=True)

    out = {"input": x32, "labels": labels.to(torch.int32)}
    for k, v in params32.items():
        out["param." + k] = v

    logits = net(x)
    loss = loss_fn(logits, labels)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    out["logits"] = logits.detach().float()
    out["loss"] = loss.detach().float().view(1)
    for k, p in trainable:
        out["grad." + k] = p.grad.detach().float()
    opt.step()
    for k, p in trainable:
        out["step1." + k] = p.detach().float()

    logits2 = net(x)
    loss2 = loss_fn(logits2, labels)
    opt.zero_grad(set_to_none=True)
    loss2.backward()
    out["logits2"] = logits2.detach().float()
    out["loss2"] = loss2.detach().float().view(1)
    opt.step()
    for k, p in trainable:
        out["step2." + k] = p.detach().float()

    # Sanity: the float32 forward agrees with the float64 one.
    net32 = make_net(widths)
    net32.load_state_dict(params32)
    with torch.no_grad():
        d = (net32(x32).double() - logits.detach()).abs().max().item()
    assert d < 1e-4, d

    meta = {
        "description": "BatchNorm-free airbench94 net, forward + backward + 2 SGD steps on one batch; computed in "
        "float64 from the stored float32 inputs/params, results stored as float32. step1./step2. hold the "
        "trainable params after each step (0.weight is frozen and unchanged). grad. = d loss / d param at "
        "param. (before step 1). logits2/loss2 are the forward at step1. params.",
        "widths": json.dumps(list(widths)),
        "state_dict": json.dumps(list(params32)),
        "batch": str(n),
        "lr": repr(lr),
        "momentum": repr(momentum),
        "weight_decay": repr(weight_decay),
        "nesterov": "true",
        "optimizer": "torch.optim.SGD(lr, momentum, weight_decay, nesterov=True): d=g+wd*p; buf=d (step 1) or "
        "momentum*buf+d; p-=lr*(d+momentum*buf)",
        "label_smoothing": repr(label_smoothing),
        "loss": "CrossEntropyLoss(label_smoothing=0.2, reduction='sum')",
        "scaling_factor": "1/9",
        "init": "default torch init (uniform +-1/sqrt(fan_in), zero conv biases, dirac_ on the first c_in filters of "
        "each conv), then 0.weight = randn*0.5, every bias = randn*0.1, 3x3 conv weights += randn*0.1/sqrt(fan_in)",
        "seed": "1234",
        "torch": torch.__version__,
    }
    write_safetensors(os.path.join(out_dir, filename), out, meta)
    print(f"  loss {loss.item():.6f} loss2 {loss2.item():.6f}")


# ----------------------------------------------------------------------------------------------------------


def eigh_fixture(out_dir):
    g = torch.Generator().manual_seed(42)
    mats = []

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    # 0: plain random symmetric
    b = randn(12, 12)
    mats.append((b + b.T) / 2)
    # 1: covariance of data with correlated columns
    x = randn(200, 12) @ randn(12, 12)
    mats.append(x.T @ x / 200)
    # 2: widely spread eigenvalues (1e-7 .. 1e2), random orthogonal basis
    q, _ = torch.linalg.qr(randn(12, 12))
    lam = torch.logspace(-7, 2, 12, dtype=torch.float64)
    a = q @ torch.diag(lam) @ q.T
    mats.append((a + a.T) / 2)
    # 3: repeated / near-degenerate eigenvalues and a negative one
    q, _ = torch.linalg.qr(randn(12, 12))
    lam = torch.tensor([-3.0, 1, 1, 1, 2, 2 + 1e-9, 5, 5, 7, 8, 9, 10], dtype=torch.float64)
    a = q @ torch.diag(lam) @ q.T
    mats.append((a + a.T) / 2)
    # 4: a real-looking 2x2x3 patch covariance of smooth random "images" (strongly correlated pixels/channels)
    img = randn(64, 1, 36, 36)
    img = F.avg_pool2d(img, 5, stride=1)  # spatially smooth, [64,1,32,32]
    img = torch.cat([img + 0.05 * randn(64, 1, 32, 32) for _ in range(3)], 1)  # channels nearly equal
    patches = img.unfold(2, 2, 1).unfold(3, 2, 1).transpose(1, 3).reshape(-1, 12)
    mats.append(patches.T @ patches / len(patches))
    # 5, 6: other sizes
    b = randn(3, 3)
    mats.append((b + b.T) / 2)
    x = randn(50, 7) @ randn(7, 7)
    mats.append(x.T @ x / 50)

    out = {}
    for i, a in enumerate(mats):
        assert torch.equal(a, a.T)
        out[f"matrix.{i}"] = a.contiguous()
        out[f"eigenvalues.{i}"] = torch.linalg.eigh(a).eigenvalues
    meta = {
        "description": "matrix.<k> [n,n] symmetric float64, eigenvalues.<k> [n] = torch.linalg.eigh (ascending)",
        "count": str(len(mats)),
        "torch": torch.__version__,
    }
    write_safetensors(os.path.join(out_dir, "eigh.safetensors"), out, meta)


# ----------------------------------------------------------------------------------------------------------


def f32_list(t):
    assert t.dtype == torch.float32
    return [float(v) for v in t.tolist()]  # float32 values are exact in float64 / JSON


def schedule_fixture(out_dir):
    cases = []
    for total in [1430, 37, 312]:
        lr = triangle(total, start=0.2, end=0.07, peak=0.23)
        alpha = alpha_schedule_fn(total)
        assert lr.dtype == torch.float32 and alpha.dtype == torch.float32
        cases.append(
            {
                "total_train_steps": total,
                "start": 0.2,
                "end": 0.07,
                "peak": 0.23,
                "lr_schedule": f32_list(lr),
                "alpha_schedule": f32_list(alpha),
            }
        )
    hyper = []
    for batch_size, lr in [(384, 10.0), (128, 3.0), (384, 3.0), (128, 10.0)]:
        momentum, weight_decay = 0.85, 0.001
        kss, lr_sgd, wd_sgd = decoupled_hyperparameters(lr, momentum, weight_decay, batch_size)
        hyper.append(
            {
                "lr": lr,
                "momentum": momentum,
                "weight_decay": weight_decay,
                "batch_size": batch_size,
                "kilostep_scale": kss,
                "lr_sgd": lr_sgd,
                "wd_sgd": wd_sgd,
                "sgd_weight_decay": wd_sgd / lr_sgd,
            }
        )
    steps = []
    for n, bs, epochs in [(50000, 384, 11), (50000, 1024, 9.9), (10000, 128, 4), (10000, 384, 2.5)]:
        spe = n // bs
        steps.append({"n": n, "batch_size": bs, "epochs": epochs, "steps_per_epoch": spe, "total_steps": math.ceil(spe * epochs)})
    out = {
        "description": "float32 values from torch (triangle() and alpha_schedule exactly as the recipe computes them), "
        "stored as JSON numbers (exact float32 values); decoupled hyperparameters in float64",
        "torch": torch.__version__,
        "cases": cases,
        "decoupled": hyper,
        "steps": steps,
    }
    path = os.path.join(out_dir, "schedule.json")
    with open(path + ".tmp", "w") as f:
        json.dump(out, f)
        f.write("\n")
    os.replace(path + ".tmp", path)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def bn_fixture(out_dir):
    from torch_bn import fixture  # torch_bn imports this module: imported here, when it is needed

    fixture(filename=os.path.join(out_dir, "net_bn.safetensors"))  # an absolute path replaces FIXTURES


def muon_fixture(out_dir):
    from torch_muon_fixtures import fixture  # imports this module: imported here, when it is needed

    fixture(out_dir)


def net_muon_fixture(out_dir):
    from torch_muon_train import FIXTURE_NAME, write_fixture  # imports this module: imported when needed

    write_fixture(os.path.join(out_dir, FIXTURE_NAME))


FIXTURE_FILES = {
    "net_small": (lambda d: net_fixture(d), "net_small.safetensors"),
    "net_deep": (lambda d: net_fixture(d, (8, 8, 12, 16), "net_deep.safetensors"), "net_deep.safetensors"),
    "net_bn": (bn_fixture, "net_bn.safetensors"),
    "eigh": (eigh_fixture, "eigh.safetensors"),
    "schedule": (schedule_fixture, "schedule.json"),
    "muon": (muon_fixture, "muon.safetensors"),
    "net_muon": (net_muon_fixture, "net_muon.safetensors"),
}


def safetensors_parts(data):
    """name -> bytes of each tensor, "__header__" -> the JSON header; None when data is not safetensors."""
    try:
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + n])
        body = data[8 + n :]
        parts = {k: body[v["data_offsets"][0] : v["data_offsets"][1]] for k, v in header.items() if k != "__metadata__"}
        return {"__header__": data[8 : 8 + n], **parts}
    except (struct.error, ValueError, KeyError, TypeError):
        return None


def describe_difference(new, old):
    """Which tensors (or the header) of two safetensors files differ, in a few words."""
    a, b = safetensors_parts(new), safetensors_parts(old)
    if a is None or b is None:
        return f"{len(new)} bytes regenerated, {len(old)} committed"
    names = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    tensors = [k for k in names if k != "__header__"]
    what = ["the header"] if "__header__" in names else []
    if tensors:
        listed = ", ".join(tensors[:4]) + (", ..." if len(tensors) > 4 else "")
        what.append(f"{len(tensors)} of {len(set(a) | set(b)) - 1} tensors ({listed})")
    return " and ".join(what)


def check():
    """Regenerates every fixture into a temporary folder and compares its bytes with the committed file."""
    tmp = tempfile.mkdtemp(prefix="torch_fixtures_check.")
    try:
        for _, (make, _) in FIXTURE_FILES.items():
            make(tmp)
        bad = 0
        for name, (_, filename) in FIXTURE_FILES.items():
            with open(os.path.join(tmp, filename), "rb") as f:
                new = f.read()
            try:
                with open(os.path.join(FIXTURES, filename), "rb") as f:
                    old = f.read()
            except FileNotFoundError:
                old = None
            if new == old:
                print(f"same      {filename} ({len(new)} bytes)")
                continue
            bad += 1
            why = "not committed" if old is None else describe_difference(new, old)
            print(f"DIFFERENT {filename}: {why}; rewrite it: /usr/bin/python3 tests/torch_fixtures.py {name}")
        same = len(FIXTURE_FILES) - bad
        print(f"{same} of {len(FIXTURE_FILES)} fixtures regenerate byte-for-byte (torch {torch.__version__})")
        return 1 if bad else 0
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    torch.set_num_threads(1)
    args = sys.argv[1:]
    if args == ["--check"]:
        sys.exit(check())
    unknown = [a for a in args if a not in FIXTURE_FILES]
    if unknown:
        print(f"error: unknown fixture {unknown[0]!r}; give --check or names from {', '.join(FIXTURE_FILES)}", file=sys.stderr)
        sys.exit(2)
    os.makedirs(FIXTURES, exist_ok=True)
    for name in args or FIXTURE_FILES:  # e.g. `torch_fixtures.py net_deep` writes only that one
        FIXTURE_FILES[name][0](FIXTURES)
