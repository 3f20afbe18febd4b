#!/usr/bin/python3
"""PyTorch oracle of the airbench94_muon experiment (KellerJordan/cifar10-airbench airbench94_muon.py: 94.01% in
2.59 s on an A100), float32 on the CPU. Two modes (run with /usr/bin/python3 from anywhere):

  train     the airbench94_muon recipe, e.g. the reduced run the WebGPU port is compared with:
              /usr/bin/python3 tests/torch_muon_train.py train --widths 32,64,64 --train-n 10000 \\
                  --batch-size 500 --epochs 8 --tta 0 --runs 3 --threads 1 --out /tmp/torch_muon.json
            (measured on the project's 2-core CPU box, torch 1.13: 82.94%, 82.58%, 82.70%; mean 82.74%, std 0.18)
  fixture   write tests/fixtures/net_muon.safetensors (also tests/torch_fixtures.py net_muon): a tiny CifarNet, two
            training steps of the recipe's optimizers in float64 (see write_fixture):
              /usr/bin/python3 tests/torch_muon_train.py fixture [--out PATH]
  score     load weights written by the port (safetensors with CifarNet's names: whiten.weight, whiten.bias,
            layers.1.conv1.weight, layers.1.norm1.{weight,bias,running_mean,running_var}, ..., head.weight) into
            CifarNet (load_state_dict strict, apart from num_batches_tracked), eval mode, print the test accuracy:
              /usr/bin/python3 tests/torch_muon_train.py score W.safetensors --widths 32,64,64 [--tta 0|1|2]

The recipe: CifarNet (frozen 2x2 whitening conv with a bias; GELU; per block conv 3x3 (dirac-initialised first
filters), MaxPool2d(2), BatchNorm (airbench momentum 0.6, eps 1e-12, weight frozen at 1), GELU, conv, BatchNorm,
GELU; a global max pool; a bias-free head rescaled to unit std, logits divided by the last width), label
smoothing 0.2 summed over the batch, Nesterov SGD (momentum 0.85) for the whitening bias, the BatchNorm biases
and the head, with weight decay 2e-6 x batch / lr of the group, and Muon (lr 0.24, momentum 0.6, Nesterov) for
the trainable 3x3 filters; every learning rate decays linearly to 0 over 8 epochs, the whitening bias's over 3
epochs, after which its gradient is detached. No lookahead. The module names are the recipe's, so a state dict
saved here loads into airbench94_muon.py's CifarNet (widths 64,256,256).

Deviations from the recipe: float32 everywhere instead of half precision, and the Newton-Schulz iteration of
Muon (3 steps, tests/torch_muon_fixtures.py's) runs in float32 instead of bfloat16 (the WebGPU port has no
bfloat16); CIFAR-10 is read from the official
binary batches; the whitening patch covariance + eigh run in float64, with the filters in descending eigenvalue
order (tests/torch_reference_train.py's init_whitening_conv; the recipe keeps eigh's ascending order, a
permutation of the 24 whitening channels); inference runs in chunks of --eval-batch (250) instead of 2000 (same
results); any number of blocks from 1 to 4 (--widths), the last pool covering the whole remaining map.
"""

import argparse
import json
import math
import os
import platform
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_bn import DATA_DIR, ConvGroup  # noqa: E402
from torch_fixtures import FIXTURES, write_safetensors  # noqa: E402
from torch_muon_fixtures import muon_step  # noqa: E402
from torch_reference_train import (  # noqa: E402
    CifarLoader,
    evaluate,
    init_whitening_conv,
    load_cifar,
    load_train_data,
    normalize,
    print_training_details,
    run_trials,
    write_json,
)
from torch_score import load_state_dict_file  # noqa: E402

HYP = {
    "epochs": 8,
    "batch_size": 2000,
    "bias_lr": 0.053,  # whitening bias and BatchNorm biases (SGD)
    "head_lr": 0.67,  # head (SGD)
    "sgd_momentum": 0.85,
    "weight_decay": 2e-6,  # per example: torch weight_decay = weight_decay * batch_size / lr of the group
    "muon_lr": 0.24,
    "muon_momentum": 0.6,
    "label_smoothing": 0.2,
    "whiten_bias_epochs": 3,
    "batchnorm_momentum": 0.6,  # airbench's convention: PyTorch's momentum is 1 - 0.6 = 0.4
    "widths": (64, 256, 256),
    "tta_level": 2,
}

