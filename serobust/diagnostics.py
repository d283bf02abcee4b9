"""Gradient-masking diagnostics: does a robustness number mean robustness, or a broken attack?

A model whose gradients are useless (saturated gates, quantized inputs, huge logits) looks robust to
gradient attacks without being robust. :func:`masking_diagnostics` runs the standard checks of
Athalye, Carlini & Wagner (2018, "Obfuscated gradients") and Carlini et al. (2019, "On evaluating
adversarial robustness", section 5) on one model and says which pass. A check that fails warns and is
reported with ``passed=False``; it never raises, so a notebook always gets the whole table.

The checks (one row each):

``outputs_are_logits``
    the model's outputs on the first batch are not probabilities (every row >= 0 and summing to 1: a
    final softmax). Softmax outputs saturate, the CE gradient through them vanishes, and every gradient
    attack is weakened (AutoAttack's ``checks.py`` warns; here the check fails).
``input_gradients_nonzero``
    the fraction of examples whose input gradient of the CE loss is exactly zero at clean x is
    <= ``tolerance`` (AutoAttack's zero-gradient check).
``accuracy_decreases_with_eps``
    PGD robust accuracy does not rise from one eps to the next, clean accuracy (eps=0) included.
``large_eps_accuracy_near_zero``
    at a large eps (default ``min(max(2 * max eps, 0.5), 1)``; at Linf 0.5 every image can reach the
    uniform gray image, so any class can be forced), the per-example worst case of PGD (most steps) with
    and without random start and APGD-DLR (>= 3 classes) is <= ``large_eps_threshold``
    (default 0.02: an unbounded attack must reach ~100% success, Carlini et al. 2019).
``more_steps_do_not_help_model``
    PGD with the most steps is not weaker than with the fewest at any eps; ``values`` holds the
    accuracy-vs-steps table for judging convergence, and ``detail`` says when the last step count
    still lowered accuracy by more than ``tolerance`` (not converged).
``more_restarts_do_not_help_model``
    PGD (fewest steps) with the most random restarts is not weaker than with one.
``iterative_beats_single_step``
    PGD (most steps) is not weaker than FGSM at any eps.
``blackbox_not_stronger``
    the fraction of examples Square fools but no PGD run fools is <= ``tolerance`` at each eps.
``noise_not_stronger``
    the same for uniform random sign noise at the same eps (best of ``noise_samples`` draws).
``transfer_not_stronger``
    (only with ``transfer_from``) the same for PGD examples crafted on ``transfer_from``.
``<attack>_not_stronger``
    one per attack in ``extra_attacks`` (any registered attack, by name or AttackSpec): it fools at
    most ``tolerance`` of the examples that no white-box PGD run of the same norm fools. Linf attacks
    are compared with the Linf PGD runs above at ``eps``; L2 attacks (``cw``, ``pgd_l2``, ``square``
    with ``norm="L2"``, ...) with ``pgd_l2`` at the same step counts and restart counts, at the radii
    ``l2_eps``. This is how a newly registered attack joins the masking audit. The check is named after
    the attack (``cw_not_stronger``), or after its label when that name is taken.

"Weaker" in the four comparisons of two runs (A supposed to be at least as strong as B) is judged per
example, because random starts alone flip a few borderline examples either way: with b examples robust
to A only and c robust to B only, A is weaker when its accuracy is higher by more than ``tolerance``
((b - c) / n > tolerance) AND the excess is significant in a one-sided paired sign test
((b - c) / sqrt(b + c) > 1.96). ``values`` carries both numbers (``diff``, ``z``).

:func:`per_image_not_weaker` adds a check of the same table format from any per-example table (the study's
AutoAttack stage writes ``autoattack_not_weaker_than_pgd`` with it, on every seed): on the same images, every
image the reference attack (PGD) breaks is broken by the supposedly stronger one (AutoAttack) too, up to
``tolerance`` of the images.

"No PGD run fools" means robust under every PGD configuration of that norm run here (all step counts
and restarts), i.e. the white-box worst case. ``tolerance`` (default 0.01) is an absolute fraction of
the examples.
"""

from __future__ import annotations

import logging
import math
import numbers
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn

