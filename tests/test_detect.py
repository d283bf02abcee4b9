"""The excitation detector (serobust.detect): Lee et al.'s Mahalanobis score against a numpy
computation, AUROC against the Mann-Whitney statistic, planted and absent signals, the adaptive
attack, the study table and its verdict."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from se_reference import manual_forward
from sklearn.covariance import ledoit_wolf_shrinkage
from torch import nn

import serobust as sr
from serobust.detect import (
    ADAPTIVE,
    DETECTOR_FEATURES,
    MahalanobisDetector,
    detection_analysis,
    detection_metrics,
    detection_verdict,
    detector_pgd,
)
from serobust.detect.study import adaptive_label
from serobust.detect.verdict import detection_criterion
from serobust.errors import InputError
from serobust.excitation.adapters import NoSEModuleError, find_se_modules
from serobust.models.cnn import ConvBlock
from serobust.models.se import SqueezeExcite

pytestmark = pytest.mark.usefixtures("one_thread")

EPS = 0.2  # Linf on 8x8 digits: PGD fools the cnn on nearly every image


# ---------------------------------------------------------------------------------------------- references
def mann_whitney_auroc(neg: np.ndarray, pos: np.ndarray) -> float:
    """P(positive scores above negative) + 0.5 P(tie), over all n_pos * n_neg pairs."""
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def tpr_by_hand(neg: np.ndarray, pos: np.ndarray, fpr: float = 0.05) -> float:
    """Largest fraction of positives >= t over thresholds t with at most ``fpr`` of negatives >= t."""
    best = 0.0
    for t in np.unique(np.concatenate([neg, pos])):
        if (neg >= t).mean() <= fpr:
            best = max(best, float((pos >= t).mean()))
    return best


def features_by_hand(kind: str, model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[np.ndarray]]:
    """Logits and per-block features of serobust's SmallCNN, written out: [s, z] of each SE block
    (s from the weights) for "excitation", the pooled ConvBlock outputs for "pooled"."""
    with torch.no_grad():
        if kind == "excitation":
            logits, ss, us = manual_forward(model, x)
            return logits, [torch.cat([s, u.mean((2, 3))], 1).double().numpy() for s, u in zip(ss, us)]
        h, feats = model.normalize(x), []
        for layer in model.features:
            h = layer(h)
            if isinstance(layer, ConvBlock):
                feats.append(h.mean((2, 3)).double().numpy())
        return model.fc(torch.flatten(model.pool(h), 1)), feats


def detector_for(kind: str, pair) -> MahalanobisDetector:
    base, se = pair
    if kind == "excitation":
        return MahalanobisDetector(se, features="excitation")
    return MahalanobisDetector(base, features="pooled", blocks=sr.matched_layers(base, se))


# ---------------------------------------------------------------------------------------------- the score
@pytest.mark.parametrize("kind", DETECTOR_FEATURES)
def test_score_is_lee_et_al_mahalanobis_with_ledoit_wolf_and_clean_standardization(kind, trained_digits_pair,
                                                                                  digits_xy):
    (xtr, ytr), (xte, _) = digits_xy
    x_fit, y_fit, x = xtr[:500], ytr[:500], xte[:80]
    detector = detector_for(kind, trained_digits_pair).fit(x_fit, y_fit, batch_size=128)
    model = detector.model
    fit_logits, fit_feats = features_by_hand(kind, model, x_fit)
    logits, feats = features_by_hand(kind, model, x)
    assert len(fit_feats) == len(detector.blocks) == 5
    y_np, pred_fit, pred = y_fit.numpy(), fit_logits.argmax(1).numpy(), logits.argmax(1).numpy()
    dist_fit, dist = [], []
    for f_fit, f in zip(fit_feats, feats):
        means = np.stack([f_fit[y_np == k].mean(0) for k in range(10)])
        centred = f_fit - means[y_np]
        emp = centred.T @ centred / len(centred)
        delta = ledoit_wolf_shrinkage(centred, assume_centered=True)
        shrunk = (1 - delta) * emp + delta * np.trace(emp) / emp.shape[0] * np.eye(emp.shape[0])
        prec = np.linalg.inv(shrunk)
        for out, ff, pp in ((dist_fit, f_fit, pred_fit), (dist, f, pred)):
            d = ff - means[pp]
            out.append(np.einsum("nd,de,ne->n", d, prec, d))
    dist_fit, dist = np.stack(dist_fit, 1), np.stack(dist, 1)  # (N, blocks)
    expected = ((dist - dist_fit.mean(0)) / dist_fit.std(0, ddof=1)).sum(1)
    np.testing.assert_allclose(detector.distances(x).numpy(), dist, rtol=2e-3, atol=1e-3)
    pred_got, score = detector.predict_score(x, batch_size=32)
    np.testing.assert_array_equal(pred_got.numpy(), pred)
    np.testing.assert_allclose(score.numpy(), expected, rtol=2e-3, atol=2e-3)
    # on the fit images, each block's standardized distance has mean 0 and sd 1 by construction
    fit_score = detector.score(x_fit)
    assert abs(float(fit_score.mean())) < 1e-3


def test_metrics_equal_mann_whitney_and_the_threshold_set_on_clean_scores(trained_digits_pair, digits_xy):
    (xtr, ytr), (xte, yte) = digits_xy
    detector = detector_for("excitation", trained_digits_pair).fit(xtr, ytr)
    x, y = xte[:120], yte[:120]
    x_adv = sr.generate(detector.model, x, y, "fgsm", 0.1, seed=0)
    neg, pos = detector.score(x).numpy(), detector.score(x_adv).numpy()
    got = detection_metrics(torch.as_tensor(neg), pos)
    assert got["n_neg"] == 120 and got["n_pos"] == 120
    assert got["auroc"] == pytest.approx(mann_whitney_auroc(neg, pos), abs=1e-12)
    assert got["tpr_at_5fpr"] == pytest.approx(tpr_by_hand(neg, pos), abs=1e-12)
    assert 0.6 < got["auroc"] < 1.0  # FGSM at 0.1 is visible, but not perfectly


def test_metrics_with_ties_empty_sets_and_bad_scores():
    rng = np.random.default_rng(0)
    neg, pos = rng.integers(0, 6, 200).astype(float), rng.integers(2, 9, 50).astype(float)  # many ties
    got = detection_metrics(neg, pos)
    assert got["auroc"] == pytest.approx(mann_whitney_auroc(neg, pos), abs=1e-12)
    assert got["tpr_at_5fpr"] == pytest.approx(tpr_by_hand(neg, pos), abs=1e-12)
    # tie groups of 1 negative and 2 positives make a straight ROC segment through FPR 5%: the TPR there
    # (0.2) is read at a point that lies on the segment (roc_curve's drop_intermediate would lose it)
    high = np.arange(100.0, 80.0, -1)
    neg, pos = np.concatenate([high, np.zeros(80)]), np.concatenate([high, high, np.zeros(10)])
    got = detection_metrics(neg, pos)
    assert got["tpr_at_5fpr"] == pytest.approx(tpr_by_hand(neg, pos)) == pytest.approx(0.2)
    assert got["auroc"] == pytest.approx(mann_whitney_auroc(neg, pos), abs=1e-12)
    empty = detection_metrics(neg, np.array([]))
    assert math.isnan(empty["auroc"]) and math.isnan(empty["tpr_at_5fpr"]) and empty["n_pos"] == 0
    with pytest.raises(ValueError, match="NaN"):
        detection_metrics(neg, np.array([1.0, np.nan]))


# ---------------------------------------------------------------------------------------------- planted signals
class PlantedSE(nn.Module):
    """A hand-built SE model: u = x (2 channels), s = sigmoid(4 z - 2), class 1 iff channel 0 is bright.

    Channel 1 never reaches the logits, so a shift of channel 1 moves z_1, s_1 (and the pooled gated
    map) without changing the prediction.
    """

    def __init__(self) -> None:
        super().__init__()
        self.se = SqueezeExcite(2, reduction=1, min_hidden=2)
        self.head = nn.Linear(2, 2)
        with torch.no_grad():
            self.se.fc1.weight.copy_(torch.eye(2))
            self.se.fc1.bias.zero_()
            self.se.fc2.weight.copy_(4 * torch.eye(2))
            self.se.fc2.bias.fill_(-2.0)
            self.head.weight.copy_(torch.tensor([[0.0, 0.0], [10.0, 0.0]]))
            self.head.bias.copy_(torch.tensor([0.0, -2.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.se(x).mean((2, 3)))


def planted_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (n, 2, 4, 4) in [0.15, 0.75]: channel 0 at 0.3 (class 0) or 0.6 (class 1), channel 1 at
    U(0.3, 0.5), both with per-image and per-pixel jitter."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    level0 = 0.3 + 0.3 * y + 0.1 * (torch.rand(n, generator=g) - 0.5)
    level1 = 0.3 + 0.2 * torch.rand(n, generator=g)
    x = torch.stack([level0, level1], 1)[:, :, None, None].expand(n, 2, 4, 4)
    return x + 0.1 * (torch.rand(n, 2, 4, 4, generator=g) - 0.5), y


CHECKERBOARD = 0.1 * (2 * ((torch.arange(4)[:, None] + torch.arange(4)[None, :]) % 2) - 1).float()  # zero mean


@pytest.mark.parametrize("kind", DETECTOR_FEATURES)
@pytest.mark.parametrize("planted", [True, False], ids=["signal", "no_signal"])
def test_planted_excitation_signal_is_detected_and_absent_signal_is_chance(kind, planted):
    model = PlantedSE().eval()
    x_fit, y_fit = planted_data(400, seed=0)
    x, y = planted_data(300, seed=1)
    detector = MahalanobisDetector(model, features=kind, blocks=None if kind == "excitation" else ["se"])
    detector.fit(x_fit, y_fit)
    if planted:  # channel 1's mean rises by 0.3: z_1 and s_1 move, the prediction does not
        x_pert = x + torch.tensor([0.0, 0.3])[None, :, None, None]
    else:  # a zero-mean pattern per channel: pixels move by 0.1, z and s do not
        x_pert = x + CHECKERBOARD
    pred, clean = detector.predict_score(x)
    pred_pert, pert = detector.predict_score(x_pert)
    assert torch.equal(pred, y) and torch.equal(pred_pert, y)
    got = detection_metrics(clean, pert)
    if planted:
        assert got["auroc"] > 0.99 and got["tpr_at_5fpr"] > 0.95
    else:
        assert abs(got["auroc"] - 0.5) < 0.01 and got["tpr_at_5fpr"] < 0.1


# ---------------------------------------------------------------------------------------------- adaptive attack
@pytest.mark.parametrize("kind", DETECTOR_FEATURES)
def test_adaptive_attack_fools_the_model_and_lowers_the_detection_auroc(kind, trained_digits_pair, digits_xy):
    (xtr, ytr), (xte, yte) = digits_xy
    detector = detector_for(kind, trained_digits_pair).fit(xtr, ytr)
    x, y = xte[:150], yte[:150]
    pred, clean = detector.predict_score(x)
    neg = pred == y
    x_pgd = sr.generate(detector.model, x, y, "pgd", EPS, seed=0)
    x_ada = detector_pgd(detector, x, y, EPS, seed=0, batch_size=64)
    assert (x_ada - x).abs().max() <= EPS + 1e-6 and x_ada.min() >= 0 and x_ada.max() <= 1
    results = {}
    for name, xa in (("pgd", x_pgd), ("adaptive", x_ada)):
        p, s = detector.predict_score(xa)
        fooled = neg & (p != y)
        results[name] = (detection_metrics(clean[neg], s[fooled])["auroc"], float(fooled.sum() / neg.sum()))
    (auroc_pgd, success_pgd), (auroc_ada, success_ada) = results["pgd"], results["adaptive"]
    assert auroc_pgd > 0.9 and success_pgd > 0.95  # plain PGD is easy to detect ...
    assert success_ada > 0.95 and auroc_ada < auroc_pgd - 0.25  # ... an attack that knows the detector is not


def test_detector_pgd_is_seeded_and_restores_the_model(trained_digits_pair, digits_xy):
    (xtr, ytr), (xte, yte) = digits_xy
    detector = detector_for("excitation", trained_digits_pair).fit(xtr[:600], ytr[:600])
    x, y = xte[:40], yte[:40]
    a = detector_pgd(detector, x, y, EPS, steps=4, seed=1, random_start=True)
    assert torch.equal(a, detector_pgd(detector, x, y, EPS, steps=4, seed=1, random_start=True))
    assert not torch.equal(a, detector_pgd(detector, x, y, EPS, steps=4, seed=2, random_start=True))
    # the default starts at the clean image: no seed enters
    assert torch.equal(detector_pgd(detector, x, y, EPS, steps=4, seed=1), detector_pgd(detector, x, y, EPS, steps=4,
                                                                                        seed=2))
    assert torch.equal(detector_pgd(detector, x, y, 0.0), x)
    se = trained_digits_pair[1]
    assert all(p.requires_grad for p in se.parameters())  # attack_state's frozen flags are restored
    assert not se.training


def test_detector_pgd_is_a_registered_attack_on_the_detected_classifier(trained_digits_pair, digits_xy):
    """By name through the harness: the model is the classifier with its detector; detector_pgd() is that call."""
    from serobust.attacks import attack, evaluate, generate
    from serobust.attacks.detector_pgd import DetectedClassifier

    (xtr, ytr), (xte, yte) = digits_xy
    detector = detector_for("excitation", trained_digits_pair).fit(xtr[:600], ytr[:600])
    x, y = xte[:40], yte[:40]
    spec = attack("detector_pgd", steps=10)
    result = evaluate(DetectedClassifier(detector), (x, y), spec, EPS, seed=1, batch_size=16, progress=False)
    summary = getattr(result, "summary", result)  # a frame, or evaluate's one result type after issue 19
    x_adv = generate(DetectedClassifier(detector), x, y, spec, EPS, seed=1, batch_size=16)
    assert torch.equal(x_adv, detector_pgd(detector, x, y, EPS, steps=10, batch_size=16))
    se = trained_digits_pair[1]
    with torch.no_grad():
        robust = (se(x).argmax(1) == y) & (se(x_adv).argmax(1) == y)
    assert summary.iloc[0]["robust_acc"] == pytest.approx(robust.double().mean().item(), abs=1e-12)
    assert summary.iloc[0]["robust_acc"] < summary.iloc[0]["clean_acc"] - 0.3
    with pytest.raises(TypeError, match="DetectedClassifier"):
        generate(se, x, y, spec, EPS)
    with pytest.raises(RuntimeError, match="fit"):
        DetectedClassifier(detector_for("excitation", trained_digits_pair))


# ---------------------------------------------------------------------------------------------- the study
def test_detection_analysis_table_counts_and_attack_success(trained_digits_pair, digits_xy):
    base, se = trained_digits_pair
    (xtr, ytr), (xte, yte) = digits_xy
    x, y = xte[:60], yte[:60]
    frame = detection_analysis(se, base, xtr[:700], ytr[:700], x, y, eps=[EPS], adaptive_weight=0.0,
                               adaptive_steps=6, seed=3, batch_size=32)
    assert list(frame.columns) == ["features", "perturbation", "eps", "auroc", "tpr_at_5fpr", "n_pos", "n_neg",
                                   "attack_success"]
    plain = ("fgsm", "pgd", "gaussian")
    assert [tuple(r) for r in frame[["features", "perturbation"]].itertuples(index=False)] == [
        *(("excitation", p) for p in (*plain, ADAPTIVE)), *(("pooled_twin", p) for p in plain),
        *(("pooled", p) for p in (*plain, ADAPTIVE))]
    # the within-twin control scores the very same images: same negatives, positives and attack success
    twin = frame[frame.features == "pooled_twin"].set_index("perturbation")
    exc = frame[frame.features == "excitation"].set_index("perturbation").loc[list(plain)]
    pd.testing.assert_frame_equal(twin[["n_pos", "n_neg", "attack_success"]], exc[["n_pos", "n_neg", "attack_success"]])
    for features, model in (("excitation", se), ("pooled_twin", se), ("pooled", base)):
        rows = frame[frame.features == features].set_index("perturbation")
        x_pgd = sr.generate(model, x, y, "pgd", EPS, seed=3, batch_size=32)
        with torch.no_grad():
            correct = model(x).argmax(1) == y
            fooled = correct & (model(x_pgd).argmax(1) != y)
        assert (rows["n_neg"] == int(correct.sum())).all()
        assert rows.loc["pgd", "attack_success"] == pytest.approx(float(fooled.sum() / correct.sum()))
        assert rows.loc["pgd", "n_pos"] == int(fooled.sum())
        assert rows.loc["gaussian", "n_pos"] == rows.loc["gaussian", "n_neg"]  # every noisy negative counts
        assert rows.loc["gaussian", "attack_success"] < 0.3 < rows.loc["pgd", "attack_success"]
    assert frame["auroc"].between(0, 1).all()


def test_within_twin_control_and_the_strongest_adaptive_weight_per_image(trained_digits_pair, digits_xy):
    """Recomputed independently: the twin's pooled-feature detector on the twin's own PGD images, and per image
    the lowest-scoring fooling example over the adaptive attack's weights."""
    base, se = trained_digits_pair
    (xtr, ytr), (xte, yte) = digits_xy
    x, y = xte[:50], yte[:50]
    weights = [0.0, 10.0]
    frame = detection_analysis(se, base, xtr[:600], ytr[:600], x, y, eps=EPS, attacks=["pgd"],
                               adaptive_weight=weights, adaptive_steps=5, seed=4, batch_size=25)
    rows = frame.set_index(["features", "perturbation"])
    assert {(f, p) for f in ("excitation", "pooled") for p in (adaptive_label(0), adaptive_label(10), ADAPTIVE)} <= set(
        rows.index)
    twin = MahalanobisDetector(se, features="pooled", blocks=sr.matched_layers(base, se)).fit(xtr[:600], ytr[:600])
    pred, clean = twin.predict_score(x, batch_size=25)
    neg = pred == y
    p_pgd, s_pgd = twin.predict_score(sr.generate(se, x, y, "pgd", EPS, seed=4, batch_size=25))
    expected = detection_metrics(clean[neg], s_pgd[neg & (p_pgd != y)])
    assert rows.loc[("pooled_twin", "pgd"), "auroc"] == pytest.approx(expected["auroc"])
    assert rows.loc[("pooled_twin", "pgd"), "n_pos"] == expected["n_pos"]

    exc = MahalanobisDetector(se, features="excitation",
                              blocks=[b.name for b in find_se_modules(se)]).fit(xtr[:600], ytr[:600])
    pred, clean = exc.predict_score(x, batch_size=25)
    neg = pred == y
    runs = [exc.predict_score(detector_pgd(exc, x, y, EPS, weight=w, steps=5, batch_size=25)) for w in weights]
    fooled = torch.stack([p != y for p, _ in runs])  # (W, N)
    scores = torch.stack([torch.where(f, s, torch.inf) for f, (_, s) in zip(fooled, runs)])
    best = torch.where(fooled.any(0), scores.min(0).values, runs[0][1])
    any_fooled = neg & fooled.any(0)
    expected = detection_metrics(clean[neg], best[any_fooled])
    assert rows.loc[("excitation", ADAPTIVE), "auroc"] == pytest.approx(expected["auroc"])
    assert rows.loc[("excitation", ADAPTIVE), "attack_success"] == pytest.approx(float(any_fooled.sum() / neg.sum()))
    assert rows.loc[("excitation", ADAPTIVE), "attack_success"] >= max(
        rows.loc[("excitation", adaptive_label(w)), "attack_success"] for w in weights)