# ----------------------------------------------------------------------------------------------------------
# Network (airbench94_muon.py's CifarNet, any number of blocks)


class CifarNet(nn.Module):
    def __init__(self, widths=HYP["widths"], batchnorm_momentum=HYP["batchnorm_momentum"]):
        super().__init__()
        whiten_kernel_size = 2
        whiten_width = 2 * 3 * whiten_kernel_size**2
        self.whiten = nn.Conv2d(3, whiten_width, whiten_kernel_size, padding=0, bias=True)
        self.whiten.weight.requires_grad = False
        size = 32 - whiten_kernel_size + 1
        groups = []
        for cin, cout in zip([whiten_width] + list(widths[:-1]), widths):
            groups.append(ConvGroup(cin, cout, batchnorm_momentum))
            size //= 2
        self.layers = nn.Sequential(nn.GELU(), *groups, nn.MaxPool2d(size))
        self.head = nn.Linear(widths[-1], 10, bias=False)
        with torch.no_grad():
            self.head.weight.mul_(1 / self.head.weight.std())

    def forward(self, x, whiten_bias_grad=True):
        b = self.whiten.bias
        x = F.conv2d(x, self.whiten.weight, b if whiten_bias_grad else b.detach())
        x = self.layers(x)
        x = x.view(len(x), -1)
        return self.head(x) / x.size(-1)


# ----------------------------------------------------------------------------------------------------------
# Muon


class Muon(torch.optim.Optimizer):
    """The recipe's Muon (tests/torch_muon_fixtures.py's muon_step per parameter): Nesterov momentum, the weight
    rescaled to norm sqrt(out channels), then a step of -lr along the Newton-Schulz orthogonalised update of the
    filters flattened to [out, in*kh*kw], here in float32 (the recipe's bfloat16 is absent from WebGPU)."""

    def __init__(self, params, lr, momentum, nesterov=True):
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad)
                muon_step(p, p.grad, state["momentum_buffer"], group["lr"], group["momentum"], group["nesterov"])


def make_optimizers(model, args):
    """The recipe's groups: SGD [whiten.bias], [norm biases], [head.weight]; Muon for the trainable 4-D filters.
    Each group's torch weight_decay is weight_decay * batch_size / its initial lr."""
    wd = args.weight_decay * args.batch_size
    filter_params = [p for p in model.parameters() if p.dim() == 4 and p.requires_grad]
    norm_biases = [p for n, p in model.named_parameters() if "norm" in n and p.requires_grad]
    param_configs = [
        dict(params=[model.whiten.bias], lr=args.bias_lr, weight_decay=wd / args.bias_lr),
        dict(params=norm_biases, lr=args.bias_lr, weight_decay=wd / args.bias_lr),
        dict(params=[model.head.weight], lr=args.head_lr, weight_decay=wd / args.head_lr),
    ]
    sgd = torch.optim.SGD(param_configs, lr=args.bias_lr, momentum=args.sgd_momentum, nesterov=True)
    muon = Muon(filter_params, lr=args.muon_lr, momentum=args.muon_momentum, nesterov=True)
    for opt in (sgd, muon):
        for group in opt.param_groups:
            group["initial_lr"] = group["lr"]
    return sgd, muon


def set_learning_rates(sgd, muon, step, whiten_bias_steps, total_steps):
    """Linear decay to 0: the whitening bias over whiten_bias_steps (its gradient is detached from then on, so
    SGD skips it), every other group over total_steps."""
    for group in sgd.param_groups[:1]:
        group["lr"] = group["initial_lr"] * (1 - step / whiten_bias_steps)
    for group in sgd.param_groups[1:] + muon.param_groups:
        group["lr"] = group["initial_lr"] * (1 - step / total_steps)


# ----------------------------------------------------------------------------------------------------------
# train


