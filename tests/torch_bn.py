#!/usr/bin/python3
"""PyTorch oracle of experiments/airbench94.ts: airbench94 with BatchNorm (KellerJordan/cifar10-airbench
legacy/airbench94.py), float32 on the CPU. Three modes (run with /usr/bin/python3 from anywhere):

  fixture   tests/fixtures/net_bn.safetensors: the BN net at widths 8,16,16 on a batch of 10: input, labels, every
            state-dict entry, training-mode logits, loss, every gradient, the parameters and running statistics
            after each of two Nesterov SGD steps (norm biases at lr x bias_scaler, as airbench's param groups),
            and the eval-mode logits after step 2; computed in float64 from float32 values.
  train     the reference trainer with the airbench94 recipe (the data, whitening, lookahead, schedules and
            evaluation of tests/torch_reference_train.py), e.g.
              /usr/bin/python3 tests/torch_bn.py train --widths 32,64,64 --train-n 10000 --epochs 4 \\
                  --batch-size 256 --tta 0 --runs 3 --threads 1 --out /tmp/torch_bn.json
  score     load weights exported by experiments/airbench94.ts (--save-weights) into the PyTorch net
            (load_state_dict strict, apart from num_batches_tracked), eval mode, print the test accuracy:
              /usr/bin/python3 tests/torch_bn.py score W.safetensors --widths 32,64,64 [--tta 0|1|2]

Deviations from the recipe as in tests/torch_reference_train.py: float32 instead of half precision (the
recipe keeps BatchNorm in float32 anyway), whitening covariance + eigh in float64, inference in chunks of 250.
"""

import argparse
import json
import math
import os
import platform
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_fixtures import FIXTURES, write_safetensors  # noqa: E402
from torch_score import load_state_dict_file  # noqa: E402
from torch_reference_train import (  # noqa: E402
    CifarLoader,
    Conv,
    Flatten,
    LookaheadState,
    Mul,
    alpha_schedule_fn,
    decoupled_hyperparameters,
    evaluate,
    init_whitening_conv,
    load_cifar,
    load_train_data,
    normalize,
    print_training_details,
    run_trials,
    triangle,
    write_json,
)

HYP = {
    "epochs": 9.9,
    "batch_size": 1024,
    "lr": 11.5,  # learning rate per 1024 examples
    "momentum": 0.85,
    "weight_decay": 0.0153,  # weight decay per 1024 examples (decoupled from the learning rate)
    "bias_scaler": 64.0,  # scales up the learning rate (not the weight decay) of the BatchNorm biases
    "label_smoothing": 0.2,
    "whiten_bias_epochs": 3,
    "widths": (64, 256, 256),
    "batchnorm_momentum": 0.6,  # airbench's convention: PyTorch's momentum is 1 - 0.6 = 0.4
    "scaling_factor": 1 / 9,
    "tta_level": 2,
}
DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "cifar-10-batches-bin")

# ----------------------------------------------------------------------------------------------------------
# Network (airbench94.py's, with any number of blocks as main.ts's --widths)


class BatchNorm(nn.BatchNorm2d):
    def __init__(self, num_features, momentum, eps=1e-12, weight=False, bias=True):
        super().__init__(num_features, eps=eps, momentum=1 - momentum)
        self.weight.requires_grad = weight
        self.bias.requires_grad = bias


class ConvGroup(nn.Module):
    def __init__(self, channels_in, channels_out, batchnorm_momentum):
        super().__init__()
        self.conv1 = Conv(channels_in, channels_out)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = BatchNorm(channels_out, batchnorm_momentum)
        self.conv2 = Conv(channels_out, channels_out)
        self.norm2 = BatchNorm(channels_out, batchnorm_momentum)
        self.activ = nn.GELU()

    def forward(self, x):
        x = self.conv1(x)
        x = self.pool(x)
        x = self.norm1(x)
        x = self.activ(x)
        x = self.conv2(x)
        x = self.norm2(x)
        x = self.activ(x)
        return x


