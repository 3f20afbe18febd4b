#!/usr/bin/python3
"""CPU PyTorch reference of the BatchNorm-free airbench94 recipe (the accuracy oracle for the WebGPU port).

Faithful to /work/shared/reference/airbench94-batchnorm-free.txt, except that it runs in float32 on the CPU
(instead of half precision on a GPU), reads CIFAR-10 from the official binary files, and exposes the
hyperparameters as flags. Deviations: the whitening patch covariance + eigh run in float64 by default
(--whiten-precision float32 for the literal recipe, which is inaccurate with CPU float32 sgemm), and inference
runs in chunks of --eval-batch (250) instead of 2000 images (same results, much faster on CPU). Run with /usr/bin/python3 (system torch), e.g.

  /usr/bin/python3 tests/torch_reference_train.py --widths 32,64,64 --epochs 4 --train-n 10000 \
      --batch-size 128 --lr 3 --runs 3 --tta 0 --threads 1 --out tests/fixtures/torch_reference_small.json

The network/optimizer helpers here are also imported by tests/torch_fixtures.py.
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

CIFAR_MEAN = torch.tensor((0.4914, 0.4822, 0.4465))
CIFAR_STD = torch.tensor((0.2470, 0.2435, 0.2616))

DEFAULT_HYP = {
    "epochs": 11,
    "batch_size": 384,
    "lr": 10.0,  # learning rate per 1024 examples
    "momentum": 0.85,
    "weight_decay": 0.001,  # weight decay per 1024 examples (decoupled from learning rate)
    "label_smoothing": 0.2,
    "whiten_bias_epochs": 3,
    "flip": True,
    "translate": 2,
    "widths": (64, 256, 256),
    "scaling_factor": 1 / 9,
    "tta_level": 2,
}


# ----------------------------------------------------------------------------------------------------------
# Data


def load_cifar_bin(path):
    """Reads CIFAR-10 binary records (1 label byte + 3072 bytes of R,G,B 32x32 planes).

    Returns (uint8 images [N,3,32,32], int64 labels [N])."""
    raw = torch.frombuffer(bytearray(open(path, "rb").read()), dtype=torch.uint8)
    if raw.numel() % 3073 != 0:
        raise ValueError(f"{path}: size {raw.numel()} is not a multiple of 3073")
    rec = raw.view(-1, 3073)
    labels = rec[:, 0].long()
    images = rec[:, 1:].reshape(-1, 3, 32, 32).clone()
    return images, labels


def load_cifar(data_dir):
    train = [load_cifar_bin(os.path.join(data_dir, f"data_batch_{i}.bin")) for i in range(1, 6)]
    train_images = torch.cat([t[0] for t in train])
    train_labels = torch.cat([t[1] for t in train])
    test_images, test_labels = load_cifar_bin(os.path.join(data_dir, "test_batch.bin"))
    return train_images, train_labels, test_images, test_labels


def normalize(images):
    return (images - CIFAR_MEAN.view(1, 3, 1, 1)) / CIFAR_STD.view(1, 3, 1, 1)


def batch_flip_lr(inputs):
    flip_mask = (torch.rand(len(inputs), device=inputs.device) < 0.5).view(-1, 1, 1, 1)
    return torch.where(flip_mask, inputs.flip(-1), inputs)


def batch_crop(images, crop_size):
    r = (images.size(-1) - crop_size) // 2
    shifts = torch.randint(-r, r + 1, size=(len(images), 2), device=images.device)
    images_out = torch.empty((len(images), 3, crop_size, crop_size), device=images.device, dtype=images.dtype)
    # The two methods produce equivalent results (the second is faster for r > 2).
    if r <= 2:
        for sy in range(-r, r + 1):
            for sx in range(-r, r + 1):
                mask = (shifts[:, 0] == sy) & (shifts[:, 1] == sx)
                images_out[mask] = images[mask, :, r + sy : r + sy + crop_size, r + sx : r + sx + crop_size]
    else:
        images_tmp = torch.empty(
            (len(images), 3, crop_size, crop_size + 2 * r), device=images.device, dtype=images.dtype
        )
        for s in range(-r, r + 1):
            mask = shifts[:, 0] == s
            images_tmp[mask] = images[mask, :, r + s : r + s + crop_size, :]
        for s in range(-r, r + 1):
            mask = shifts[:, 1] == s
            images_out[mask] = images_tmp[mask, :, :, r + s : r + s + crop_size]
    return images_out


class CifarLoader:
    """Same semantics as the recipe's CifarLoader, over in-memory uint8 images [N,3,32,32]."""

    def __init__(self, images_u8, labels, batch_size=500, aug=None, drop_last=True, shuffle=True):
        self.images = images_u8.float() / 255
        self.labels = labels
        self.proc_images = {}  # saved results of image processing done on the first epoch
        self.epoch = 0
        self.aug = aug or {}
        for k in self.aug.keys():
            assert k in ["flip", "translate"], "Unrecognized key: %s" % k
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.shuffle = shuffle

    def normalize(self, images):
        return normalize(images)

    def __len__(self):
        n = len(self.images)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        if self.epoch == 0:
            images = self.proc_images["norm"] = self.normalize(self.images)
            # Pre-flip images in order to do every-other epoch flipping scheme
            if self.aug.get("flip", False):
                images = self.proc_images["flip"] = batch_flip_lr(images)
            # Pre-pad images to save time when doing random translation
            pad = self.aug.get("translate", 0)
            if pad > 0:
                self.proc_images["pad"] = F.pad(images, (pad,) * 4, "reflect")

        if self.aug.get("translate", 0) > 0:
            images = batch_crop(self.proc_images["pad"], self.images.shape[-2])
        elif self.aug.get("flip", False):
            images = self.proc_images["flip"]
        else:
            images = self.proc_images["norm"]
        # Flip all images together every other epoch
        if self.aug.get("flip", False):
            if self.epoch % 2 == 1:
                images = images.flip(-1)

        self.epoch += 1

        indices = (torch.randperm if self.shuffle else torch.arange)(len(images), device=images.device)
        for i in range(len(self)):
            idxs = indices[i * self.batch_size : (i + 1) * self.batch_size]
            yield (images[idxs], self.labels[idxs])