def train_run(run, args, data):
    train_images_u8, train_labels, test_images_u8, test_labels = data
    torch.manual_seed(args.seed + run)
    test_images = normalize(test_images_u8.float() / 255)
    aug = {"flip": True, "translate": 2}
    train_loader = CifarLoader(train_images_u8, train_labels, batch_size=args.batch_size, aug=aug)
    total_steps = math.ceil(args.epochs * len(train_loader))
    whiten_bias_steps = math.ceil(args.whiten_bias_epochs * len(train_loader))
    model = CifarNet(args.widths, args.batchnorm_momentum)
    sgd, muon = make_optimizers(model, args)

    t0 = time.perf_counter()
    n_whiten = min(5000, len(train_images_u8))
    init_whitening_conv(model.whiten, normalize(train_images_u8[:n_whiten].float() / 255), dtype=torch.float64)
    train_time = time.perf_counter() - t0

    step, epoch_rows = 0, []
    for epoch in range(math.ceil(total_steps / len(train_loader))):
        t0 = time.perf_counter()
        model.train()
        for inputs, labels in train_loader:
            outputs = model(inputs, whiten_bias_grad=step < whiten_bias_steps)
            loss = F.cross_entropy(outputs, labels, label_smoothing=args.label_smoothing, reduction="sum")
            loss.backward()
            set_learning_rates(sgd, muon, step, whiten_bias_steps, total_steps)
            sgd.step()
            muon.step()
            model.zero_grad(set_to_none=True)
            step += 1
            if step >= total_steps:
                break
        train_time += time.perf_counter() - t0
        train_acc = (outputs.detach().argmax(1) == labels).float().mean().item()
        val_acc = evaluate(model, test_images, test_labels, tta_level=0, chunk=args.eval_batch)
        row = {"epoch": epoch, "train_loss": loss.item() / len(labels), "train_acc": train_acc, "val_acc": val_acc,
               "train_time_s": train_time}
        epoch_rows.append({**row, "steps": step})
        print_training_details({**row, "run": run if epoch == 0 else None}, is_final_entry=False)

    t0 = time.perf_counter()
    tta_val_acc = evaluate(model, test_images, test_labels, tta_level=args.tta, chunk=args.eval_batch)
    train_time += time.perf_counter() - t0  # the recipe's time: whitening + training + final evaluation
    print_training_details({"epoch": "eval", "tta_val_acc": tta_val_acc, "train_time_s": train_time}, True)
    if args.save_weights:
        suffix = "" if args.runs == 1 else f"-run{run}"
        path = args.save_weights.replace(".safetensors", f"{suffix}.safetensors")
        sd = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
        write_safetensors(path, sd, {"format": "pt"})
    return {"run": run, "seed": args.seed + run, "total_train_steps": total_steps,
            "whiten_bias_train_steps": whiten_bias_steps, "epochs": epoch_rows,
            "final_val_acc": epoch_rows[-1]["val_acc"], "tta_val_acc": tta_val_acc, "train_time_s": train_time}


def fail(message):
    print(f"torch_muon_train.py: {message}", file=sys.stderr)
    sys.exit(2)


def parse_widths(text):
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        widths = ()
    if not 1 <= len(widths) <= 4 or min(widths) < 1:
        fail(f"--widths {text!r}: give 1 to 4 positive comma-separated integers, e.g. --widths 64,256,256")
    return widths


def check_data_dir(data_dir):
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    missing = [n for n in names if not os.path.isfile(os.path.join(data_dir, n))]
    if missing:
        fail(f"--data-dir {data_dir}: missing {', '.join(missing)}; pass the folder of CIFAR-10's binary batches, "
             "e.g. --data-dir /work/data/cifar-10-batches-bin")