from .attacks import AttackSpec, attack, evaluate, evaluate_transfer
from .attacks.base import as_specs
from .attacks.batches import batches
from .attacks.checks import probability_rows
from .attacks.session import attack_device
from .eps import parse_eps, parse_eps_list
from .names import WORST_CASE
from .runtime import check_int, eval_mode

__all__ = ["masking_diagnostics", "per_image_not_weaker", "DIAGNOSTIC_COLUMNS"]

logger = logging.getLogger(__name__)

DIAGNOSTIC_COLUMNS = ["check", "passed", "detail", "values"]
_Z = 1.96  # one-sided paired sign test at about 2.5%: random starts alone flip a few examples either way


def _ints(value: Any, *, name: str) -> list[int]:
    values = [value] if isinstance(value, numbers.Integral) else list(value)
    if not values:
        raise ValueError(f"{name} must be one or more ints >= 1, got {value!r}")
    return sorted({check_int(v, name=name) for v in values})


def _fraction(value: Any, *, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1 or math.isnan(value):
        raise ValueError(f"{name} must be a fraction in [0, 1], got {value!r}")
    return float(value)


def _radii(l2_eps: Any, default: list[float]) -> list[float]:
    if l2_eps is None:
        return default
    values = [l2_eps] if isinstance(l2_eps, (str, numbers.Real)) else list(l2_eps)
    radii = sorted({parse_eps(v, name="l2_eps", upper=None) for v in values} - {0.0})
    if not radii:
        raise ValueError("l2_eps needs at least one radius > 0")
    return radii


def _r(x: float) -> float:
    return round(float(x), 6)


def _eps_list(values: Iterable[float]) -> str:
    return ", ".join(f"{e:g}" for e in values)


class _Audit:
    """The rows of the diagnostics table, and per-example comparisons of the runs behind them."""

    def __init__(self, per_ex: pd.DataFrame, *, clean_label: str, tol: float) -> None:
        self.robust = per_ex.set_index(["attack", "eps", "index"])["robust_correct"].sort_index()
        self.clean = per_ex[(per_ex["attack"] == clean_label) & (per_ex["eps"] == 0.0)].set_index("index")[
            "clean_correct"]
        self.tol = tol
        self.rows: list[dict[str, Any]] = []

    def add(self, check: str, passed: bool, detail: str, values: dict[str, Any]) -> None:
        self.rows.append({"check": check, "passed": bool(passed), "detail": detail, "values": values})

    def weaker(self, strong: tuple[str, float], weak: tuple[str, float]) -> dict[str, Any]:
        """Is the supposedly stronger run weaker? Paired per example: b = robust to strong only, c = to weak only."""
        rs, rw = self.robust.loc[strong], self.robust.loc[weak]
        b, c = int((rs & ~rw).sum()), int((~rs & rw).sum())
        diff = (b - c) / len(rs)  # = robust_acc(strong) - robust_acc(weak)
        z = (b - c) / math.sqrt(b + c) if b + c else 0.0
        return {"diff": _r(diff), "z": _r(z), "flag": diff > self.tol and z > _Z}

    def verdict(self, pairs: dict[float, dict[str, Any]]) -> tuple[list[float], dict[str, Any]]:
        bad = [e for e, p in pairs.items() if p["flag"]]
        return bad, {"diff": [p["diff"] for p in pairs.values()], "z": [p["z"] for p in pairs.values()]}

    @staticmethod
    def robust_to_all(robust: pd.Series, labels: Sequence[str], e: float) -> pd.Series:
        """Per example: robust to every run in ``labels`` at ``e`` (the white-box worst case)."""
        out = robust.loc[(labels[0], e)]
        for lab in labels[1:]:
            out = out & robust.loc[(lab, e)]
        return out

    def not_stronger(self, check: str, name: str, other: dict[float, pd.Series], reference: dict[float, pd.Series],
                     *, pgd: str = "PGD") -> None:
        """``name`` fools at most ``tol`` of the examples that the white-box ``reference`` does not fool."""
        fr = {e: _r((self.clean & ~other[e] & reference[e]).mean()) for e in other}
        bad = [e for e, f in fr.items() if f > self.tol]
        self.add(check, not bad,
                 f"{name} fools at most {max(fr.values()):.1%} of examples that {pgd} does not (allowed {self.tol:.1%})"
                 if not bad else
                 f"{name} fools examples {pgd} does not ({', '.join(f'{fr[e]:.1%} at eps {e:g}' for e in bad)}): "
                 "the gradient attack is masked",
                 {"eps": list(other), "fraction_beyond_pgd": list(fr.values()), "tolerance": self.tol})


def masking_diagnostics(
    model: nn.Module,
    data: Any,
    eps: float | str | Iterable[float | str],
    *,
    attack_steps: int | Sequence[int] = (10, 50),
    restarts: int | Sequence[int] = (1, 3),
    large_eps: float | str | None = None,
    transfer_from: nn.Module | None = None,
    square_queries: int = 1000,
    noise_samples: int = 10,
    tolerance: float = 0.01,
    large_eps_threshold: float = 0.02,
    batch_size: int = 256,
    device: Any = None,
    seed: int = 0,
    progress: bool | None = None,
    extra_attacks: str | AttackSpec | Iterable[str | AttackSpec] = (),
    l2_eps: float | str | Iterable[float | str] | None = None,
) -> pd.DataFrame:
    """Run the gradient-masking checks on ``model`` (Linf threat model); one row per check.

    Cost, per example and eps > 0: FGSM (1 gradient), PGD at each of ``attack_steps`` (1 restart),
    PGD at the fewest steps for each restart count > 1, Square (``square_queries`` forwards at most),
    ``noise_samples`` forwards; plus one PGD run (most steps) at ``large_eps``, and with
    ``transfer_from`` one PGD run (fewest steps) on each model. Each extra attack adds its own cost;
    L2 extras add ``pgd_l2`` at every step count and restart count. On CPU, a few hundred 8x8 digits
    with ``attack_steps=(5, 20)``, ``square_queries=200`` take seconds.

    Args:
        model: classifier taking [0, 1] images, returning logits.
        data: a Dataset, DataLoader or (x, y) pair, as in :func:`serobust.evaluate`.
        eps: one or more Linf budgets in [0, 1] (``"8/255"`` accepted); eps = 0 is added as the clean
            reference for the monotonicity check.
        attack_steps: PGD step counts to compare (fewest vs most; the table keeps all).
        restarts: PGD restart counts to compare (1 vs the most).
        large_eps: the budget for the near-zero check; None -> ``min(max(2 * max eps, 0.5), 1)``.
        transfer_from: optional source model (e.g. the pair's other member) for the transfer check.
        square_queries: Square's query budget per example.
        noise_samples: random sign-noise draws per example (an example counts as fooled if any draw fools it).
        tolerance: allowed slack, as a fraction of the examples, in every comparison.
        large_eps_threshold: the accuracy at ``large_eps`` must not exceed this.
        batch_size, device, seed, progress: as in :func:`serobust.evaluate`.
        extra_attacks: further attacks (registered names or AttackSpecs), one ``<name>_not_stronger``
            check each, against white-box PGD of the attack's norm.
        l2_eps: the radii (L2, pixel units; may exceed 1) for the L2 attacks in ``extra_attacks``;
            None uses the numbers of ``eps``.

    Returns:
        DataFrame with columns ``check``, ``passed`` (bool), ``detail`` (one sentence), ``values``
        (dict of the numbers behind the verdict). ``frame.attrs["summary"]`` holds the evaluate()
        summaries the checks were computed from.

    Raises:
        ValueError: bad eps or settings (a failed check never raises; it warns).
    """
    eps_list = sorted(set(parse_eps_list(eps)))
    eps_pos = [e for e in eps_list if e > 0]
    if not eps_pos:
        raise ValueError("masking_diagnostics needs at least one eps > 0")
    steps = _ints(attack_steps, name="attack_steps")
    rs = _ints(restarts, name="restarts")
    tol = _fraction(tolerance, name="tolerance")
    thr = _fraction(large_eps_threshold, name="large_eps_threshold")
    check_int(square_queries, name="square_queries")
    check_int(noise_samples, name="noise_samples")
    big = parse_eps(large_eps, name="large_eps") if large_eps is not None else min(max(2 * max(eps_pos), 0.5), 1.0)
    extras = [] if isinstance(extra_attacks, (tuple, list)) and not extra_attacks else as_specs(extra_attacks)
    radii = _radii(l2_eps, eps_pos)

    pgd_steps = {s: attack("pgd", steps=s) for s in steps}
    pgd_restarts = {r: attack("pgd", steps=steps[0], n_restarts=r) for r in rs if r > 1}
    fgsm = attack("fgsm")
    square = attack("square", n_queries=square_queries)
    noise = attack("noise", n_samples=noise_samples)
    specs = [fgsm, *pgd_steps.values(), *pgd_restarts.values(), square, noise]
    common = dict(batch_size=batch_size, device=device, seed=seed, progress=progress)
    result = evaluate(model, data, specs, [0.0, *eps_pos], per_example=True, **common)
    summary, per_ex = result.summary, result.per_example
    big_summary = _large_eps_summary(model, data, big, steps[-1], n_classes=per_ex["label"].nunique(), common=common)

    audit = _Audit(per_ex, clean_label=fgsm.label, tol=tol)
    _check_outputs(audit, model, data, batch_size=batch_size, device=device)
    _check_gradients(audit, summary)
    acc = summary.set_index(["attack", "eps"])["robust_acc"]
    strongest = pgd_steps[steps[-1]].label
    _check_monotone(audit, acc, eps_pos, strongest)
    _check_large_eps(audit, big_summary, big, thr)
    _check_pgd_runs(audit, acc, eps_pos, pgd_steps, pgd_restarts, fgsm)

    pgd_labels = [s.label for s in pgd_steps.values()] + [s.label for s in pgd_restarts.values()]
    white_box = {e: audit.robust_to_all(audit.robust, pgd_labels, e) for e in eps_pos}
    _check_not_stronger(audit, white_box, {f"Square ({square_queries} queries)": ("blackbox", square),
                                           f"random sign noise ({noise_samples} draws)": ("noise", noise)})
    if transfer_from is not None:
        _check_transfer(audit, white_box, transfer_from, model, data, pgd_steps[steps[0]], common=common)
    summaries = [summary, big_summary]
    if extras:
        summaries += _check_extras(audit, model, data, extras, white_box, radii, steps=steps, restarts=rs,
                                   common=common)

    frame = pd.DataFrame(audit.rows, columns=DIAGNOSTIC_COLUMNS)
    for row in audit.rows:
        if not row["passed"]:
            warnings.warn(f"masking diagnostic {row['check']!r} failed: {row['detail']}", stacklevel=2)
    frame.attrs["summary"] = pd.concat(summaries, ignore_index=True)
    n_fail = int((~frame["passed"]).sum())
    logger.info("masking diagnostics: %d of %d checks passed", len(frame) - n_fail, len(frame))
    return frame


def _large_eps_summary(
    model: nn.Module, data: Any, big: float, steps: int, *, n_classes: int, common: dict[str, Any]
) -> pd.DataFrame:
    """The attacks of the near-zero check at the huge budget ``big``.

    The check asks whether *some* gradient attack succeeds once the budget is huge; PGD-CE with a random
    start can stall there (softmax saturates at the noisy start point and the CE gradient underflows to
    exactly 0), so it takes the per-example worst case of PGD with and without random start and, with >= 3
    classes, APGD with the margin-based DLR loss (Croce & Hein 2020).
    """
    specs = [attack("pgd", steps=steps), attack("pgd", steps=steps, random_start=False)]
    if n_classes >= 3:
        specs.append(attack("apgd_ce", steps=steps, loss="dlr"))
    return evaluate(model, data, specs, big, **common).summary


def _check_not_stronger(audit: _Audit, white_box: dict[float, Any], runs: dict[str, tuple[str, AttackSpec]]) -> None:
    """``<name>_not_stronger`` for attacks already in the audit's table: described name -> (check name, spec)."""
    for described, (name, spec) in runs.items():
        audit.not_stronger(f"{name}_not_stronger", described,
                           {e: audit.robust.loc[(spec.label, e)] for e in white_box}, white_box)


def _check_transfer(
    audit: _Audit, white_box: dict[float, Any], source: nn.Module, model: nn.Module, data: Any, spec: AttackSpec,
    *, common: dict[str, Any],
) -> None:
    """``transfer_not_stronger``: ``spec`` run on ``source`` and replayed on ``model`` never beats white-box."""
    tr = evaluate_transfer(source, model, data, spec, list(white_box), per_example=True, **common).per_example
    tr = tr.set_index(["eps", "index"])["transfer_robust_correct"].sort_index()
    audit.not_stronger("transfer_not_stronger", f"{spec.label} transferred from the source model",
                       {e: tr.loc[e] for e in white_box}, white_box)


def _check_outputs(audit: _Audit, model: nn.Module, data: Any, *, batch_size: int, device: Any) -> None:
    """``outputs_are_logits`` on the first batch (the rows evaluate() warns about)."""
    dev = attack_device([model], device)
    xb, _ = next(iter(batches(data, batch_size, order_matters=False)[0]))
    with eval_mode(model), torch.no_grad():
        rows = probability_rows(model(torch.as_tensor(xb).to(dev, torch.float32)))  # (B,)
    frac = float(rows.float().mean())
    audit.add("outputs_are_logits", frac < 1,
              "the model's outputs are not probabilities" if frac < 1 else
              f"all {len(rows)} outputs of the first batch are probability vectors (>= 0, summing to 1): the "
              "model ends in a softmax, which saturates and masks gradients; remove it and return logits",
              {"probability_rows": _r(frac), "n": len(rows)})


def _check_gradients(audit: _Audit, summary: pd.DataFrame) -> None:
    """``input_gradients_nonzero``."""
    zero, tol = float(summary["zero_grad_frac"].iloc[0]), audit.tol
    audit.add("input_gradients_nonzero", zero <= tol,
              f"{zero:.1%} of examples have an exactly zero input gradient at clean x (allowed {tol:.1%})"
              + ("" if zero <= tol else ": gradient attacks cannot move them; the model masks gradients"),
              {"zero_grad_frac": _r(zero), "grad_norm": _r(summary["grad_norm"].iloc[0]), "tolerance": tol})


def _check_monotone(audit: _Audit, acc: pd.Series, eps_pos: list[float], strongest: str) -> None:
    """``accuracy_decreases_with_eps`` for the strongest PGD run, clean accuracy included."""
    grid = [0.0, *eps_pos]
    curve = [_r(acc[(strongest, e)]) for e in grid]
    bad, stats = audit.verdict({e1: audit.weaker((strongest, e1), (strongest, e0)) for e0, e1 in zip(grid, eps_pos)})
    audit.add("accuracy_decreases_with_eps", not bad,
              f"{strongest} accuracy is non-increasing in eps" if not bad else
              f"{strongest} accuracy rises significantly with eps at eps {_eps_list(bad)}",
              {"eps": grid, "robust_acc": curve, "rise": stats["diff"], "z": stats["z"], "tolerance": audit.tol})


def _check_pgd_runs(audit: _Audit, acc: pd.Series, eps_pos: list[float], pgd_steps: dict[int, AttackSpec],
                    pgd_restarts: dict[int, AttackSpec], fgsm: AttackSpec) -> None:
    """The comparisons of PGD runs: more steps, more restarts, iterative vs single step."""
    tol, steps = audit.tol, list(pgd_steps)
    strongest = pgd_steps[steps[-1]].label
    table = {s: [_r(acc[(pgd_steps[s].label, e)]) for e in eps_pos] for s in steps}
    most_s, fewest_s = pgd_steps[steps[-1]].label, pgd_steps[steps[0]].label
    bad, stats = audit.verdict({e: audit.weaker((most_s, e), (fewest_s, e)) for e in eps_pos})
    not_converged = len(steps) > 1 and any(
        table[steps[-1]][j] < table[steps[-2]][j] - tol for j in range(len(eps_pos)))
    detail = (f"PGD-{steps[-1]} is no weaker than PGD-{steps[0]} at every eps" if not bad else
              f"PGD-{steps[-1]} is significantly weaker than PGD-{steps[0]} at eps {_eps_list(bad)}")
    if len(steps) > 1:
        detail += ("; accuracy still falls at the last step count (not converged: try more steps)"
                   if not_converged else "; converged within tolerance")
    audit.add("more_steps_do_not_help_model", not bad, detail,
              {"eps": eps_pos, "steps": steps, "robust_acc": table, "converged": not not_converged,
               "diff": stats["diff"], "z": stats["z"], "tolerance": tol})

    if pgd_restarts:
        most = max(pgd_restarts)
        many_l = pgd_restarts[most].label
        one = [_r(acc[(fewest_s, e)]) for e in eps_pos]
        many = [_r(acc[(many_l, e)]) for e in eps_pos]
        bad, stats = audit.verdict({e: audit.weaker((many_l, e), (fewest_s, e)) for e in eps_pos})
        audit.add("more_restarts_do_not_help_model", not bad,
                  f"PGD-{steps[0]} with {most} restarts is no weaker than with 1" if not bad else
                  f"PGD-{steps[0]} with {most} restarts is significantly weaker than with 1 at eps {_eps_list(bad)}",
                  {"eps": eps_pos, "restarts": [1, most], "robust_acc": {1: one, most: many},
                   "diff": stats["diff"], "z": stats["z"], "tolerance": tol})

    f_acc = [_r(acc[(fgsm.label, e)]) for e in eps_pos]
    p_acc = [_r(acc[(strongest, e)]) for e in eps_pos]
    bad, stats = audit.verdict({e: audit.weaker((strongest, e), (fgsm.label, e)) for e in eps_pos})
    audit.add("iterative_beats_single_step", not bad,
              f"{strongest} is at least as strong as FGSM at every eps" if not bad else
              f"FGSM beats {strongest} at eps {_eps_list(bad)}: the iterative attack is stuck",
              {"eps": eps_pos, "fgsm_acc": f_acc, "pgd_acc": p_acc, "diff": stats["diff"], "z": stats["z"],
               "tolerance": tol})


def _check_large_eps(audit: _Audit, big_summary: pd.DataFrame, big: float, thr: float) -> None:
    """``large_eps_accuracy_near_zero``: the worst case of the gradient attacks at ``big``."""
    big_acc = float(big_summary.loc[big_summary["attack"] == WORST_CASE, "robust_acc"].iloc[0])
    big_each = {lab: _r(a) for lab, a in big_summary.set_index("attack")["robust_acc"].items() if lab != WORST_CASE}
    audit.add("large_eps_accuracy_near_zero", big_acc <= thr,
              f"worst case of {', '.join(big_each)} at eps={big:g}: {big_acc:.1%} accuracy (must be <= {thr:.1%}; "
              + ", ".join(f"{k}: {v:.1%}" for k, v in big_each.items()) + ")"
              + ("" if big_acc <= thr else ": an unbounded attack should succeed almost always"),
              {"eps": big, "robust_acc": _r(big_acc), "per_attack": big_each, "threshold": thr})


def _check_extras(audit: _Audit, model: nn.Module, data: Any, extras: list[AttackSpec],
                  linf_white_box: dict[float, pd.Series], radii: list[float], *, steps: list[int],
                  restarts: list[int], common: dict[str, Any]) -> list[pd.DataFrame]:
    """One ``<name>_not_stronger`` check per extra attack, against white-box PGD of the attack's norm.

    Linf extras run at the Linf eps and are compared with the Linf PGD runs already made; L2 extras run
    at ``radii`` in one call with ``pgd_l2`` at every step count and restart count (the L2 reference).
    Returns the evaluate() summaries.
    """
    names = [s.name for s in extras]
    taken = {row["check"] for row in audit.rows}
    summaries = []
    for norm in ("Linf", "L2"):
        specs = [s for s in extras if s.norm == norm]
        if not specs:
            continue
        refs = [] if norm == "Linf" else [attack("pgd_l2", steps=s) for s in steps] + [
            attack("pgd_l2", steps=steps[0], n_restarts=r) for r in restarts if r > 1]
        grid = list(linf_white_box) if norm == "Linf" else radii
        result = evaluate(model, data, [*refs, *(s for s in specs if s not in refs)], grid, per_example=True, **common)
        summaries.append(result.summary)
        robust = result.per_example.set_index(["attack", "eps", "index"])["robust_correct"].sort_index()
        white_box = linf_white_box if norm == "Linf" else {
            e: audit.robust_to_all(robust, [r.label for r in refs], e) for e in grid}
        for spec in specs:
            check = f"{spec.name}_not_stronger"
            if names.count(spec.name) > 1 or check in taken:
                check = f"{spec.label}_not_stronger"
            taken.add(check)
            audit.not_stronger(check, spec.label, {e: robust.loc[(spec.label, e)] for e in grid}, white_box,
                               pgd="PGD" if norm == "Linf" else "PGD-L2")
    return summaries


def per_image_not_weaker(per_example: pd.DataFrame, *, strong: str, reference: str, check: str | None = None,
                         tolerance: float = 0.01) -> pd.DataFrame:
    """One diagnostics row: on the same images, ``strong`` breaks every image ``reference`` breaks.

    AutoAttack (``strong``) is the worst case of four attacks, APGD-CE among them; an image that plain PGD
    (``reference``) fools but AutoAttack does not means AutoAttack's run is broken or masked on this model,
    and its robust accuracy is not an upper bound. Per eps > 0 where both ran, the fraction of the images
    (the rows of that eps, matched by ``index``) that are correctly classified clean, fooled by
    ``reference`` and not fooled by ``strong`` must be at most ``tolerance`` (an absolute fraction of the
    images; with the default 0.01, no image at all on fewer than 100 images).

    Args:
        per_example: :func:`serobust.evaluate` per-example rows (``attack``, ``eps``, ``index``,
            ``clean_correct``, ``robust_correct``) of both attacks on the same images.
        strong, reference: the two attack labels.
        check: the row's name (default ``<strong name>_not_weaker_than_<reference name>``, names cut at "(").
        tolerance: allowed fraction of the images.

    Returns:
        A one-row frame with :data:`DIAGNOSTIC_COLUMNS`; ``values`` holds per eps the fraction, the count
        of such images, the number of images and the tolerance.

    Raises:
        ValueError: a label has no rows at a budget > 0, or the two attacks ran on different images.
    """
    tol = _fraction(tolerance, name="tolerance")
    name = check or f"{strong.split('(')[0]}_not_weaker_than_{reference.split('(')[0]}"
    rows = per_example[per_example["eps"] > 0]
    by = {lab: rows[rows["attack"] == lab].set_index(["eps", "index"]).sort_index() for lab in (strong, reference)}
    missing = [lab for lab, f in by.items() if f.empty]
    if missing:
        raise ValueError(f"per_example has no rows at eps > 0 for {missing}; run both attacks on the same images "
                         f"(attacks present: {sorted(map(str, per_example['attack'].unique()))})")
    s, r = by[strong], by[reference]
    if not s.index.equals(r.index):
        raise ValueError(f"{strong!r} and {reference!r} ran on different (eps, index) pairs; compare them on the "
                         "same images at the same budgets")
    beyond = s["clean_correct"].astype(bool) & ~r["robust_correct"].astype(bool) & s["robust_correct"].astype(bool)
    grouped = beyond.groupby(level="eps")
    count, n = grouped.sum().astype(int), grouped.size()
    frac = count / n
    bad = [float(e) for e in frac.index if frac[e] > tol]
    detail = (f"{strong} fools every image {reference} fools, up to {tol:.1%} of the images "
              f"(largest: {frac.max():.1%}, {int(count.max())} of {int(n.max())})" if not bad else
              f"{reference} fools images {strong} does not ("
              + ", ".join(f"{int(count[e])} of {int(n[e])} at eps {e:g}" for e in bad)
              + f"; allowed {tol:.1%}): the stronger attack's robust accuracy is no upper bound")
    if bad:
        warnings.warn(f"masking diagnostic {name!r} failed: {detail}", stacklevel=2)
    values = {"eps": [float(e) for e in frac.index], "fraction_beyond": [_r(v) for v in frac],
              "count": [int(v) for v in count], "n": [int(v) for v in n], "tolerance": tol}
    return pd.DataFrame([{"check": name, "passed": not bad, "detail": detail, "values": values}],
                        columns=DIAGNOSTIC_COLUMNS)
