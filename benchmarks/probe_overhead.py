"""Overhead of ExcitationProbe(streaming=True) on a forward pass: probe on vs off, same model and batch.

Measures, for the SE twins of ``cnn`` on 28x28x1 input and ``resnet20`` on 32x32x3 input (random
weights in eval mode, random [0, 1] inputs, ``torch.no_grad``), the median wall time of one forward
pass over ``--repeats`` timed passes after ``--warmup`` untimed ones, with the probe's hooks attached
(streaming aggregates: per-block count/mean/M2 merged on the device) and without. On and off passes
are interleaved so that drifting machine load hits both alike; on CUDA each pass is bracketed by
``torch.cuda.synchronize()``. The ratio on/off is expected at or below 1.10.

Recorded (CPU, 2 cores shared with other jobs, batch 128, median of 25 interleaved pairs after 3
warmups, OMP_NUM_THREADS=1; each line one run, so read the ratios to about +-0.05 under that load):

    model     SE blocks  off ms  on ms  wall on/off  CPU-time on/off
    cnn           5       98.5    92.6     0.94          1.03
    resnet20      9      357.4   365.4     1.02          1.02

With the per-batch input check (one aminmax per forward) and 2 threads, quiet machine, 30 pairs: cnn 1.12
(CPU 1.13), resnet20 1.08 (CPU 1.07); a run with 15 pairs read 1.15 / 1.06.
Before the input check, with 2 threads (15 pairs): cnn 1.06 (CPU 1.07), resnet20 1.02 (CPU 1.03). Before the streaming hook
took |g| from s and the per-channel norms of u (three passes over the maps instead of two), the cnn
ratio read 1.09-1.11. "CPU-time" is this process's CPU time, less sensitive to other jobs' load.

Usage::

    python benchmarks/probe_overhead.py --device cpu --batch 128 --repeats 15
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from serobust import build_model
from serobust.excitation.probe import ExcitationProbe

CASES = (("cnn", 1, 28), ("resnet20", 3, 32))  # (architecture, input channels, image side)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_once(model: torch.nn.Module, x: torch.Tensor, probe: ExcitationProbe | None) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of one forward pass."""
    device = x.device
    _sync(device)
    start, start_cpu = time.perf_counter(), time.process_time()
    if probe is None:
        model(x)
    else:
        with probe:
            model(x)
    _sync(device)
    return time.perf_counter() - start, time.process_time() - start_cpu


@torch.no_grad()
def bench(arch: str, in_channels: int, side: int, *, device: torch.device, batch: int, repeats: int,
          warmup: int) -> dict[str, float]:
    model = build_model(arch, num_classes=10, in_channels=in_channels, se=True, seed=0).to(device).eval()
    x = torch.rand(batch, in_channels, side, side, generator=torch.Generator().manual_seed(0)).to(device)
    probe = ExcitationProbe(model, streaming=True)
    for _ in range(warmup):
        _time_once(model, x, None)
        _time_once(model, x, probe)
    off, on = [], []
    for i in range(repeats):  # alternate which goes first, so order effects cancel
        if i % 2:
            on.append(_time_once(model, x, probe))
            off.append(_time_once(model, x, None))
        else:
            off.append(_time_once(model, x, None))
            on.append(_time_once(model, x, probe))
    agg = probe.aggregates()
    if any(a["count"] != batch * (repeats + warmup) for a in agg.values()):  # the probe really recorded
        raise RuntimeError("the probe did not record every timed pass")
    t_off, t_on = (statistics.median(t[0] for t in ts) for ts in (off, on))
    c_off, c_on = (statistics.median(t[1] for t in ts) for ts in (off, on))
    return {"off_ms": 1e3 * t_off, "on_ms": 1e3 * t_on, "ratio": t_on / t_off,
            "cpu_ratio": c_on / c_off, "blocks": len(probe.blocks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"device={device} batch={args.batch} repeats={args.repeats} warmup={args.warmup} "
          f"threads={torch.get_num_threads()}")
    print(f"{'model':<10} {'SE blocks':>9} {'off ms':>9} {'on ms':>9} {'on/off':>7} {'cpu on/off':>11}")
    for arch, cin, side in CASES:
        r = bench(arch, cin, side, device=device, batch=args.batch, repeats=args.repeats, warmup=args.warmup)
        print(f"{arch:<10} {r['blocks']:>9d} {r['off_ms']:>9.2f} {r['on_ms']:>9.2f} {r['ratio']:>7.3f} {r['cpu_ratio']:>11.3f}")


if __name__ == "__main__":
    main()