def parse_train_args(argv):
    p = argparse.ArgumentParser(prog="torch_muon_train.py train")
    p.add_argument("--data-dir", default=DATA_DIR)
    p.add_argument("--widths", type=str, default=",".join(str(w) for w in HYP["widths"]))
    p.add_argument("--train-n", type=int, default=None, help="use only the first N training images")
    p.add_argument("--epochs", type=float, default=HYP["epochs"])
    p.add_argument("--batch-size", type=int, default=HYP["batch_size"])
    p.add_argument("--bias-lr", type=float, default=HYP["bias_lr"])
    p.add_argument("--head-lr", type=float, default=HYP["head_lr"])
    p.add_argument("--sgd-momentum", type=float, default=HYP["sgd_momentum"])
    p.add_argument("--weight-decay", type=float, default=HYP["weight_decay"], help="per example (x batch / lr)")
    p.add_argument("--muon-lr", type=float, default=HYP["muon_lr"])
    p.add_argument("--muon-momentum", type=float, default=HYP["muon_momentum"])
    p.add_argument("--label-smoothing", type=float, default=HYP["label_smoothing"])
    p.add_argument("--whiten-bias-epochs", type=float, default=HYP["whiten_bias_epochs"])
    p.add_argument(
        "--batchnorm-momentum", type=float, default=HYP["batchnorm_momentum"], help="airbench's (1 - torch's)"
    )
    p.add_argument("--tta", type=int, default=HYP["tta_level"], choices=[0, 1, 2])
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="run r uses torch.manual_seed(seed + r)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-batch", type=int, default=250)
    p.add_argument("--save-weights", default=None, help="safetensors of the final state dict (-run<r> if runs > 1)")
    p.add_argument("--out", type=str, default=None, help="write a JSON result here")
    args = p.parse_args(argv)
    args.widths = parse_widths(args.widths)
    train_n = 50000 if args.train_n is None else args.train_n
    checks = [
        (1 <= train_n <= 50000, "--train-n: give 1 to 50000"),
        (1 <= args.batch_size <= train_n, f"--batch-size {args.batch_size}: give 1 to --train-n ({train_n})"),
        (args.epochs > 0, "--epochs: give a positive number"),
        (args.whiten_bias_epochs > 0, "--whiten-bias-epochs: give a positive number"),
        (args.runs >= 1 and args.threads >= 1 and args.eval_batch >= 1, "--runs, --threads, --eval-batch: give >= 1"),
        (not args.save_weights or args.save_weights.endswith(".safetensors"), "--save-weights: end it in .safetensors"),
    ]
    for path in (args.save_weights, args.out):
        if path:
            checks.append((os.path.isdir(os.path.dirname(os.path.abspath(path))), f"{path}: its folder does not exist"))
    for ok, message in checks:
        if not ok:
            fail(message)
    check_data_dir(args.data_dir)
    return args


def train(argv):
    args = parse_train_args(argv)
    torch.set_num_threads(args.threads)
    data = load_train_data(args.data_dir, args.train_n)
    train_images = data[0]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, train {len(train_images)}, "
          f"widths {args.widths}, epochs {args.epochs}, batch {args.batch_size}, lrs bias {args.bias_lr} head "
          f"{args.head_lr} muon {args.muon_lr}, wd {args.weight_decay}, tta {args.tta}")
    results, accs, mean, std, wall = run_trials(args, data, train_run)
    for r, w in zip(results, wall):
        r["wall_time_s"] = w
    print("Mean: %.4f Std: %.4f  (tta level %d, %d runs, %.1f s wall per run)" % (
        mean, std, args.tta, len(accs), sum(wall) / len(wall)))
    out = {
        "command": "/usr/bin/python3 tests/torch_muon_train.py train " + " ".join(argv),
        "config": {**{k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()},
                   "train_n": len(train_images), "whiten_n": min(5000, len(train_images)),
                   "precision": "float32 CPU; Newton-Schulz in float32; whitening covariance/eigh in float64"},
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "machine": platform.machine(), "processor": platform.processor(),
                        "cpu_count": os.cpu_count(), "threads": torch.get_num_threads()},
        "accs": accs.tolist(),
        "mean": mean,
        "std": std,
        "mean_wall_time_s": sum(wall) / len(wall),
        "runs": results,
    }
    if args.out:
        write_json(args.out, out)
    return out


# ----------------------------------------------------------------------------------------------------------
# fixture

FIXTURE_NAME = "net_muon.safetensors"