def make_net(widths=HYP["widths"], batchnorm_momentum=HYP["batchnorm_momentum"], scaling_factor=HYP["scaling_factor"]):
    whiten_kernel_size = 2
    whiten_width = 2 * 3 * whiten_kernel_size**2
    size = 32 - whiten_kernel_size + 1
    groups = []
    for cin, cout in zip([whiten_width] + list(widths[:-1]), widths):
        groups.append(ConvGroup(cin, cout, batchnorm_momentum))
        size //= 2
    net = nn.Sequential(
        Conv(3, whiten_width, whiten_kernel_size, padding=0, bias=True),
        nn.GELU(),
        *groups,
        nn.MaxPool2d(size),
        Flatten(),
        nn.Linear(widths[-1], 10, bias=False),
        Mul(scaling_factor),
    )
    net[0].weight.requires_grad = False
    return net


def make_optimizer(model, lr, wd, momentum, bias_scaler):
    """airbench94's param groups: norm biases at lr x bias_scaler with weight decay wd / lr_biases, the rest at
    lr with wd / lr (wd: the un-decoupled decay per step). Trains what requires grad when a step runs."""
    lr_biases = lr * bias_scaler
    norm_biases = [p for k, p in model.named_parameters() if "norm" in k and p.requires_grad]
    other_params = [p for k, p in model.named_parameters() if "norm" not in k and p.requires_grad]
    param_configs = [
        dict(params=norm_biases, lr=lr_biases, weight_decay=wd / lr_biases),
        dict(params=other_params, lr=lr, weight_decay=wd / lr),
    ]
    return torch.optim.SGD(param_configs, momentum=momentum, nesterov=True)


# ----------------------------------------------------------------------------------------------------------
# fixture


def fixture(widths=(8, 16, 16), filename="net_bn.safetensors"):
    n = 10
    lr, momentum, weight_decay, label_smoothing, bias_scaler = 0.02, 0.85, 0.02, 0.2, 64.0
    torch.manual_seed(4321)
    net = make_net(widths)
    with torch.no_grad():
        # Perturb so that every path is exercised: whitening weight, every bias, the (frozen) BatchNorm weights
        # and the running statistics random; small noise on the 3x3 conv weights (partly dirac identities).
        net[0].weight.copy_(torch.randn_like(net[0].weight) * 0.5)
        for name, p in net.named_parameters():
            if name.endswith(".bias"):
                p.copy_(torch.randn_like(p) * 0.1)
            elif "norm" in name and name.endswith(".weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif name.endswith(".weight") and p.dim() == 4 and p.shape[-1] == 3:
                p.add_(torch.randn_like(p) * (0.1 / (p.shape[1] * 9) ** 0.5))
        for m in net.modules():
            if isinstance(m, BatchNorm):
                m.running_mean.copy_(torch.randn_like(m.running_mean) * 0.1)
                m.running_var.copy_(0.5 + torch.rand_like(m.running_var))
    x32 = torch.randn(n, 3, 32, 32, dtype=torch.float32)
    labels = torch.randint(0, 10, (n,))
    state32 = {k: v.clone() for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}

    net = net.double()
    x = x32.double()
    net.train()
    loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing, reduction="sum")
    trainable = [(k, p) for k, p in net.named_parameters() if p.requires_grad]
    frozen = [k for k, p in net.named_parameters() if not p.requires_grad]
    assert frozen == ["0.weight"] + [k for k in frozen if "norm" in k], frozen
    # wd here is the torch weight_decay of the lr group; airbench's groups are (wd*lr) / (lr*bias_scaler).
    opt = make_optimizer(net, lr, weight_decay * lr, momentum, bias_scaler)
    buffers = [k for k in state32 if "running" in k]

    out = {"input": x32, "labels": labels.to(torch.int32)}
    for k, v in state32.items():
        out["param." + k] = v

    def snapshot(prefix):
        sd = net.state_dict()
        for k, _ in trainable:
            out[f"{prefix}.{k}"] = sd[k].detach().float()
        for k in buffers:
            out[f"{prefix}.{k}"] = sd[k].detach().float()

    logits = net(x)  # training mode: batch statistics, running statistics updated
    loss = loss_fn(logits, labels)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    out["logits"] = logits.detach().float()
    out["loss"] = loss.detach().float().view(1)
    for k, p in trainable:
        out["grad." + k] = p.grad.detach().float()
    opt.step()
    snapshot("step1")

    logits2 = net(x)
    loss2 = loss_fn(logits2, labels)
    opt.zero_grad(set_to_none=True)
    loss2.backward()
    out["logits2"] = logits2.detach().float()
    out["loss2"] = loss2.detach().float().view(1)
    opt.step()
    snapshot("step2")

    net.eval()
    with torch.no_grad():
        out["eval_logits"] = net(x).float()

    # Sanity: the float32 forward agrees with the float64 one.
    net32 = make_net(widths)
    net32.load_state_dict(state32, strict=False)
    with torch.no_grad():
        d = (net32(x32).double() - logits.detach()).abs().max().item()
    assert d < 1e-4, d

    meta = {
        "description": "airbench94 BatchNorm net, two training-mode steps on one batch; computed in float64 from the "
        "stored float32 inputs/params, results stored as float32. param.<k>: every state-dict entry (without "
        "num_batches_tracked); grad.<k>: d loss / d param at param.; step1./step2.<k>: trained parameters and "
        "running statistics after each step (each training forward updates the running statistics once); "
        "logits2/loss2: the forward at step1.; eval_logits: net.eval() forward at step2.",
        "widths": json.dumps(list(widths)),
        "state_dict": json.dumps(list(state32)),
        "batch": str(n),
        "lr": repr(lr),
        "momentum": repr(momentum),
        "weight_decay": repr(weight_decay),
        "bias_scaler": repr(bias_scaler),
        "batchnorm_momentum": repr(HYP["batchnorm_momentum"]),
        "bn_eps": "1e-12",
        "optimizer": "torch.optim.SGD([norm biases: lr*bias_scaler, weight_decay/bias_scaler; others: lr, "
        "weight_decay], momentum, nesterov=True)",
        "label_smoothing": repr(label_smoothing),
        "loss": "CrossEntropyLoss(label_smoothing=0.2, reduction='sum')",
        "seed": "4321",
        "torch": torch.__version__,
    }
    write_safetensors(os.path.join(FIXTURES, filename), out, meta)
    print(f"  loss {loss.item():.6f} loss2 {loss2.item():.6f}")


