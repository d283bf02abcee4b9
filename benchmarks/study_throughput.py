"""Study wall time with 1 job and with N jobs, and the aggregate images/s of K trainers sharing one device.

Part 1 runs the same study (default: the default mnist study) from an empty folder three ways and prints
wall times and ratios in the same run:

* ``1 job, threads=1``: the reference, in this process (identical numbers to the N-job run, by design);
* ``1 job, threads=C``: one task at a time using every core (C = the machine's cores; other numbers,
  since the CPU thread count is part of the numerics);
* ``N jobs, threads=1``: N worker processes (default N = the machine's cores).

Part 2 starts K trainer processes at once on one device (each ``serobust.train`` for a fixed number of
epochs on the same data) and prints each one's images/s and their sum, for K = 1 and K = ``--trainers``:
on a GPU, small models leave the device mostly idle, and K processes sharing it fill it.

Recorded on this project's 2-core CPU machine (quiet; experiments/mnist.toml, one run each):

    1 job, threads=1: 304.5 s    1 job, threads=2: 178.4 s    2 jobs, threads=1: 151.8 s
    2 jobs / 1 job threads=1: 0.499    2 jobs / 1 job threads=2: 0.851    verdicts identical: True
    K concurrent cnn trainers (1 thread each): 1 alone 2,064 img/s; 2 at once 1,811 + 1,794 = 3,605 (1.75x)

On one H100 a colleague measured, with the earlier trainer: ResNet-20 train() 22,900 img/s alone, 4 plain
training processes 96,200 img/s together (3.8x): small models leave the GPU idle, which jobs_per_gpu fills.

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


def _train_once(arch: str, data: str, device: str, epochs: int, batch_size: int, threads: int, q) -> None:
    import torch

    import serobust
    from serobust.data import DatasetBundle, ImageTensorDataset

    torch.set_num_threads(threads)
    if data == "cifar-like":
        g = torch.Generator().manual_seed(0)
        x = (torch.rand(10_000, 3, 32, 32, generator=g) * 255).to(torch.uint8)
        y = torch.randint(0, 10, (10_000,), generator=g)
        bundle = DatasetBundle.from_tensors("cifar-like", train=ImageTensorDataset(x, y),
                                            test=ImageTensorDataset(x[:500], y[:500]))
    else:
        bundle = serobust.load_dataset(data)
    model = serobust.build_model(arch, num_classes=bundle.num_classes, in_channels=bundle.in_channels,
                                 mean=bundle.mean, std=bundle.std)
    _, history = serobust.train(model, bundle, serobust.TrainConfig(epochs=epochs, batch_size=batch_size),
                                device=device, progress=False)
    q.put(float(history["images_per_s"].iloc[-1]))  # the last epoch: warm


def _concurrent(k: int, args: argparse.Namespace) -> list[float]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_train_once, args=(args.arch, args.data, args.device, args.epochs, args.batch_size,
                                                   args.trainer_threads, q)) for _ in range(k)]
    for p in procs:
        p.start()
    rates = [q.get() for _ in procs]
    for p in procs:
        p.join()
    return rates


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
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=128)
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
    report["trainers"] = {"device": args.device, "arch": args.arch, "data": args.data,
                          "threads each": args.trainer_threads, "1 trainer (img/s)": round(one[0]),
                          f"{args.trainers} trainers, each (img/s)": [round(r) for r in k],
                          f"{args.trainers} trainers, together (img/s)": round(sum(k)),
                          "together / one": round(sum(k) / one[0], 3)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