def verdict_frame(exc: float, pooled: float, adaptive: float, twin: float | None = None) -> pd.DataFrame:
    rows = []
    detectors = [("excitation", exc, adaptive), ("pooled", pooled, 0.5)]
    if twin is not None:
        detectors.append(("pooled_twin", twin, None))
    for features, pgd_auroc, ada_auroc in detectors:
        for perturbation, auroc in (("pgd", pgd_auroc), (ADAPTIVE, ada_auroc)):
            if auroc is None:
                continue
            rows.append({"features": features, "perturbation": perturbation, "eps": 0.1, "auroc": auroc,
                         "tpr_at_5fpr": 0.5, "n_pos": 10, "n_neg": 10, "attack_success": 1.0})
    return pd.DataFrame(rows)


@pytest.mark.parametrize(("twin", "supported"), [(0.80, True), (0.93, False), (None, True)])
def test_detection_verdict_needs_the_within_twin_control_too(twin, supported):
    """Beyond the baseline's features (0.95 vs 0.80) is not enough when the twin's own pooled features do as well."""
    verdict = detection_verdict(verdict_frame(0.95, 0.80, 0.80, twin), margin=0.05, level=0.7)
    assert verdict.supported is supported and verdict.twin_control is (twin is not None)
    row = verdict.table.iloc[0]
    assert bool(row["beyond_control"])
    if twin is not None:
        assert row["auroc_difference_twin"] == pytest.approx(0.95 - twin)
        assert bool(row["beyond_twin_control"]) is supported
        assert "pooled_twin" in str(verdict)


