"""Overhead of serobust.evaluate over a bare torchattacks loop: PGD-10, same model, same batches, same run.

Measures the wall time (and this process's CPU time) of

* ``evaluate``: ``serobust.evaluate(model, (x, y), attack("pgd", steps=10), eps)``, which also computes
  clean accuracy, the clean input gradient (``grad_norm``, ``zero_grad_frac``: one extra forward and
  backward per batch), per-example norms, the worst-case row and the sanity checks;
* ``bare``: ``for xb, yb in batches: torchattacks.PGD(model, eps, alpha, steps=10)(xb, yb)`` plus clean
  and robust accuracy (one no-grad forward each), accumulated on the device;
* ``bare+grad``: the bare loop plus the same clean input-gradient pass evaluate makes, so that
  ``evaluate / bare+grad`` isolates the harness's own cost from that extra work.

Model: the ``cnn`` baseline on 28x28x1 random [0, 1] inputs (``--data random``) or the 8x8 sklearn digits
(``--data digits``) on CPU; ``resnet20`` on 32x32x3 random inputs on CUDA. Weights are random (timing only)
unless ``--checkpoint`` gives a state dict. Each variant runs once untimed, then ``--repeats`` times
interleaved (evaluate, bare, bare+grad, evaluate, ...) so drifting machine load hits all alike; medians are
reported. On CUDA every timing is bracketed by ``torch.cuda.synchronize()``, and ``autocast=True`` vs
``False`` is compared too (speed-up and robust-accuracy difference in points; autocast should become the
default only if the difference stays within 0.5 points on a trained model, which needs ``--checkpoint``).

Recorded (CPU, 2 cores shared with other engineers' jobs, OMP_NUM_THREADS=1, cnn on 28x28x1 random data,
random weights; medians of the interleaved runs after 1 warm-up; each block is one run of the script, so
read ratios to about +-0.05 under that load):

    --n 1024 --batch-size 256 --repeats 7 (one eps, 0.1):
    variant      wall s   cpu s      evaluate / bare       1.141 (cpu 1.139)
    evaluate     12.291  11.963      evaluate / bare+grad  1.027 (cpu 1.023)
    bare         10.769  10.507
    bare+grad    11.969  11.693

    --n 512 --batch-size 256 --repeats 5 --n-eps 4 (eps 0.025, 0.05, 0.075, 0.1):
    evaluate     21.684  21.366      evaluate / bare       0.987 (cpu 0.993)
    bare         21.963  21.519      evaluate / bare+grad  1.040 (cpu 1.043)
    bare+grad    20.847  20.490

After the attacks/ package (RNG forked once per call, per-batch checks on the device), quiet machine,
2 threads, defaults with --repeats 5: evaluate 3.659 s, evaluate(input_gradients=False) 3.381 s, bare 3.284 s,
bare+grad 3.648 s; evaluate / bare 1.114, evaluate / bare+grad 1.003, like for like
(input_gradients=False / bare) 1.030. Not yet measured on a GPU (the target there is <= 1.10).

Earlier (the single-module harness), quiet machine, 2 threads, default evaluate, --repeats 7:

    evaluate 5.942 s, evaluate(input_gradients=False) 6.612 s, bare 6.031 s, bare+grad 6.591 s
    evaluate / bare 0.985, evaluate / bare+grad 0.901, evaluate(input_gradients=False) / bare 1.096

The variants differ by about +-10% depending on their place in the interleaved order (the no-gradient
variant, which does strictly less work than the default, timed slower), so read these ratios to +-0.1;
the default call is within the 1.05 target against the bare loop.

So the harness itself costs about 3% over the bare loop; the clean input-gradient pass behind
``grad_norm``/``zero_grad_frac`` costs one PGD step's worth per batch, about 11% for a single PGD-10 run
and shared by every (attack, eps) of a call (lost in the noise at 4 budgets). Not yet measured on CUDA:
run the script there for the resnet20 ratio and the autocast verdict.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/attack_overhead.py --device cpu --n 1024 --batch-size 256 --repeats 7
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
import torchattacks

from serobust import attack, build_model, evaluate


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device) -> tuple[float, float, object]:
    _sync(device)
    start, start_cpu = time.perf_counter(), time.process_time()
    out = fn()
    _sync(device)
    return time.perf_counter() - start, time.process_time() - start_cpu, out


def _bare(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: list[float], batch: int,
          device: torch.device, with_grad: bool) -> float:
    """torchattacks PGD-10 per batch and eps, plus clean and robust accuracy; returns the last robust accuracy."""
    correct = torch.zeros((), dtype=torch.long, device=device)
    robust = torch.zeros(len(eps), dtype=torch.long, device=device)
    for i in range(0, len(x), batch):
        xb, yb = x[i : i + batch].to(device), y[i : i + batch].to(device)
        if with_grad:
            xg = xb.clone().requires_grad_(True)
            torch.autograd.grad(F.cross_entropy(model(xg), yb, reduction="sum"), xg)
        with torch.no_grad():
            ok = model(xb).argmax(1) == yb
        correct += ok.sum()
        for j, e in enumerate(eps):
            adv = torchattacks.PGD(model, eps=e, alpha=2.5 * e / 10, steps=10)(xb, yb)
            with torch.no_grad():
                robust[j] += (ok & (model(adv).argmax(1) == yb)).sum()
    return robust[-1].item() / len(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--n", type=int, default=1024, help="examples per run")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per variant (medians reported)")
    parser.add_argument("--eps", type=float, default=None, help="Linf eps (default 0.1 on 1-channel data, 8/255 else)")
    parser.add_argument("--n-eps", type=int, default=1,
                        help="budgets per call (eps * k / n_eps, k = 1..n_eps): evaluate's clean pass is shared by all")
    parser.add_argument("--data", choices=("random", "digits"), default="random")
    parser.add_argument("--checkpoint", default=None, help="optional state dict for the model (trained weights)")
    args = parser.parse_args()

    device = torch.device(args.device)
    torch.manual_seed(0)
    if args.data == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)[: args.n]  # (N, 1, 8, 8)
        y = torch.tensor(d.target, dtype=torch.long)[: args.n]
        arch, channels = "cnn", 1
    elif device.type == "cuda":
        x, y, arch, channels = torch.rand(args.n, 3, 32, 32), torch.randint(0, 10, (args.n,)), "resnet20", 3
    else:
        x, y, arch, channels = torch.rand(args.n, 1, 28, 28), torch.randint(0, 10, (args.n,)), "cnn", 1
    eps = args.eps if args.eps is not None else (0.1 if channels == 1 else 8 / 255)
    model = build_model(arch, 10, channels).to(device).eval()
    if args.checkpoint:
        from serobust.io import load_checkpoint

        state = load_checkpoint(args.checkpoint)
        model.load_state_dict(state.get("model", state))
    spec = attack("pgd", steps=10)
    eps_list = [eps * (k + 1) / args.n_eps for k in range(args.n_eps)]

    variants: dict[str, Callable[[], float]] = {
        "evaluate": lambda: float(evaluate(model, (x, y), spec, eps_list, batch_size=args.batch_size,
                                           progress=False).summary["robust_acc"].iloc[args.n_eps - 1]),
        "evaluate(no grad diag)": lambda: float(evaluate(model, (x, y), spec, eps_list, batch_size=args.batch_size,
                                                         progress=False, input_gradients=False).summary["robust_acc"].iloc[args.n_eps - 1]),
        "bare": lambda: _bare(model, x, y, eps=eps_list, batch=args.batch_size, device=device, with_grad=False),
        "bare+grad": lambda: _bare(model, x, y, eps=eps_list, batch=args.batch_size, device=device, with_grad=True),
    }
    if device.type == "cuda":
        variants["evaluate(autocast)"] = lambda: float(evaluate(
            model, (x, y), spec, eps_list, batch_size=args.batch_size, autocast=True,
            progress=False).summary["robust_acc"].iloc[args.n_eps - 1])

    for fn in variants.values():  # warm-up (also cuDNN autotuning)
        _timed(fn, device)
    wall: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    acc: dict[str, float] = {}
    for _ in range(args.repeats):
        for name, fn in variants.items():
            w, c, out = _timed(fn, device)
            wall[name].append(w)
            cpu[name].append(c)
            acc[name] = float(out)

    print(f"device={device} arch={arch} input={tuple(x.shape[1:])} n={args.n} batch={args.batch_size} eps={[round(e, 4) for e in eps_list]} "
          f"repeats={args.repeats} threads={torch.get_num_threads()}")
    print(f"{'variant':20s} {'wall s':>8s} {'cpu s':>8s} {'robust acc':>10s}")
    med = {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in variants}
    for name in variants:
        print(f"{name:20s} {med[name][0]:8.3f} {med[name][1]:8.3f} {acc[name]:10.4f}")
    for ref in ("bare", "bare+grad"):
        print(f"evaluate / {ref:10s} wall {med['evaluate'][0] / med[ref][0]:.3f}  cpu {med['evaluate'][1] / med[ref][1]:.3f}")
    nd = med["evaluate(no grad diag)"]
    print(f"evaluate(input_gradients=False) / bare  wall {nd[0] / med['bare'][0]:.3f}  cpu {nd[1] / med['bare'][1]:.3f}"
          "  (like for like; expected <= 1.05)")
    if "evaluate(autocast)" in med:
        print(f"autocast speed-up {med['evaluate'][0] / med['evaluate(autocast)'][0]:.2f}x, robust accuracy "
              f"difference {100 * (acc['evaluate(autocast)'] - acc['evaluate']):+.2f} points")


if __name__ == "__main__":
    main()
