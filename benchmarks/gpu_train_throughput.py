"""Seconds per 50k-image two-view epoch of SuperInfo pre-training, ResNet-18 (CIFAR stem) on 32x32 images, on one
GPU: synthetic uint8 images resident on the GPU, augmentation on the GPU (random resized crop + flip through one
batched affine grid_sample, colour jitter, random grayscale), bf16 autocast, channels_last, NT-Xent + KL
superfluous terms, Adam.  No data loader, so this is the model's ceiling, not the input pipeline's.

    python benchmarks/gpu_train_throughput.py                   # < 8 min on one H100 (one warm-up + 2 timed epochs)
    python benchmarks/gpu_train_throughput.py --compile         # with torch.compile
    python benchmarks/gpu_train_throughput.py --dry-run         # anywhere: tiny sizes on CPU (or the GPU)

Prints one JSON line per timed epoch and a summary; ``--out FILE`` writes the summary JSON.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from superinfo.trainer.models import build_model  # noqa: E402
from superinfo.objective import GaussianPosterior, SuperInfoLoss  # noqa: E402
from superinfo.trainer.optim import build_optimizer  # noqa: E402

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def gpu_augment(x_uint8: torch.Tensor, size: int, gen: torch.Generator, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                jitter: float = 0.5, p_jitter: float = 0.8, p_gray: float = 0.2) -> torch.Tensor:
    """SimCLR CIFAR augmentation on a GPU batch [N, 3, H, W] uint8 -> normalised float [N, 3, size, size]."""
    n, dev = x_uint8.shape[0], x_uint8.device
    x = x_uint8.float().div_(255)

    def u(lo, hi, shape=(n,)):
        return torch.rand(shape, device=dev, generator=gen) * (hi - lo) + lo

    area = u(*scale)
    logr = u(math.log(ratio[0]), math.log(ratio[1]))
    w = torch.sqrt(area * torch.exp(logr)).clamp(max=1.0)     # crop width / height as fractions of the image
    h = torch.sqrt(area / torch.exp(logr)).clamp(max=1.0)
    cx, cy = u(-1, 1) * (1 - w), u(-1, 1) * (1 - h)             # crop centre in [-1, 1] coordinates
    flip = torch.where(torch.rand(n, device=dev, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 2] = w * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    grid = F.affine_grid(theta, (n, 3, size, size), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    apply = (torch.rand(n, 1, 1, 1, device=dev, generator=gen) < p_jitter).float()
    b = 1 + u(-0.8 * jitter, 0.8 * jitter, (n, 1, 1, 1))
    c = 1 + u(-0.8 * jitter, 0.8 * jitter, (n, 1, 1, 1))
    s = 1 + u(-0.8 * jitter, 0.8 * jitter, (n, 1, 1, 1))
    gray_w = torch.tensor([0.299, 0.587, 0.114], device=dev).view(1, 3, 1, 1)
    y = x * b
    mean = (y * gray_w).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    y = (y - mean) * c + mean
    g = (y * gray_w).sum(1, keepdim=True)
    y = ((y - g) * s + g).clamp_(0, 1)
    x = apply * y + (1 - apply) * x
    gray = (torch.rand(n, 1, 1, 1, device=dev, generator=gen) < p_gray).float()
    x = gray * (x * gray_w).sum(1, keepdim=True).expand_as(x) + (1 - gray) * x
    m = torch.tensor(CIFAR_MEAN, device=dev).view(1, 3, 1, 1)
    sd = torch.tensor(CIFAR_STD, device=dev).view(1, 3, 1, 1)
    return ((x - m) / sd).contiguous(memory_format=torch.channels_last)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=50_000)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--epochs", type=int, default=2, help="timed epochs (after one warm-up epoch)")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--lambda-a", type=float, default=0.1)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--no-bf16", action="store_true")
    p.add_argument("--max-seconds", type=float, default=420, help="stop timing early past this (keeps < 8 min)")
    p.add_argument("--dry-run", action="store_true", help="tiny sizes; runs on CPU")
    p.add_argument("--out", help="write the summary JSON here")
    args = p.parse_args(argv)

    cuda = torch.cuda.is_available()
    if not cuda and not args.dry_run:
        sys.exit("no CUDA device: run with --dry-run to exercise the script on CPU")
    if args.dry_run:
        args.images, args.batch_size, args.epochs, args.width = 64, 16, 1, 8
    dev = torch.device("cuda" if cuda else "cpu")
    bf16 = cuda and not args.no_bf16
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)
    gen = torch.Generator(device=dev).manual_seed(0)

    data = torch.randint(0, 256, (args.images, 3, args.image_size, args.image_size), dtype=torch.uint8,
                         device=dev, generator=gen)
    model = build_model("resnet18", width=args.width, cifar_stem=True).to(dev, memory_format=torch.channels_last)
    loss_fn = SuperInfoLoss(128, lambda_a=args.lambda_a, temperature=0.5).to(dev)
    opt = build_optimizer("adam", [model, loss_fn], 1e-3, 1e-6)
    bs, steps = args.batch_size, args.images // args.batch_size

    def forward_loss(x):
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            _, post = model(x)
        p1 = GaussianPosterior(post.mean[:bs], post.logvar[:bs])
        p2 = GaussianPosterior(post.mean[bs:], post.logvar[bs:])
        return loss_fn(p1, p2).total

    fl = torch.compile(forward_loss) if args.compile else forward_loss

    def epoch():
        perm = torch.randperm(args.images, device=dev, generator=gen)
        loss = None
        for i in range(steps):
            batch = data[perm[i * bs:(i + 1) * bs]]
            x = torch.cat([gpu_augment(batch, args.image_size, gen), gpu_augment(batch, args.image_size, gen)])
            loss = fl(x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return float(loss.detach())    # one sync per epoch

    t0 = time.perf_counter()
    epoch()
    if cuda:
        torch.cuda.synchronize()
    warm = time.perf_counter() - t0
    print(json.dumps({"warmup_epoch_s": round(warm, 3)}), flush=True)
    times = []
    for e in range(args.epochs):
        t0 = time.perf_counter()
        loss = epoch()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        print(json.dumps({"epoch": e + 1, "seconds": round(times[-1], 3), "loss": round(loss, 4)}), flush=True)
        if sum(times) + warm > args.max_seconds:
            break
    per_epoch = min(times) * (50_000 / (steps * bs))     # scaled to 50k images (drop_last remainder)
    summary = {
        "device": torch.cuda.get_device_name() if cuda else "cpu", "dry_run": args.dry_run, "bf16": bf16,
        "channels_last": True, "compile": args.compile, "batch_size": bs, "images": args.images,
        "width": args.width, "seconds_per_50k_epoch": round(per_epoch, 3),
        "images_per_s": round(steps * bs / min(times), 1), "timed_epochs": [round(t, 3) for t in times],
        "warmup_epoch_s": round(warm, 3), "torch": torch.__version__,
        "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
    }
    print(json.dumps(summary), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
