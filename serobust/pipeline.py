"""The study pipeline: train paired models over seeds, attack, probe, test the hypothesis, report.

``run_study(config)`` wires library calls; the science lives in the modules it calls. Everything it
computes is cached under ``reports/<study>/``:

* ``checkpoints/<member>-s<seed>-<hash>/last.pt``: trained weights, keyed by a hash of everything that
  determines them (architecture, data, SE settings, training config, seed), so a re-run skips training and
  a killed run resumes from its last epoch;
* ``stages/<stage>-<hash>.*.csv``: each evaluation stage's frames, written atomically with a manifest last,
  so an interrupted study resumes at the first unfinished stage;
* ``results.json``, ``tables/*.csv``, ``figures/*.png`` and ``index.html``: the report.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from . import __version__
from .config import StudyConfig, config_hash, load_study_config
from .io import atomic_write_json, atomic_write_text
from .trainer import resolve_device, train

__all__ = ["run_study", "member_names"]

log = logging.getLogger(__name__)


def member_names(cfg: StudyConfig) -> list[str]:
    """``baseline`` then one ``se_r<r>`` per reduction ratio."""
    return ["baseline"] + [f"se_r{r:g}" for r in cfg.model.reductions]


class _StageCache:
    """Frames of finished stages, as CSV files plus a manifest written last (the completion mark)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def get(self, name: str, key: Any, compute: Callable[[], dict[str, pd.DataFrame]]) -> dict[str, pd.DataFrame]:
        stem = f"{name}-{config_hash(key)}"
        manifest = self.folder / f"{stem}.json"
        if manifest.exists():
            parts = json.loads(manifest.read_text())["parts"]
            return {p: pd.read_csv(self.folder / f"{stem}.{p}.csv") for p in parts}
        frames = compute()
        for part, frame in frames.items():
            atomic_write_text(self.folder / f"{stem}.{part}.csv", _jsonable_frame(frame).to_csv(index=False))
        atomic_write_json(manifest, {"stage": name, "parts": sorted(frames), "key": key})
        return {p: pd.read_csv(self.folder / f"{stem}.{p}.csv") for p in frames}


