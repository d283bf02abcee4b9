"""Trainer throughput against a plain hand-written PyTorch loop, same model, data and batch, one run.

What it measures: images/s of ``serobust.train`` (one epoch over the data, test evaluation excluded from
the timing by subtracting it: we time the training loop only through the per-epoch ``time_s`` the trainer
records) versus a bare ``for batch: forward, loss, backward, step`` loop with the same optimizer settings
and batch order, in the same memory format (channels_last, the trainer's default). Each side runs
``--repeats`` epochs after one warm-up epoch; the best epoch of each counts. Expected ratio (trainer /
plain) >= 0.95. Also reports the plain loop with contiguous (NCHW) tensors, the measurement behind the
trainer's default of channels_last on the CPU as well as on CUDA.

Recorded on this project's 2-core CPU machine (quiet, 2 threads, one run each):
    cnn, mnist5k, batch 64:            trainer/plain 1.043; channels_last 1.34x contiguous
    cnn SE twin, mnist5k, batch 64:    trainer/plain 1.014; channels_last 1.22x contiguous
    cnn, mnist5k, batch 128:           trainer/plain 1.088; channels_last 1.45x contiguous
    resnet20, cifar-like, batch 128:   trainer/plain 1.015 (371 vs 377 images/s); channels_last 1.11x
(those ratios were taken with the trainer still on contiguous tensors; the plain loop then matched it)

    python benchmarks/train_throughput.py                   # cnn on mnist5k, CPU
    python benchmarks/train_throughput.py --arch resnet20 --data cifar-like --device cuda
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import serobust
from serobust.data import DatasetBundle, ImageTensorDataset
from serobust.trainer import TrainConfig, resolve_device, train


def _data(name: str) -> DatasetBundle:
    if name == "cifar-like":  # random 32x32 RGB, 10 classes: throughput does not depend on content
        g = torch.Generator().manual_seed(0)
        x = (torch.rand(10_000, 3, 32, 32, generator=g) * 255).to(torch.uint8)
        y = torch.randint(0, 10, (10_000,), generator=g)
        ds = ImageTensorDataset(x, y)
        return DatasetBundle.from_tensors("cifar-like", train=ds, test=ImageTensorDataset(x[:1000], y[:1000]))
    return serobust.load_dataset(name)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain_epoch(model, x, y, batch_size, lr, device, channels_last=False) -> float:
    """A bare training epoch; returns images/s."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    model.train()
    perm = torch.randperm(len(y), device=device)
    _sync(device)
    t0 = time.perf_counter()
    for i in range(0, len(y), batch_size):
        idx = perm[i : i + batch_size]
        xb, yb = x[idx], y[idx]
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = F.cross_entropy(model(xb).float(), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return len(y) / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="cnn")
    p.add_argument("--data", default="mnist5k", help="a serobust dataset name or 'cifar-like'")
    p.add_argument("--device", default=None)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--se", action="store_true", help="time the SE twin instead of the baseline")
    args = p.parse_args()
    device = resolve_device(args.device)
    data = _data(args.data)
    x, y = data.train.tensors(device=device)

    def fresh(channels_last=True):
        m = serobust.build_model(args.arch, data.num_classes, data.in_channels, se=args.se, seed=0,
                                 mean=data.mean, std=data.std).to(device)
        return m.to(memory_format=torch.channels_last) if channels_last else m

    plain = max(plain_epoch(fresh(), x, y, args.batch_size, 0.05, device, True) for _ in range(args.repeats + 1))
    cfg = TrainConfig(epochs=args.repeats + 1, batch_size=args.batch_size, lr=0.05)
    _, hist = train(fresh(), data, cfg, device=device, progress=False)
    ours = hist["images_per_s"].iloc[1:].max()
    print(f"device={device} arch={args.arch} se={args.se} data={args.data} batch={args.batch_size} "
          f"threads={torch.get_num_threads()}")
    print(f"plain loop : {plain:10.1f} images/s (best of {args.repeats + 1} epochs)")
    print(f"serobust   : {ours:10.1f} images/s (best of {args.repeats} epochs after warm-up)")
    print(f"ratio      : {ours / plain:.3f}  (expected >= 0.95)")
    contiguous = max(plain_epoch(fresh(False), x, y, args.batch_size, 0.05, device, False) for _ in range(args.repeats))
    print(f"plain loop, contiguous NCHW: {contiguous:10.1f} images/s (channels_last is {plain / contiguous:.3f}x that)")


if __name__ == "__main__":
    main()