def test_detection_criterion_reports_the_within_twin_control():
    frames = []
    for seed, (exc, twin) in enumerate([(0.95, 0.94), (0.96, 0.94), (0.94, 0.93)]):
        frames.append(verdict_frame(exc, 0.70, 0.85, twin).assign(seed=seed))
    crit = detection_criterion(pd.concat(frames), margin=0.05, level=0.7, n_resamples=1000).to_dict()
    assert crit["twin_control_effect"] == pytest.approx(np.mean([0.01, 0.02, 0.01]))
    assert crit["effect"] == pytest.approx(np.mean([0.25, 0.26, 0.24]))
    assert crit["outcome"] == "not supported"  # beyond the baseline, not beyond the twin's own features
    assert "SE twin's own pooled features" in crit["detail"]
    no_twin = detection_criterion(pd.concat([verdict_frame(0.95 + i / 100, 0.70, 0.85).assign(seed=i)
                                             for i in range(3)]), margin=0.05, level=0.7, n_resamples=1000).to_dict()
    assert no_twin["outcome"] == "supported" and math.isnan(no_twin["twin_control_effect"])


@pytest.mark.parametrize(("exc", "pooled", "adaptive", "supported"), [
    (0.95, 0.80, 0.80, True),
    (0.95, 0.92, 0.80, False),  # no better than the baseline's own features
    (0.95, 0.80, 0.60, False),  # broken by the adaptive attack
    (0.95, 0.80, math.nan, False),  # no adaptive positives: no evidence
])
def test_detection_verdict(exc, pooled, adaptive, supported):
    verdict = detection_verdict(verdict_frame(exc, pooled, adaptive), margin=0.05, level=0.7)
    assert verdict.supported is supported
    row = verdict.table.iloc[0]
    assert row["auroc_difference"] == pytest.approx(exc - pooled)
    assert bool(row["beyond_control"]) is (exc - pooled > 0.05)
    assert ("not supported" in str(verdict)) is not supported
    with pytest.raises(ValueError, match="lacks rows"):
        detection_verdict(verdict_frame(exc, pooled, adaptive), attack="fgsm")


