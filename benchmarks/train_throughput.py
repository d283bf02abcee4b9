"""Trainer throughput against a plain hand-written PyTorch loop: baseline and SE twin, eager steps and
CUDA-graph steps, and a batch-size sweep, all in one run on one device.

What it measures, per member (the baseline and its SE twin, reduction ``--reduction``) and batch size:

* plain: images/s of a bare ``for batch: forward, loss, backward, step`` epoch (SGD with Nesterov
  momentum, channels_last, bf16 autocast on CUDA), no augmentation; best of ``--repeats`` + 1 epochs;
* trainer off / on: images/s of ``serobust.train`` with ``TrainConfig(cuda_graph="off")`` (eager steps)
  and ``cuda_graph="on"`` (each step one CUDA graph; CUDA only), from the trainer's own per-epoch
  ``images_per_s`` (training loop only, test evaluation excluded, synchronized with the GPU at the end of
  each epoch); best of ``--repeats`` epochs after a first one that warms up and captures;
* ratio: trainer / plain (expected >= 0.95), and how throughput grows from the smallest to the largest
  batch (close to 1.0x: the step is bound by launch overhead, not by the GPU).

The trainer does a little more than the plain loop per step (augmentation when the dataset has one,
a per-step learning rate, weight decay on weights only, running loss and accuracy on the device).

Measured on an H100 by a colleague before CUDA graphs (torch 2.11, real CIFAR-10, ResNet-20, batch 256):
the trainer ran 22,900 images/s (SE twin, r = 16: 11,000 vs 14,200 for the plain loop, ratio 0.77),
and the plain loop 91,100 images/s at batch 1024: about 11 ms a step whatever the batch. Expected with
``cuda_graph = "on"``: SE-twin ratio >= 0.95 and throughput growing with the batch. Not yet measured:
run ``--device cuda --arch resnet20 --data cifar-like`` on a GPU machine and record the table here.

Recorded on this project's 2-core CPU machine (torch 2.14, ``--threads 1 --repeats 3``, one run, no other
job running: 1-minute load average 0.55 before and 0.92 after; ``cuda_graph = "on"`` needs CUDA):
    cnn, mnist5k, r = 16     batch   plain   trainer off   ratio
    baseline                   256    1805          1881   1.042
    baseline                  1024    1356          1454   1.072
    SE twin                    256    1414          1417   1.002
    SE twin                   1024    1159          1311   1.131
    batch 1024 / batch 256: baseline plain 0.75x, trainer 0.77x; SE twin plain 0.82x, trainer 0.93x
On the CPU the step is compute-bound (no launch overhead to remove): the trainer keeps up with the plain
loop, and a larger batch does not help. A run with 2 threads right after was disturbed by another job
(load rose to 2.4; baseline at batch 256: plain 1229 vs trainer 3090 images/s) and is not recorded.

Earlier CPU measurements (quiet machine, 2 threads, one run each), behind the trainer's channels_last default:
    cnn, mnist5k, batch 64:            trainer/plain 1.043; channels_last 1.34x contiguous
    cnn SE twin, mnist5k, batch 64:    trainer/plain 1.014; channels_last 1.22x contiguous
    cnn, mnist5k, batch 128:           trainer/plain 1.088; channels_last 1.45x contiguous
    resnet20, cifar-like, batch 128:   trainer/plain 1.015 (371 vs 377 images/s); channels_last 1.11x
(``--layout`` repeats the channels_last comparison for the first batch size.)

    python benchmarks/train_throughput.py                                  # cnn on mnist5k, CPU
    python benchmarks/train_throughput.py --arch resnet20 --data cifar-like --device cuda
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import serobust
from serobust.data import DatasetBundle, ImageTensorDataset
from serobust.runtime import resolve_device
from serobust.trainer import TrainConfig, train


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
        torch.cuda.synchronize(device)


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
    p.add_argument("--batch-sizes", default="256,1024", help="comma-separated batch sizes to sweep")
    p.add_argument("--reduction", type=float, default=16, help="the SE twin's reduction ratio")
    p.add_argument("--repeats", type=int, default=2, help="timed epochs after one warm-up epoch")
    p.add_argument("--layout", action="store_true", help="also time the plain loop on contiguous NCHW tensors")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data = _data(args.data)
    x, y = data.train.tensors(device=device)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    modes = ("off", "on") if device.type == "cuda" else ("off",)

    def fresh(se: bool, channels_last: bool = True):
        m = serobust.build_model(args.arch, data.num_classes, data.in_channels, se=se, reduction=args.reduction,
                                 seed=0, mean=data.mean, std=data.std).to(device)
        return m.to(memory_format=torch.channels_last) if channels_last else m

    print(f"device={device} arch={args.arch} data={args.data} ({len(y)} images) reduction={args.reduction:g} "
          f"threads={torch.get_num_threads()} torch={torch.__version__}; images/s, best of {args.repeats} epochs")
    if device.type != "cuda":
        print("cuda_graph='on' needs CUDA: only the eager trainer ('off') is timed here")
    print(f"{'member':10s} {'batch':>6s} {'plain':>9s}" + "".join(f" {'trainer ' + m:>12s} {'ratio':>6s}" for m in modes))
    results: dict[tuple[str, str, int], float] = {}
    for member, se in (("baseline", False), ("SE twin", True)):
        for b in batch_sizes:
            plain = max(plain_epoch(fresh(se), x, y, b, 0.05, device, True) for _ in range(args.repeats + 1))
            results[member, "plain", b] = plain
            line = f"{member:10s} {b:6d} {plain:9.0f}"
            for mode in modes:
                cfg = TrainConfig(epochs=args.repeats + 1, batch_size=b, lr=0.05, cuda_graph=mode)
                _, hist = train(fresh(se), data, cfg, device=device, progress=False)
                ours = hist["images_per_s"].iloc[1:].max()
                results[member, mode, b] = ours
                line += f" {ours:12.0f} {ours / plain:6.3f}"
            print(line, flush=True)
    if len(batch_sizes) > 1:
        lo, hi = batch_sizes[0], batch_sizes[-1]
        print(f"throughput at batch {hi} / at batch {lo} (1.0x: flat, launch-bound; up to {hi / lo:g}x: GPU-bound):")
        for member in ("baseline", "SE twin"):
            growth = "  ".join(f"{kind} {results[member, kind, hi] / results[member, kind, lo]:.2f}x"
                               for kind in ("plain", *modes))
            print(f"  {member:10s} {growth}")
    if args.layout:
        b = batch_sizes[0]
        nchw = max(plain_epoch(fresh(False, False), x, y, b, 0.05, device, False) for _ in range(args.repeats + 1))
        print(f"plain loop, baseline, batch {b}, contiguous NCHW: {nchw:9.0f} images/s "
              f"(channels_last is {results['baseline', 'plain', b] / nchw:.3f}x that)")


if __name__ == "__main__":
    main()