# ----------------------------------------------------------------------------------------------------------
# train


def train_run(run, args, data):
    train_images_u8, train_labels, test_images_u8, test_labels = data
    torch.manual_seed(args.seed + run)
    batch_size, epochs, momentum = args.batch_size, args.epochs, args.momentum
    _, lr, wd = decoupled_hyperparameters(args.lr, momentum, args.weight_decay, batch_size)

    loss_fn = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing, reduction="none")
    test_images = normalize(test_images_u8.float() / 255)
    train_loader = CifarLoader(train_images_u8, train_labels, batch_size=batch_size, aug={"flip": True, "translate": 2})
    total_train_steps = math.ceil(len(train_loader) * epochs)

    model = make_net(args.widths, args.batchnorm_momentum)
    current_steps = 0
    optimizer = make_optimizer(model, lr, wd, momentum, args.bias_scaler)
    lr_schedule = triangle(total_train_steps, start=0.2, end=0.07, peak=0.23)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: lr_schedule[i])
    alpha_schedule = alpha_schedule_fn(total_train_steps)
    lookahead_state = LookaheadState(model)  # state_dict floats: parameters and running statistics

    train_time = 0.0
    epoch_rows = []
    t0 = time.perf_counter()
    n_whiten = min(5000, len(train_images_u8))
    init_whitening_conv(model[0], normalize(train_images_u8[:n_whiten].float() / 255), dtype=torch.float64)
    train_time += time.perf_counter() - t0

    for epoch in range(math.ceil(epochs)):
        model[0].bias.requires_grad = epoch < args.whiten_bias_epochs
        t0 = time.perf_counter()
        model.train()
        for inputs, labels in train_loader:
            outputs = model(inputs)
            loss = loss_fn(outputs, labels).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            current_steps += 1
            if current_steps % 5 == 0:
                lookahead_state.update(model, decay=alpha_schedule[current_steps].item())
            if current_steps >= total_train_steps:
                lookahead_state.update(model, decay=1.0)
                break
        train_time += time.perf_counter() - t0
        train_acc = (outputs.detach().argmax(1) == labels).float().mean().item()
        train_loss = loss.item() / batch_size
        val_acc = evaluate(model, test_images, test_labels, tta_level=0, chunk=args.eval_batch)
        row = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "val_acc": val_acc,
               "train_time_s": train_time}
        epoch_rows.append({**row, "steps": current_steps})
        print_training_details({**row, "run": run if epoch == 0 else None}, is_final_entry=False)

    tta_val_acc = evaluate(model, test_images, test_labels, tta_level=args.tta, chunk=args.eval_batch)
    print_training_details({"epoch": "eval", "tta_val_acc": tta_val_acc, "train_time_s": train_time}, True)
    if args.save_weights:
        path = args.save_weights if args.runs == 1 else args.save_weights.replace(".safetensors", f"-run{run}.safetensors")
        sd = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
        write_safetensors(path, sd, {"format": "pt"})
    return {"run": run, "seed": args.seed + run, "total_train_steps": total_train_steps, "epochs": epoch_rows,
            "final_val_acc": epoch_rows[-1]["val_acc"], "tta_val_acc": tta_val_acc, "train_time_s": train_time}


