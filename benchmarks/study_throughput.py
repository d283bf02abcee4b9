"""Study wall time with 1 job and with N jobs, and the aggregate images/s of K trainers sharing one device.

Part 1 runs the same study (default: the default mnist study) from an empty folder three ways and prints
wall times and ratios in the same run:

* ``1 job, threads=1``: the reference, in this process (identical numbers to the N-job run, by design);
* ``1 job, threads=C``: one task at a time using every core (C = the machine's cores; other numbers,
  since the CPU thread count is part of the numerics);
* ``N jobs, threads=1``: N worker processes (default N = the machine's cores).

Part 2 measures whether K trainers on one device overlap. K processes each load the data, build a model
and run ``--warmup-steps`` training steps (the CUDA graph is captured there), then wait at a barrier; released
together, each trains for a fixed window of ``--window`` seconds (the trainer's own step: augmentation, the
attack with ``--adversarial``, the captured update). Reported: total images over the wall time of the common
window, for K = 1 and K = ``--trainers``, and their ratio, the *measured* overlap (K: perfect sharing; 1.0:
none). ``--serialised`` adds a control pool whose trainers take turns (a lock around each whole step, GPU
work included): it must read about 1.0x, and a method that reports K for it is broken. (The earlier version
started K trainers without a barrier and timed each one's last short epoch, so it read about K whether or not
they overlapped: its CPU figure, two cnn trainers 3,605 vs 2,064 img/s = 1.75x, and the H100 figure below
were measured that way and are not measurements of overlap.)

Recorded on this project's 2-core CPU machine for part 1 (quiet; experiments/mnist.toml, one run each):

    1 job, threads=1: 304.5 s    1 job, threads=2: 178.4 s    2 jobs, threads=1: 151.8 s
    2 jobs / 1 job threads=1: 0.499    2 jobs / 1 job threads=2: 0.851    verdicts identical: True

Part 2, with 2 trainers on the 2 cores (``--skip-study --trainers 2 --trainer-threads 1 --arch cnn
--batch-size 64 --serialised``), one run each, on this project's machine shared with other engineers' jobs
(1-minute load average before -> after each run):

    --data cifar-like --window 3 (load about 1.6, quiet; gpu_check.sh --device cpu, step 4):
        1 alone 1224 img/s; 2 at once 1178 + 1193 = 2364: measured overlap 1.93x; serialised control 1.10x
    --data mnist5k --window 8, load 1.6 -> 3.0:  1 alone 1846; 2 at once 1796 (0.97x); serialised 1525 (0.83x)
    --data mnist5k --window 8, load 2.7 -> 3.3:  1 alone 1394; 2 at once 1318 (0.95x); serialised 1702 (1.22x)
    --data mnist5k --window 8, load 5.0 -> 7.4:  1 alone  995; 2 at once  621 (0.62x); serialised  629 (0.63x)
With both cores free, the free pool overlapped (1.93x) and the serialised control did not (1.10x): the method
tells the two apart. Under other jobs' load there was no free core to overlap on, and both pools read about 1x
or less (run-to-run noise about +-0.3x); the earlier barrier-less method read about K by construction.

On one H100 a colleague measured, with the earlier trainer and the earlier (barrier-less) method: ResNet-20
train() 22,900 img/s alone, 4 plain training processes 96,200 img/s together (3.8x). Projected, not measured
with this method: run ``benchmarks/gpu_check.sh``.

    python benchmarks/study_throughput.py                                  # mnist study, CPU
    python benchmarks/study_throughput.py --skip-study --trainers 4 --device cuda --arch resnet20 --data cifar-like
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _study(config: Path, out: Path, *, jobs: int, threads: int) -> float:
    """Wall seconds of ``serobust run`` from an empty folder (a fresh process, as a user runs it)."""
    text = config.read_text()
    parts = re.split(r"(?m)^\[execution\].*$", text, maxsplit=1)
    if len(parts) == 2:  # replace the config's own execution section (up to the next table header)
        rest = re.split(r"(?m)^\[", parts[1], maxsplit=1)
        text = parts[0] + ("[" + rest[1] if len(rest) == 2 else "")
    cfg = out.parent / f"{out.name}.toml"
    cfg.write_text(text + f"\n[execution]\njobs = {jobs}\nthreads = {threads}\n")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "serobust.cli", "run", str(cfg), "--out", str(out), "--quiet"],
                   check=True, cwd=ROOT)
    return time.perf_counter() - t0


def _trainer(rank: int, args: argparse.Namespace, barrier, lock, q) -> None:
    """One trainer process: load, build, warm up (and capture on CUDA), wait at the barrier, then train for
    a fixed window; reports (images, start, end) in ``time.time()`` seconds (one clock for all processes).

    ``lock`` (the serialised mode) is held for each whole step, GPU work included, so no two trainers
    ever compute at once: the measured overlap must then come out at about 1.0x.
    """
    import torch

    import serobust
    from serobust.training import adversarial, schedule
    from serobust.training import step as tr

    torch.set_num_threads(args.trainer_threads)
    device = serobust.runtime.resolve_device(args.device)
    data = _bundle(args.data)
    model = serobust.build_model(args.arch, num_classes=data.num_classes, in_channels=data.in_channels,
                                 se=args.se, mean=data.mean, std=data.std, seed=rank).to(device)
    model = model.to(memory_format=torch.channels_last).train()
    cfg = serobust.TrainConfig(batch_size=args.batch_size, adversarial=None if args.adversarial == "none"
                               else args.adversarial, adv_steps=args.adv_steps)
    graphed = tr.use_cuda_graph("auto", device)
    opt = tr.make_optimizer(model, cfg)
    tr.set_step_mode(opt, device=device, capturable=graphed)
    step = tr.Step(model, opt, torch.nn.CrossEntropyLoss(), device, capturable=graphed, attack=adversarial.TrainingAttack.of(cfg))
    run = tr.GraphedStep(step) if graphed else step
    x, y = data.train.tensors(device=device)
    gen = schedule.epoch_generator(rank, 0, device)
    b = args.batch_size

    def one_step(i: int) -> None:
        idx = torch.randint(0, len(y), (b,), generator=gen, device=gen.device).to(device)
        xb = data.augment(x[idx], generator=gen) if data.augment is not None else x[idx]
        xb = xb.contiguous(memory_format=torch.channels_last)
        noise = torch.rand(xb.shape, generator=gen, device=gen.device) if step.attack is not None else None
        tr._set_lr(opt, 0.01)
        run(xb, y[idx], noise)

    for i in range(args.warmup_steps):  # includes the warm-up and the capture of the graph
        one_step(i)
    tr._sync(device)
    barrier.wait()  # every trainer is ready: the window starts for all at once
    start = time.time()
    images, i = 0, 0
    while time.time() - start < args.window:
        if lock is not None:
            with lock:
                one_step(i)
                tr._sync(device)
        else:
            one_step(i)
            if i % 8 == 7:
                tr._sync(device)  # bound how far the host runs ahead of the GPU
        images += b
        i += 1
    tr._sync(device)
    q.put((images, start, time.time()))


def _bundle(name: str):
    import torch

    import serobust
    from serobust.data import BatchAugment, DatasetBundle, ImageTensorDataset

    if name == "cifar-like":
        g = torch.Generator().manual_seed(0)
        x = (torch.rand(10_000, 3, 32, 32, generator=g) * 255).to(torch.uint8)
        y = torch.randint(0, 10, (10_000,), generator=g)
        return DatasetBundle.from_tensors("cifar-like", train=ImageTensorDataset(x, y),
                                          test=ImageTensorDataset(x[:500], y[:500]),
                                          augment=BatchAugment(padding=4, flip=True))
    return serobust.load_dataset(name)


def _concurrent(k: int, args: argparse.Namespace, *, serialised: bool = False) -> dict[str, float]:
    """K trainers at once: total images over the wall time of the common window, and each one's rate."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    barrier = ctx.Barrier(k)
    lock = ctx.Lock() if serialised else None
    procs = [ctx.Process(target=_trainer, args=(r, args, barrier, lock, q)) for r in range(k)]
    for p in procs:
        p.start()
    runs = [q.get() for _ in procs]
    for p in procs:
        p.join()
    start, end = min(r[1] for r in runs), max(r[2] for r in runs)
    return {"total_img_per_s": sum(r[0] for r in runs) / (end - start),
            "each_img_per_s": [r[0] / (r[2] - r[1]) for r in runs], "wall_s": end - start}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", type=Path, default=ROOT / "experiments" / "mnist.toml")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--skip-study", action="store_true")
    ap.add_argument("--trainers", type=int, default=os.cpu_count() or 1, help="K concurrent trainers (part 2)")
    ap.add_argument("--trainer-threads", type=int, default=1)
    ap.add_argument("--arch", default="cnn")
    ap.add_argument("--data", default="mnist5k")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--se", action="store_true", help="train the SE twin instead of the baseline")
    ap.add_argument("--adversarial", choices=("none", "pgd", "fgsm_rs"), default="none")
    ap.add_argument("--adv-steps", type=int, default=7)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--warmup-steps", type=int, default=5, help="steps before the barrier (warm-up, capture)")
    ap.add_argument("--window", type=float, default=10.0, help="seconds every trainer trains after the barrier")
    ap.add_argument("--serialised", action="store_true",
                    help="also run a pool whose trainers take turns (a lock around each step): must read ~1.0x")
    args = ap.parse_args()
    report: dict[str, object] = {"cores": os.cpu_count()}
    if not args.skip_study:
        work = Path(tempfile.mkdtemp(prefix="serobust-bench-"))
        try:
            cores = os.cpu_count() or 1
            ref = _study(args.config, work / "one", jobs=1, threads=1)
            wide = _study(args.config, work / "wide", jobs=1, threads=cores)
            many = _study(args.config, work / "many", jobs=args.jobs, threads=1)
            verdict = {d: json.loads((work / d / "results.json").read_text())["verdict"] for d in ("one", "many")}
            same = verdict["one"] == verdict["many"]
            report["study"] = {"config": str(args.config), "1 job, threads=1 (s)": round(ref, 1),
                               f"1 job, threads={cores} (s)": round(wide, 1),
                               f"{args.jobs} jobs, threads=1 (s)": round(many, 1),
                               f"{args.jobs} jobs / 1 job threads=1": round(many / ref, 3),
                               f"{args.jobs} jobs / 1 job threads={cores}": round(many / wide, 3),
                               "verdicts identical (1 job vs N jobs, threads=1)": bool(same)}
        finally:
            shutil.rmtree(work, ignore_errors=True)
    one = _concurrent(1, args)
    k = _concurrent(args.trainers, args)
    report["trainers"] = {"device": args.device, "arch": args.arch, "se": args.se, "data": args.data,
                          "adversarial": args.adversarial, "threads each": args.trainer_threads,
                          "window (s)": args.window, "1 trainer (img/s)": round(one["total_img_per_s"]),
                          f"{args.trainers} trainers, each (img/s)": [round(r) for r in k["each_img_per_s"]],
                          f"{args.trainers} trainers, together (img/s)": round(k["total_img_per_s"]),
                          "measured overlap (together / one)": round(k["total_img_per_s"] / one["total_img_per_s"], 3)}
    if args.serialised:
        ser = _concurrent(args.trainers, args, serialised=True)
        report["trainers"]["serialised pool, together (img/s)"] = round(ser["total_img_per_s"])
        report["trainers"]["serialised overlap (expected about 1.0)"] = round(
            ser["total_img_per_s"] / one["total_img_per_s"], 3)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