# ----------------------------------------------------------------------------------------------------------
# Network


class Flatten(nn.Module):
    def forward(self, x):
        return x.view(x.size(0), -1)


class Mul(nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return x * self.scale


class Conv(nn.Conv2d):
    def __init__(self, in_channels, out_channels, kernel_size=3, padding="same", bias=False):
        super().__init__(in_channels, out_channels, kernel_size=kernel_size, padding=padding, bias=bias)

    def reset_parameters(self):
        super().reset_parameters()
        if self.bias is not None:
            self.bias.data.zero_()
        w = self.weight.data
        torch.nn.init.dirac_(w[: w.size(1)])


class ConvGroup(nn.Module):
    def __init__(self, channels_in, channels_out):
        super().__init__()
        self.conv1 = Conv(channels_in, channels_out, bias=True)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = Conv(channels_out, channels_out, bias=True)
        self.activ = nn.GELU()

    def forward(self, x):
        x = self.conv1(x)
        x = self.pool(x)
        x = self.activ(x)
        x = self.conv2(x)
        x = self.activ(x)
        return x


def make_net(widths=DEFAULT_HYP["widths"], scaling_factor=DEFAULT_HYP["scaling_factor"]):
    """Any number of blocks (main.ts's --widths a,b[,c,...]); the last pool covers the whole map (MaxPool2d(3)
    for three blocks on 32x32 images, MaxPool2d(1) for four)."""
    whiten_kernel_size = 2
    whiten_width = 2 * 3 * whiten_kernel_size**2
    size = 32 - whiten_kernel_size + 1
    # Modules are built in network order (the whitening conv first, as airbench's make_net does): each draws
    # its initial weights from torch's global RNG as it is built, so the order fixes the values after a seed
    # (tests/fixtures/net_*.safetensors and the recorded reference results depend on it).
    whiten = Conv(3, whiten_width, whiten_kernel_size, padding=0, bias=True)
    groups = []
    for cin, cout in zip([whiten_width] + list(widths[:-1]), widths):
        groups.append(ConvGroup(cin, cout))
        size //= 2
    net = nn.Sequential(
        whiten,
        nn.GELU(),
        *groups,
        nn.MaxPool2d(size),
        Flatten(),
        nn.Linear(widths[-1], 10, bias=False),
        Mul(scaling_factor),
    )
    net[0].weight.requires_grad = False
    return net


# ----------------------------------------------------------------------------------------------------------
# Whitening conv initialization


def get_patches(x, patch_shape):
    c, (h, w) = x.shape[1], patch_shape
    return x.unfold(2, h, 1).unfold(3, w, 1).transpose(1, 3).reshape(-1, c, h, w).float()


def get_whitening_parameters(patches, dtype=torch.float64):
    n, c, h, w = patches.shape
    patches_flat = patches.view(n, -1).to(dtype)
    est_patch_covariance = (patches_flat.T @ patches_flat) / n
    eigenvalues, eigenvectors = torch.linalg.eigh(est_patch_covariance, UPLO="U")
    return eigenvalues.flip(0).view(-1, 1, 1, 1), eigenvectors.T.reshape(c * h * w, c, h, w).flip(0)


def init_whitening_conv(layer, train_set, eps=5e-4, dtype=torch.float64):
    """Deviation from the recipe: by default the patch covariance and eigh run in float64 (then the weight
    is rounded to float32). On CPU a float32 sgemm over the ~4.8M patches accumulates ~0.5% relative error,
    which pushes the smallest eigenvalues (~6e-4) negative and blows up their whitening scale (on a GPU the
    blocked float32 accumulation is far more accurate). dtype=torch.float32 gives the literal recipe."""
    patches = get_patches(train_set, patch_shape=layer.weight.data.shape[2:])
    eigenvalues, eigenvectors = get_whitening_parameters(patches, dtype)
    eigenvectors_scaled = eigenvectors / torch.sqrt(eigenvalues + eps)
    layer.weight.data[:] = torch.cat((eigenvectors_scaled, -eigenvectors_scaled)).to(layer.weight.dtype)


# ----------------------------------------------------------------------------------------------------------
# Schedules and hyperparameters


def decoupled_hyperparameters(lr, momentum, weight_decay, batch_size):
    kilostep_scale = 1024 * (1 + 1 / (1 - momentum))
    lr_sgd = lr / kilostep_scale  # un-decoupled learning rate for PyTorch SGD
    wd_sgd = weight_decay * batch_size / kilostep_scale
    return kilostep_scale, lr_sgd, wd_sgd


def triangle(steps, start=0, end=0, peak=0.5):
    xp = torch.tensor([0, int(peak * steps), steps])
    fp = torch.tensor([start, 1, end])
    x = torch.arange(1 + steps)
    m = (fp[1:] - fp[:-1]) / (xp[1:] - xp[:-1])
    b = fp[:-1] - (m * xp[:-1])
    indices = torch.sum(torch.ge(x[:, None], xp[None, :]), 1) - 1
    indices = torch.clamp(indices, 0, len(m) - 1)
    return m[indices] * x + b[indices]


def alpha_schedule_fn(total_train_steps):
    return 0.95**5 * (torch.arange(total_train_steps + 1) / total_train_steps) ** 3


# ----------------------------------------------------------------------------------------------------------
# Lookahead


class LookaheadState:
    def __init__(self, net):
        self.net_ema = {k: v.clone() for k, v in net.state_dict().items()}

    def update(self, net, decay):
        for ema_param, net_param in zip(self.net_ema.values(), net.state_dict().values()):
            if net_param.dtype in (torch.half, torch.float):
                ema_param.lerp_(net_param, 1 - decay)
                net_param.copy_(ema_param)


# ----------------------------------------------------------------------------------------------------------
# Evaluation


def infer(model, images_norm, tta_level=0, chunk=2000):
    def infer_basic(inputs, net):
        return net(inputs).clone()

    def infer_mirror(inputs, net):
        return 0.5 * net(inputs) + 0.5 * net(inputs.flip(-1))

    def infer_mirror_translate(inputs, net):
        logits = infer_mirror(inputs, net)
        pad = 1
        padded_inputs = F.pad(inputs, (pad,) * 4, "reflect")
        inputs_translate_list = [
            padded_inputs[:, :, 0:32, 0:32],
            padded_inputs[:, :, 2:34, 2:34],
        ]
        logits_translate_list = [infer_mirror(inputs_translate, net) for inputs_translate in inputs_translate_list]
        logits_translate = torch.stack(logits_translate_list).mean(0)
        return 0.5 * logits + 0.5 * logits_translate

    model.eval()
    infer_fn = [infer_basic, infer_mirror, infer_mirror_translate][tta_level]
    with torch.no_grad():
        return torch.cat([infer_fn(inputs, model) for inputs in images_norm.split(chunk)])


def evaluate(model, images_norm, labels, tta_level=0, chunk=2000):
    logits = infer(model, images_norm, tta_level, chunk)
    return (logits.argmax(1) == labels).float().mean().item()


# ----------------------------------------------------------------------------------------------------------
# Logging

logging_columns_list = ["run   ", "epoch", "train_loss", "train_acc", "val_acc", "tta_val_acc", "train_time_s"]


def print_columns(columns_list, is_head=False, is_final_entry=False):
    print_string = ""
    for col in columns_list:
        print_string += "|  %s  " % col
    print_string += "|"
    if is_head:
        print("-" * len(print_string))
    print(print_string)
    if is_head or is_final_entry:
        print("-" * len(print_string))
    sys.stdout.flush()


def print_training_details(variables, is_final_entry):
    formatted = []
    for col in logging_columns_list:
        var = variables.get(col.strip(), None)
        if type(var) in (int, str):
            res = str(var)
        elif type(var) is float:
            res = "{:0.4f}".format(var)
        else:
            assert var is None
            res = ""
        formatted.append(res.rjust(len(col)))
    print_columns(formatted, is_final_entry=is_final_entry)


def write_json(path, obj):
    """Writes obj as indented JSON, atomically (temp file + rename)."""
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
    os.replace(path + ".tmp", path)
    print("wrote", os.path.abspath(path))


# ----------------------------------------------------------------------------------------------------------
# Training


def load_train_data(data_dir, train_n):
    """CIFAR-10 as (train images, train labels, test images, test labels), the training set cut to train_n."""
    train_images, train_labels, test_images, test_labels = load_cifar(data_dir)
    if train_n is not None:
        train_images, train_labels = train_images[:train_n], train_labels[:train_n]
    return train_images, train_labels, test_images, test_labels


def run_trials(args, data, train_run):
    """The table header, then args.runs calls of train_run(run, args, data). Returns the results, their TTA
    accuracies (float64), the mean, the std (0 for one run) and each run's wall seconds."""
    print_columns(logging_columns_list, is_head=True)
    results, wall = [], []
    for run in range(args.runs):
        t0 = time.perf_counter()
        results.append(train_run(run, args, data))
        wall.append(time.perf_counter() - t0)
    accs = torch.tensor([r["tta_val_acc"] for r in results], dtype=torch.float64)
    mean, std = accs.mean().item(), (accs.std().item() if len(accs) > 1 else 0.0)
    return results, accs, mean, std, wall


def train_run(run, args, data):
    train_images_u8, train_labels, test_images_u8, test_labels = data
    torch.manual_seed(args.seed + run)
    widths = args.widths
    batch_size = args.batch_size
    epochs = args.epochs
    momentum = args.momentum
    kilostep_scale, lr, wd = decoupled_hyperparameters(args.lr, momentum, args.weight_decay, batch_size)

    loss_fn = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing, reduction="none")
    test_images = normalize(test_images_u8.float() / 255)
    aug = {"flip": True, "translate": 2}
    train_loader = CifarLoader(train_images_u8, train_labels, batch_size=batch_size, aug=aug)
    total_train_steps = math.ceil(len(train_loader) * epochs)

    model = make_net(widths)
    current_steps = 0

    optimizer = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=wd / lr, momentum=momentum, nesterov=True)
    lr_schedule = triangle(total_train_steps, start=0.2, end=0.07, peak=0.23)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: lr_schedule[i])
    alpha_schedule = alpha_schedule_fn(total_train_steps)
    lookahead_state = LookaheadState(model)

    train_time = 0.0
    epoch_rows = []
    t0 = time.perf_counter()
    # Initialize the whitening layer using (up to) the first 5000 training images
    n_whiten = min(5000, len(train_images_u8))
    whiten_dtype = torch.float64 if args.whiten_precision == "float64" else torch.float32
    init_whitening_conv(model[0], normalize(train_images_u8[:n_whiten].float() / 255), dtype=whiten_dtype)
    train_time += time.perf_counter() - t0

    train_loss = train_acc = None
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
                if lookahead_state is not None:
                    lookahead_state.update(model, decay=1.0)
                break
        train_time += time.perf_counter() - t0

        # Accuracy and loss from the last training batch of the epoch
        train_acc = (outputs.detach().argmax(1) == labels).float().mean().item()
        train_loss = loss.item() / batch_size
        val_acc = evaluate(model, test_images, test_labels, tta_level=0, chunk=args.eval_batch)
        epoch_rows.append(
            {
                "epoch": epoch,
                "steps": current_steps,
                "train_loss": train_loss,
                "train_acc": train_acc,
                "val_acc": val_acc,
                "train_time_s": train_time,
            }
        )
        print_training_details(
            {
                "run": run if epoch == 0 else None,
                "epoch": epoch,
                "train_loss": train_loss,
                "train_acc": train_acc,
                "val_acc": val_acc,
                "train_time_s": train_time,
            },
            is_final_entry=False,
        )

    t0 = time.perf_counter()
    tta_val_acc = evaluate(model, test_images, test_labels, tta_level=args.tta, chunk=args.eval_batch)
    tta_time = time.perf_counter() - t0
    print_training_details(
        {"epoch": "eval", "tta_val_acc": tta_val_acc, "train_time_s": train_time}, is_final_entry=True
    )
    return {
        "run": run,
        "seed": args.seed + run,
        "total_train_steps": total_train_steps,
        "epochs": epoch_rows,
        "final_val_acc": epoch_rows[-1]["val_acc"],
        "tta_val_acc": tta_val_acc,
        "train_time_s": train_time,
        "tta_eval_time_s": tta_time,
    }


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None, help="default: <repo>/data/cifar-10-batches-bin")
    p.add_argument("--epochs", type=float, default=DEFAULT_HYP["epochs"])
    p.add_argument("--batch-size", type=int, default=DEFAULT_HYP["batch_size"])
    p.add_argument("--lr", type=float, default=DEFAULT_HYP["lr"], help="decoupled lr (per 1024 examples)")
    p.add_argument("--momentum", type=float, default=DEFAULT_HYP["momentum"])
    p.add_argument("--weight-decay", type=float, default=DEFAULT_HYP["weight_decay"], help="decoupled wd")
    p.add_argument("--label-smoothing", type=float, default=DEFAULT_HYP["label_smoothing"])
    p.add_argument("--whiten-bias-epochs", type=int, default=DEFAULT_HYP["whiten_bias_epochs"])
    p.add_argument("--widths", type=str, default=",".join(str(w) for w in DEFAULT_HYP["widths"]))
    p.add_argument("--train-n", type=int, default=None, help="use only the first N training images")
    p.add_argument("--tta", type=int, default=DEFAULT_HYP["tta_level"], choices=[0, 1, 2])
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="run r uses torch.manual_seed(seed + r)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--whiten-precision", choices=["float64", "float32"], default="float64",
        help="precision of the whitening patch covariance + eigh (float32 = literal recipe; inaccurate on CPU)",
    )
    p.add_argument(
        "--eval-batch", type=int, default=250,
        help="inference chunk size (the recipe uses 2000; same results, but large chunks are very slow on CPU)",
    )
    p.add_argument("--out", type=str, default=None, help="write a JSON result here")
    args = p.parse_args(argv)
    args.widths = tuple(int(w) for w in args.widths.split(","))
    return args


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    data_dir = args.data_dir or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "cifar-10-batches-bin")
    data = load_train_data(data_dir, args.train_n)
    train_images, test_images = data[0], data[2]
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, train {len(train_images)}, "
        f"test {len(test_images)}, widths {args.widths}, epochs {args.epochs}, batch {args.batch_size}, "
        f"lr {args.lr}, momentum {args.momentum}, wd {args.weight_decay}, tta {args.tta}"
    )
    results, accs, mean, std, wall = run_trials(args, data, train_run)
    print("Mean: %.4f Std: %.4f  (tta level %d, %d runs)" % (mean, std, args.tta, len(accs)))
    print("Seconds per run: train %.1f, wall %.1f" % (
        sum(r["train_time_s"] for r in results) / len(results), sum(wall) / len(wall)))
    kilostep_scale, lr_sgd, wd_sgd = decoupled_hyperparameters(args.lr, args.momentum, args.weight_decay, args.batch_size)
    out = {
        "command": "/usr/bin/python3 tests/torch_reference_train.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "config": {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "momentum": args.momentum,
            "weight_decay": args.weight_decay,
            "label_smoothing": args.label_smoothing,
            "whiten_bias_epochs": args.whiten_bias_epochs,
            "widths": list(args.widths),
            "train_n": len(train_images),
            "whiten_n": min(5000, len(train_images)),
            "test_n": len(test_images),
            "tta_level": args.tta,
            "runs": args.runs,
            "seed": args.seed,
            "threads": torch.get_num_threads(),
            "eval_batch": args.eval_batch,
            "whiten_precision": args.whiten_precision,
            "kilostep_scale": kilostep_scale,
            "lr_sgd": lr_sgd,
            "wd_sgd": wd_sgd,
            "precision": "float32 CPU (whitening covariance/eigh: see whiten_precision)",
        },
        "environment": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
        },
        "accs": accs.tolist(),
        "mean": mean,
        "std": std,
        "mean_train_time_s": sum(r["train_time_s"] for r in results) / len(results),
        "mean_wall_time_s": sum(wall) / len(wall),
        "runs": results,
    }
    if args.out:
        write_json(args.out, out)
    return out


if __name__ == "__main__":
    main()