def write_fixture(path):
    """Two training steps of a tiny CifarNet (widths 8,16,16, 10 images) with the recipe's optimizers and plan,
    computed in float64 (Newton-Schulz too) from float32 inputs and parameters; results stored as float32. The
    plan: total_steps 4, whiten_bias_steps 1, so step 0 trains every group at its initial lr and step 1 has the
    whitening bias detached (no update) and every other lr x 0.75. weight_decay is raised (5e-3 per example) so
    that the coupled decay shows in the parameters."""
    widths, n, seed = (8, 16, 16), 10, 4321
    args = argparse.Namespace(**{**HYP, "weight_decay": 5e-3, "batch_size": n})
    total_steps, whiten_bias_steps = 4, 1
    torch.manual_seed(seed)
    net = CifarNet(widths, args.batchnorm_momentum)
    with torch.no_grad():
        # Every path exercised: whitening weight, the biases and running statistics random, the (frozen)
        # BatchNorm weights away from 1, small noise on the dirac-initialised 3x3 filters.
        net.whiten.weight.copy_(torch.randn_like(net.whiten.weight) * 0.5)
        for name, p in net.named_parameters():
            if name.endswith(".bias"):
                p.copy_(torch.randn_like(p) * 0.1)
            elif "norm" in name:
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif p.dim() == 4 and p.requires_grad:
                p.add_(torch.randn_like(p) * (0.1 / (p.shape[1] * 9) ** 0.5))
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn_like(m.running_mean) * 0.1)
                m.running_var.copy_(0.5 + torch.rand_like(m.running_var))
    x32 = torch.randn(n, 3, 32, 32, dtype=torch.float32)
    labels = torch.randint(0, 10, (n,))
    state32 = {k: v.clone() for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}

    net = net.double()
    x = x32.double()
    sgd, muon = make_optimizers(net, args)
    trainable = [k for k, p in net.named_parameters() if p.requires_grad]
    out = {"input": x32, "labels": labels.to(torch.int32), **{"param." + k: v for k, v in state32.items()}}
    for step in range(2):
        net.train()
        logits = net(x, whiten_bias_grad=step < whiten_bias_steps)
        loss = F.cross_entropy(logits, labels, label_smoothing=args.label_smoothing, reduction="sum")
        loss.backward()
        suffix = "" if step == 0 else str(step + 1)
        out["logits" + suffix] = logits.detach().float()
        out["loss" + suffix] = loss.detach().float().view(1)
        if step == 0:
            for k, p in net.named_parameters():
                if p.requires_grad:
                    out["grad." + k] = p.grad.detach().float()
        set_learning_rates(sgd, muon, step, whiten_bias_steps, total_steps)
        sgd.step()
        muon.step()
        net.zero_grad(set_to_none=True)
        sd = net.state_dict()
        for k in trainable + [k for k in state32 if "running" in k]:
            out[f"step{step + 1}.{k}"] = sd[k].detach().float()
    net.eval()
    with torch.no_grad():
        out["eval_logits"] = net(x).float()
    meta = {
        "description": "airbench94_muon CifarNet, two training steps of tests/torch_muon_train.py's optimizers "
        "(SGD for whiten.bias, norm biases, head; Muon for the 3x3 filters) in float64 from float32 inputs and "
        "params, results float32. param.<k>: every state-dict entry (no num_batches_tracked); grad.<k>: the "
        "gradients of step 1; step1./step2.<k>: trained parameters and running statistics after each step; "
        "logits/loss, logits2/loss2: the training forwards of steps 1 and 2; eval_logits: eval mode after step 2.",
        "widths": json.dumps(list(widths)),
        "state_dict": json.dumps(list(state32)),
        "batch": str(n),
        "total_steps": str(total_steps),
        "whiten_bias_steps": str(whiten_bias_steps),
        "hyp": json.dumps({k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()}),
        "seed": str(seed),
        "torch": torch.__version__,
    }
    write_safetensors(path, out, meta)
    print(f"  loss {out['loss'].item():.6f} loss2 {out['loss2'].item():.6f}")


def fixture(argv):
    p = argparse.ArgumentParser(prog="torch_muon_train.py fixture")
    p.add_argument("--out", default=os.path.join(FIXTURES, FIXTURE_NAME))
    args = p.parse_args(argv)
    if not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
        fail(f"--out {args.out}: its folder does not exist")
    torch.set_num_threads(1)
    write_fixture(args.out)


# ----------------------------------------------------------------------------------------------------------
# score


def score(argv):
    p = argparse.ArgumentParser(prog="torch_muon_train.py score")
    p.add_argument("weights")
    p.add_argument("--widths", default=",".join(str(w) for w in HYP["widths"]))
    p.add_argument("--tta", type=int, default=0, choices=[0, 1, 2])
    p.add_argument("--data-dir", default=DATA_DIR)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    widths = parse_widths(args.widths)
    if not os.path.isfile(args.weights):
        fail(f"{args.weights}: no such file; pass a safetensors written with --save-weights")
    check_data_dir(args.data_dir)
    torch.set_num_threads(args.threads)
    net = CifarNet(widths)
    load_state_dict_file(net, args.weights)
    net.eval()
    _, _, test_images, test_labels = load_cifar(args.data_dir)
    acc = evaluate(net, normalize(test_images.float() / 255), test_labels, tta_level=args.tta, chunk=500)
    print(json.dumps({"weights": args.weights, "widths": args.widths, "tta_level": args.tta, "test_acc": acc}))
    return acc


if __name__ == "__main__":
    modes = {"train": train, "fixture": fixture, "score": score}
    if len(sys.argv) < 2 or sys.argv[1] not in modes:
        fail("give a mode: train [...] | fixture [--out PATH] | score WEIGHTS --widths W [--tta L]")
    modes[sys.argv[1]](sys.argv[2:])