def train(argv):
    p = argparse.ArgumentParser(prog="torch_bn.py train")
    p.add_argument("--data-dir", default=DATA_DIR)
    p.add_argument("--epochs", type=float, default=HYP["epochs"])
    p.add_argument("--batch-size", type=int, default=HYP["batch_size"])
    p.add_argument("--lr", type=float, default=HYP["lr"], help="decoupled lr (per 1024 examples)")
    p.add_argument("--momentum", type=float, default=HYP["momentum"])
    p.add_argument("--weight-decay", type=float, default=HYP["weight_decay"], help="decoupled wd")
    p.add_argument("--bias-scaler", type=float, default=HYP["bias_scaler"])
    p.add_argument("--batchnorm-momentum", type=float, default=HYP["batchnorm_momentum"], help="airbench's (1 - torch's)")
    p.add_argument("--label-smoothing", type=float, default=HYP["label_smoothing"])
    p.add_argument("--whiten-bias-epochs", type=int, default=HYP["whiten_bias_epochs"])
    p.add_argument("--widths", type=str, default=",".join(str(w) for w in HYP["widths"]))
    p.add_argument("--train-n", type=int, default=None, help="use only the first N training images")
    p.add_argument("--tta", type=int, default=HYP["tta_level"], choices=[0, 1, 2])
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="run r uses torch.manual_seed(seed + r)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-batch", type=int, default=250)
    p.add_argument("--save-weights", default=None, help="safetensors of the final state dict (-run<r> if runs > 1)")
    p.add_argument("--out", type=str, default=None, help="write a JSON result here")
    args = p.parse_args(argv)
    args.widths = tuple(int(w) for w in args.widths.split(","))
    torch.set_num_threads(args.threads)
    data = load_train_data(args.data_dir, args.train_n)
    train_images = data[0]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, train {len(train_images)}, "
          f"widths {args.widths}, epochs {args.epochs}, batch {args.batch_size}, lr {args.lr}, "
          f"wd {args.weight_decay}, bias_scaler {args.bias_scaler}, bn momentum {args.batchnorm_momentum}, tta {args.tta}")
    results, accs, mean, std, wall = run_trials(args, data, train_run)
    print("Mean: %.4f Std: %.4f  (tta level %d, %d runs)" % (mean, std, args.tta, len(accs)))
    out = {
        "command": "/usr/bin/python3 tests/torch_bn.py train " + " ".join(argv),
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()},
        "environment": {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine()},
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
# score

def score(argv):
    p = argparse.ArgumentParser(prog="torch_bn.py score")
    p.add_argument("weights")
    p.add_argument("--widths", required=True)
    p.add_argument("--tta", type=int, default=0, choices=[0, 1, 2])
    p.add_argument("--data-dir", default=DATA_DIR)
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    net = make_net(tuple(int(w) for w in args.widths.split(",")))
    load_state_dict_file(net, args.weights)
    net.eval()
    _, _, test_images, test_labels = load_cifar(args.data_dir)
    acc = evaluate(net, normalize(test_images.float() / 255), test_labels, tta_level=args.tta, chunk=500)
    print(json.dumps({"weights": args.weights, "widths": args.widths, "tta_level": args.tta, "test_acc": acc}))
    return acc


if __name__ == "__main__":
    modes = {"fixture": lambda argv: fixture(), "train": train, "score": score}
    if len(sys.argv) < 2 or sys.argv[1] not in modes:
        raise SystemExit(f"usage: {sys.argv[0]} fixture | train [...] | score WEIGHTS --widths W [--tta L]")
    if sys.argv[1] == "fixture":
        torch.set_num_threads(1)
    modes[sys.argv[1]](sys.argv[2:])