# ---------------------------------------------------------------------------------------------- errors
def test_public_names_resolve_through_their_package():
    import serobust.detect as detect

    for name in ("MahalanobisDetector", "detection_analysis", "detection_verdict", "detector_pgd",
                 "detection_metrics", "DETECTOR_FEATURES"):
        assert callable(getattr(detect, name)) or name == "DETECTOR_FEATURES"
    assert sr.detection_analysis is detect.detection_analysis  # the one detection name on the face
    assert DETECTOR_FEATURES == ("excitation", "pooled")


def test_errors_name_the_fix(trained_digits_pair, digits_xy):
    base, se = trained_digits_pair
    (xtr, ytr), (xte, yte) = digits_xy
    with pytest.raises(NoSEModuleError):
        MahalanobisDetector(base, features="excitation")
    with pytest.raises(ValueError, match="matched_layers"):
        MahalanobisDetector(base, features="pooled")
    with pytest.raises(ValueError, match="not modules"):
        MahalanobisDetector(base, features="pooled", blocks=["features.9"])
    with pytest.raises(ValueError, match="valid kinds"):
        MahalanobisDetector(se, features="logits")
    detector = MahalanobisDetector(se)
    with pytest.raises(RuntimeError, match="fit"):
        detector.score(xte[:4])
    with pytest.raises(InputError, match="no example of classes"):
        detector.fit(xtr[ytr < 9], ytr[ytr < 9])
    with pytest.raises(InputError, match="outside the model's 10 classes"):
        detector.fit(xtr[:20], torch.full((20,), 10))
    with pytest.raises(InputError, match="255"):
        detector.fit(xtr * 255, ytr)
    detector.fit(xtr[:300], ytr[:300])
    with pytest.raises(ValueError, match="weight"):
        detector_pgd(detector, xte[:4], yte[:4], EPS, weight=-1.0)
    with pytest.raises(ValueError, match="holds 0"):
        detection_analysis(se, base, xtr, ytr, xte[:4], yte[:4], eps=[0.0, EPS])