def _jsonable_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns holding dicts/lists become JSON strings so CSV round trips keep them readable."""
    frame = frame.copy()
    for col in frame.columns:
        if frame[col].dtype == object and frame[col].map(lambda v: isinstance(v, (dict, list, tuple))).any():
            frame[col] = frame[col].map(lambda v: json.dumps(v, default=str) if isinstance(v, (dict, list, tuple)) else v)
    return frame


def _tag(frame: pd.DataFrame, **cols: Any) -> pd.DataFrame:
    frame = frame.copy()
    for k, v in reversed(cols.items()):
        frame.insert(0, k, v)
    return frame


def run_study(
    config: StudyConfig | str | Path,
    *,
    out_dir: str | Path | None = None,
    device: str | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Run (or resume) a whole study and write its report.

    Args:
        config: a :class:`~serobust.config.StudyConfig` or the path of a study TOML file.
        out_dir: output folder (default ``reports/<study.name>``).
        device: overrides ``study.device``.
        progress: a progress bar over stages (``None``: only on a terminal).

    Returns:
        The content of ``results.json`` (with ``"out_dir"`` and ``"report"`` paths added).
    """
    from .attacks import attack as make_attack
    from .attacks import evaluate, evaluate_transfer, generate
    from .data import load_dataset
    from .diagnostics import masking_diagnostics
    from .mechanism import adaptive_attacks, interventions, profile_shift
    from .metrics import excitation_shift, feature_sensitivity, matched_layers, shift_analysis
    from .models import build_model, build_pair
    from .report import write_report
    from .stats import mean_ci_by, pooled_mcnemar, robust_accuracy_table, verdict

    cfg = config if isinstance(config, StudyConfig) else load_study_config(config)
    out = Path(out_dir) if out_dir is not None else Path("reports") / cfg.study.name
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device or (None if cfg.study.device == "auto" else cfg.study.device))
    t_start = time.perf_counter()
    atomic_write_json(out / "config.json", cfg.to_dict())

    data = load_dataset(cfg.data.name, root=cfg.data.root or None, download=cfg.data.download,
                        path=cfg.data.path or None)
    train_data = data
    if cfg.data.train_size:
        train_data = dataclasses.replace(data, train=data.train.subset(cfg.data.train_size, seed=0))
    eval_set = data.test.subset(cfg.data.eval_size, seed=0) if cfg.data.eval_size else data.test
    x_eval, y_eval = eval_set.tensors()
    data_key = {"name": cfg.data.name, "root": cfg.data.root, "path": cfg.data.path,
                "train_size": cfg.data.train_size, "eval_size": cfg.data.eval_size}
    members = member_names(cfg)
    twins = members[1:]
    cache = _StageCache(out / "stages")
    seeds = list(cfg.study.seeds)
    n_diag = (min(cfg.diagnostics.seeds or len(seeds), len(seeds)) * len(members)) if cfg.diagnostics.enabled else 0
    n_stages = n_diag + len(seeds) * (2 * len(members)
                             + (2 * len(twins) if cfg.attacks.transfer else 0)
                             + (len(twins) if cfg.probe.enabled else 0)
                             + (len(twins) if cfg.mechanism.enabled else 0))
    bar = tqdm(total=n_stages, desc="study", unit="stage", disable=(not progress) if progress is not None else None)

    def step(desc: str) -> None:
        bar.set_description(desc)
        log.info("%s", desc)

    main_attack = next(make_attack(a["name"], **{k: v for k, v in a.items() if k != "name"})
                       for a in cfg.attacks.white_box if a["name"] == cfg.attacks.main)
    white_box = [make_attack(a["name"], **{k: v for k, v in a.items() if k != "name"}) for a in cfg.attacks.white_box]
    black_box = [make_attack(a["name"], **{k: v for k, v in a.items() if k != "name"}) for a in cfg.attacks.black_box]
    eval_eps = list(cfg.attacks.eps)

    frames: dict[str, list[pd.DataFrame]] = {k: [] for k in (
        "history", "robust", "per_example", "blackbox", "transfer", "diagnostics", "shift", "shift_channels",
        "sensitivity", "interventions", "adaptive", "profile_shift")}
    models_by_seed: dict[int, dict[str, torch.nn.Module]] = {}
    try:
        for seed in seeds:
            models: dict[str, torch.nn.Module] = {}
            tcfg = dataclasses.replace(cfg.train, seed=seed)
            for member in members:
                step(f"seed {seed}: train {member}")
                se = member != "baseline"
                r = cfg.model.reductions[twins.index(member)] if se else None
                kw = dict(num_classes=data.num_classes, in_channels=data.in_channels, seed=seed,
                          min_hidden=cfg.model.min_hidden, mean=data.mean, std=data.std)
                key = {"arch": cfg.model.arch, "se": se, "reduction": r, "data": data_key, "train": tcfg.to_dict(),
                       **{k: v for k, v in kw.items()}}
                if se:
                    model = build_pair(cfg.model.arch, reduction=r, **kw)[1]
                else:
                    model = build_model(cfg.model.arch, se=False, **kw)
                ckdir = out / "checkpoints" / f"{member}-s{seed}-{config_hash(key)}"
                model, hist = train(model, train_data, tcfg, checkpoint_dir=ckdir, device=dev, progress=False)
                frames["history"].append(_tag(hist, seed=seed, model=member))
                models[member] = model.eval()
                bar.update(1)
            models_by_seed[seed] = models
            model_keys = {m: config_hash({"seed": seed, "member": m, "train": tcfg.to_dict(), "data": data_key,
                                          "arch": cfg.model.arch, "reductions": cfg.model.reductions})
                          for m in members}

            for member, model in models.items():
                step(f"seed {seed}: attack {member}")

                def _eval(model=model) -> dict[str, pd.DataFrame]:
                    summary, per_ex = evaluate(model, (x_eval, y_eval), white_box, eval_eps,
                                               batch_size=cfg.attacks.batch_size, device=dev, per_example=True,
                                               seed=seed, progress=False)
                    nb = min(cfg.attacks.black_box_size, len(y_eval))
                    bb = evaluate(model, (x_eval[:nb], y_eval[:nb]), black_box,
                                  list(cfg.attacks.black_box_eps), batch_size=cfg.attacks.batch_size, device=dev,
                                  seed=seed, progress=False)
                    return {"summary": summary, "per_example": per_ex, "blackbox": bb}

                res = cache.get("eval", {"model": model_keys[member], "attacks": dataclasses.asdict(cfg.attacks)}, _eval)
                frames["robust"].append(_tag(res["summary"], seed=seed, model=member))
                frames["per_example"].append(_tag(res["per_example"], seed=seed, model=member))
                frames["blackbox"].append(_tag(res["blackbox"], seed=seed, model=member))
                bar.update(1)

            if cfg.diagnostics.enabled and (not cfg.diagnostics.seeds or seeds.index(seed) < cfg.diagnostics.seeds):
                d = cfg.diagnostics
                for member, model in models.items():
                    step(f"seed {seed}: gradient-masking checks {member}")
                    other = models[twins[0]] if member == "baseline" else models["baseline"]
                    n = min(d.size, len(y_eval))

                    def _diag(model=model, other=other, n=n) -> dict[str, pd.DataFrame]:
                        return {"checks": masking_diagnostics(
                            model, (x_eval[:n], y_eval[:n]), list(d.eps), attack_steps=tuple(d.steps),
                            restarts=tuple(d.restarts), large_eps=d.large_eps, transfer_from=other,
                            square_queries=d.square_queries, batch_size=cfg.attacks.batch_size, device=dev, seed=seed)}

                    other_key = model_keys[twins[0] if member == "baseline" else "baseline"]
                    res = cache.get("diagnostics", {"model": model_keys[member], "other": other_key,
                                                    "cfg": dataclasses.asdict(d)}, _diag)
                    frames["diagnostics"].append(_tag(res["checks"], seed=seed, model=member))
                    bar.update(1)

            if cfg.attacks.transfer:
                for twin in twins:
                    for src, dst in (("baseline", twin), (twin, "baseline")):
                        step(f"seed {seed}: transfer {src} -> {dst}")
                        nb = min(cfg.attacks.black_box_size, len(y_eval))

                        def _transfer(src=src, dst=dst, nb=nb) -> dict[str, pd.DataFrame]:
                            return {"transfer": evaluate_transfer(
                                models[src], models[dst], (x_eval[:nb], y_eval[:nb]), main_attack,
                                list(cfg.attacks.black_box_eps), batch_size=cfg.attacks.batch_size, device=dev, seed=seed)}

                        res = cache.get("transfer", {"src": model_keys[src], "dst": model_keys[dst],
                                                     "attack": main_attack.label, "eps": cfg.attacks.black_box_eps,
                                                     "n": nb}, _transfer)
                        frames["transfer"].append(_tag(res["transfer"], seed=seed, source=src, target=dst))
                        bar.update(1)

            if cfg.probe.enabled:
                p = cfg.probe
                n = min(p.size, len(y_eval))
                for twin in twins:
                    step(f"seed {seed}: excitation probe {twin}")

                    def _probe(twin=twin, n=n) -> dict[str, pd.DataFrame]:
                        xs, ys = x_eval[:n], y_eval[:n]
                        spec = make_attack(p.attack, **_opts(cfg, p.attack))
                        memo: dict[tuple[str, float], torch.Tensor] = {}

                        def adv(member: str, eps: float) -> torch.Tensor:  # each attack runs once per stage
                            if (member, eps) not in memo:
                                memo[member, eps] = generate(models[member], xs, ys, spec, eps, seed=seed,
                                                             batch_size=cfg.attacks.batch_size)
                            return memo[member, eps]

                        def twin_attack(model, x, y, eps):
                            return adv(twin, eps)

                        twin_attack.__name__ = spec.label
                        shift = shift_analysis(models[twin], xs, ys, list(p.eps), attack=twin_attack,
                                               controls=tuple(p.controls), seed=seed, batch_size=cfg.attacks.batch_size)
                        out_frames = {"shift": shift}
                        if p.per_channel:
                            out_frames["channels"] = _tag(
                                excitation_shift(models[twin], xs, adv(twin, max(p.eps)), per_channel=True,
                                                 batch_size=cfg.attacks.batch_size), eps=max(p.eps))
                        layers = matched_layers(models["baseline"], models[twin])
                        out_frames["sensitivity"] = pd.concat(
                            [_tag(feature_sensitivity(models[member], xs, adv(member, eps), layers=layers,
                                                      batch_size=cfg.attacks.batch_size), member=member, eps=eps)
                             for eps in p.eps for member in ("baseline", twin)], ignore_index=True)
                        return out_frames

                    res = cache.get("probe", {"model": model_keys[twin], "base": model_keys["baseline"],
                                              "cfg": dataclasses.asdict(p), "attacks": cfg.attacks.white_box}, _probe)
                    frames["shift"].append(_tag(res["shift"], seed=seed, model=twin))
                    if "channels" in res:
                        frames["shift_channels"].append(_tag(res["channels"], seed=seed, model=twin))
                    frames["sensitivity"].append(_tag(res["sensitivity"], seed=seed, twin=twin))
                    bar.update(1)

            if cfg.mechanism.enabled:
                mcfg = cfg.mechanism
                n = min(mcfg.size, len(y_eval))
                for twin in twins:
                    step(f"seed {seed}: interventions and adaptive attacks {twin}")

                    def _mech(twin=twin, n=n) -> dict[str, pd.DataFrame]:
                        xs, ys = x_eval[:n], y_eval[:n]
                        x_adv = generate(models[twin], xs, ys, main_attack, mcfg.eps, seed=seed)
                        return {
                            "interventions": interventions(models[twin], xs, ys, x_adv, batch_size=cfg.attacks.batch_size),
                            "adaptive": adaptive_attacks(models[twin], xs, ys, [mcfg.eps], steps=mcfg.steps,
                                                         weight=mcfg.weight, seed=seed,
                                                         batch_size=cfg.attacks.batch_size),
                            "profile_shift": profile_shift(models[twin], xs, ys, x_adv, batch_size=cfg.attacks.batch_size),
                        }

                    res = cache.get("mechanism", {"model": model_keys[twin], "cfg": dataclasses.asdict(mcfg),
                                                  "attack": main_attack.label}, _mech)
                    for part, frame in res.items():
                        frames[part].append(_tag(frame, seed=seed, model=twin))
                    bar.update(1)
    finally:
        bar.close()

    step("statistics and report")
    tables = {k: pd.concat(v, ignore_index=True) for k, v in frames.items() if v}
    if "shift" in tables:  # the verdict reads kind = adversarial / sign_noise / gaussian
        sh = tables["shift"]
        sh["kind"] = np.where(sh["kind"] == "adversarial", "adversarial", sh["perturbation"])
    st = cfg.stats
    per_seed = tables["robust"][["seed", "model", "attack", "eps", "robust_acc"]]
    tables["robust_stats"] = robust_accuracy_table(per_seed, confidence=st.confidence, n_resamples=st.n_resamples)
    if "per_example" in tables:
        tables["mcnemar"] = pooled_mcnemar(tables["per_example"], confidence=st.confidence)
    verdicts = {}
    for twin in twins:
        diag = tables.get("diagnostics")
        if diag is not None:  # one row per (model, check): a check passes only if it passed for every seed
            diag = diag[diag["model"].isin(["baseline", twin])].groupby(["model", "check"], as_index=False)["passed"].all()
        verdicts[twin] = verdict(
            per_seed[per_seed["model"].isin(["baseline", twin])],
            tables["shift"][tables["shift"]["model"] == twin] if "shift" in tables else None,
            diag, se_model=twin, attack=main_attack.label, alpha=1 - st.confidence, min_effect=st.min_effect,
            n_resamples=st.n_resamples)
    if "shift" in tables:
        tables["shift_stats"] = pd.concat(
            [_tag(mean_ci_by(tables["shift"], by=["model", "kind", "eps"], value=q, unit="seed",
                             confidence=st.confidence, n_resamples=st.n_resamples), quantity=q)
             for q in ("damping_ratio", "z_over_u", "s_rel_change", "z_rel_change", "u_rel_change")],
            ignore_index=True)
    elapsed = time.perf_counter() - t_start
    meta = {
        "study": cfg.study.name,
        "description": cfg.study.description,
        "config_file": cfg.source,
        "serobust": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else
                              f" ({torch.get_num_threads()} threads)"),
        "seeds": seeds,
        "members": members,
        "main_attack": main_attack.label,
        "dataset": {"name": data.name, "train": len(train_data.train), "test": len(data.test), "eval": len(y_eval),
                    "num_classes": data.num_classes, "image_size": list(data.image_size)},
        "time_s": round(elapsed, 1),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    (out / "tables").mkdir(exist_ok=True)
    for name, frame in tables.items():
        atomic_write_text(out / "tables" / f"{name}.csv", _jsonable_frame(frame).to_csv(index=False))
    results = {"meta": meta, "config": cfg.to_dict(), "verdict": verdicts,
               "robust_stats": tables["robust_stats"].to_dict("records"),
               "tables": {name: f"tables/{name}.csv" for name in tables}}
    examples = _examples(cfg, models_by_seed[seeds[0]], x_eval, y_eval, main_attack, generate, dev)
    report = write_report(out, results, tables, examples)
    results["meta"]["time_s"] = round(time.perf_counter() - t_start, 1)
    atomic_write_json(out / "results.json", results)
    log.info("report written to %s (%.1f s)", report, time.perf_counter() - t_start)
    return {**results, "out_dir": str(out), "report": str(report)}


def _opts(cfg: StudyConfig, name: str) -> dict[str, Any]:
    """Options of the white-box attack called ``name`` in the config (so probes use the same budget)."""
    for a in cfg.attacks.white_box:
        if a["name"] == name:
            return {k: v for k, v in a.items() if k != "name"}
    return {}


def _examples(cfg, models, x, y, main_attack, generate, dev) -> dict[str, Any]:
    """A few clean/adversarial images with each model's predictions, for the report's grid."""
    n = min(cfg.report.examples, len(y))
    xs, ys = x[:n], y[:n]
    out = {"x": xs.numpy(), "y": ys.numpy(), "eps": cfg.report.example_eps, "models": {}}
    for name, model in models.items():
        x_adv = generate(model, xs, ys, main_attack, cfg.report.example_eps, seed=0)
        with torch.no_grad():
            p_clean = model(xs.to(dev)).argmax(1).cpu().numpy()
            p_adv = model(x_adv.to(dev)).argmax(1).cpu().numpy()
        out["models"][name] = {"x_adv": x_adv.cpu().numpy(), "pred_clean": p_clean, "pred_adv": p_adv}
    return out

