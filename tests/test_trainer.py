"""The trainer: determinism, atomic checkpoints, resume after interruption or kill, clear errors."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
import types

import pandas as pd
import pytest
import torch

import serobust
from serobust.io import CheckpointError
from serobust.trainer import TrainConfig, _adversarial_batch, train

FAST = TrainConfig(epochs=3, batch_size=128, lr=0.05)


@pytest.fixture(scope="module")
def digits():
    return serobust.load_dataset("digits")


def _model(se=False, seed=0):
    return serobust.build_model("cnn", 10, 1, se=se, seed=seed, reduction=4)


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_same_seed_gives_bit_identical_weights_and_metrics(digits):
    m1, h1 = train(_model(), digits, FAST, device="cpu")
    m2, h2 = train(_model(), digits, FAST, device="cpu")
    assert _same_weights(m1, m2)
    cols = ["train_loss", "train_acc", "test_loss", "test_acc", "lr"]
    pd.testing.assert_frame_equal(h1[cols], h2[cols])
    m3, _ = train(_model(), digits, dataclasses.replace(FAST, seed=1), device="cpu")
    assert not _same_weights(m1, m3)


def test_history_has_one_row_per_epoch_and_learns(digits):
    model, hist = train(_model(), digits, FAST, device="cpu")
    assert list(hist["epoch"]) == [1, 2, 3]
    assert {"train_loss", "train_acc", "test_acc", "time_s", "images_per_s"} <= set(hist.columns)
    assert hist["test_acc"].iloc[-1] > 0.85 and not model.training
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]


def test_baseline_and_twin_see_the_same_batches(digits):
    seen: dict[bool, list[float]] = {False: [], True: []}
    for se in (False, True):
        def spy(x, generator=None, se=se):
            seen[se].append(float(x.sum()))
            return x
        spied = types.SimpleNamespace(train=digits.train, test=digits.test, augment=spy)
        train(_model(se=se), spied, dataclasses.replace(FAST, epochs=1), device="cpu")
    assert seen[False] == seen[True] and len(seen[False]) == 12


def test_checkpoint_history_written_and_finished_run_is_reused(digits, tmp_path):
    model, hist = train(_model(), digits, FAST, checkpoint_dir=tmp_path, device="cpu")
    assert (tmp_path / "last.pt").is_file() and (tmp_path / "history.csv").is_file()
    assert len(pd.read_csv(tmp_path / "history.csv")) == 3
    assert not list(tmp_path.glob("*.tmp"))
    calls = []
    again, hist2 = train(_model(), digits, FAST, checkpoint_dir=tmp_path, device="cpu",
                         on_epoch_end=lambda e, r: calls.append(e))
    assert calls == [] and _same_weights(model, again)
    pd.testing.assert_frame_equal(hist, hist2)


def test_interrupted_run_resumes_to_the_same_weights(digits, tmp_path):
    reference, _ = train(_model(), digits, FAST, device="cpu")

    def stop(epoch, row):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_model(), digits, FAST, checkpoint_dir=tmp_path, device="cpu", on_epoch_end=stop)
    resumed, hist = train(_model(), digits, FAST, checkpoint_dir=tmp_path, device="cpu")
    assert list(hist["epoch"]) == [1, 2, 3]
    assert _same_weights(reference, resumed)


def test_killed_process_resumes_to_the_same_weights(digits, tmp_path):
    cfg = TrainConfig(epochs=4, batch_size=32, lr=0.05)
    script = textwrap.dedent(f"""
        import time, serobust
        from serobust.trainer import TrainConfig, train
        data = serobust.load_dataset("digits")
        model = serobust.build_model("cnn", 10, 1, se=True, seed=0, reduction=4)
        train(model, data, TrainConfig(**{dataclasses.asdict(cfg)!r}), checkpoint_dir={str(tmp_path)!r},
              device="cpu", on_epoch_end=lambda e, r: time.sleep(600) if e == 2 else None)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            if (tmp_path / "history.csv").exists() and len(pd.read_csv(tmp_path / "history.csv")) >= 2:
                break
            assert proc.poll() is None, "training subprocess died"
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert serobust.io.load_checkpoint(tmp_path / "last.pt")["epoch"] == 2
    resumed, hist = train(_model(se=True), digits, cfg, checkpoint_dir=tmp_path, device="cpu")
    reference, _ = train(_model(se=True), digits, cfg, device="cpu")
    assert list(hist["epoch"]) == [1, 2, 3, 4]
    assert _same_weights(reference, resumed)


def test_corrupt_foreign_and_mismatched_checkpoints_raise_clear_errors(digits, tmp_path):
    train(_model(), digits, dataclasses.replace(FAST, epochs=1), checkpoint_dir=tmp_path, device="cpu")
    path = tmp_path / "last.pt"
    good = path.read_bytes()
    with pytest.raises(CheckpointError, match="another TrainConfig.*epochs"):
        train(_model(), digits, FAST, checkpoint_dir=tmp_path, device="cpu")
    with pytest.raises(CheckpointError, match="different model"):
        train(_model(se=True), digits, dataclasses.replace(FAST, epochs=1), checkpoint_dir=tmp_path, device="cpu")
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="truncated, corrupt"):
        train(_model(), digits, FAST, checkpoint_dir=tmp_path, device="cpu")
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match="not written by serobust"):
        train(_model(), digits, FAST, checkpoint_dir=tmp_path, device="cpu")


@pytest.mark.parametrize("mode", ["pgd", "fgsm_rs"])
def test_adversarial_training_examples_stay_in_budget(mode):
    model = _model().eval()
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    cfg = TrainConfig(adversarial=mode, adv_eps="8/255", adv_steps=3)
    gen = torch.Generator().manual_seed(0)
    x_adv = _adversarial_batch(model, x, y, cfg, gen, torch.device("cpu"))
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert all(p.grad is None for p in model.parameters())
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy
        assert loss(model(x_adv), y) > loss(model(x), y)


def test_adversarial_training_runs_and_is_deterministic(digits):
    cfg = TrainConfig(epochs=1, batch_size=128, adversarial="pgd", adv_eps=0.1, adv_steps=2)
    m1, h1 = train(_model(), digits, cfg, device="cpu")
    m2, _ = train(_model(), digits, cfg, device="cpu")
    assert _same_weights(m1, m2) and h1["train_loss"].notna().all()


@pytest.mark.parametrize("kw,match", [
    ({"epochs": 0}, "epochs"), ({"lr": -0.1}, "lr"), ({"schedule": "step"}, "schedule"),
    ({"adversarial": "trades"}, "adversarial"), ({"adv_eps": 8}, "adv_eps"), ({"label_smoothing": 1.0}, "label"),
])
def test_bad_config_values_name_the_key(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


def test_schedules_reach_peak_and_decay():
    from serobust.trainer import _lr_at

    for schedule in ("onecycle", "cosine"):
        cfg = TrainConfig(schedule=schedule, lr=0.1, warmup_frac=0.2)
        lrs = [_lr_at(s, 100, cfg) for s in range(100)]
        assert max(lrs) == pytest.approx(0.1) and lrs[0] < 0.02 and lrs[-1] < 0.01
    assert _lr_at(50, 100, TrainConfig(schedule="constant", lr=0.1)) == 0.1


def test_mnist5k_default_config_reaches_97_percent_for_both_twins():
    data = serobust.load_dataset("mnist5k")
    base, se = serobust.build_pair("cnn", num_classes=10, in_channels=1, reduction=4, mean=data.mean, std=data.std)
    for model in (base, se):
        _, hist = train(model, data, TrainConfig(), device="cpu")
        assert hist["test_acc"].iloc[-1] >= 0.97, hist


@pytest.mark.parametrize("mode,steps,alpha_of_eps", [("pgd", 3, lambda e: 2.5 * e / 3),
                                                     ("fgsm_rs", 1, lambda e: 1.25 * e)])
def test_adversarial_batch_equals_hand_written_pgd_from_the_epoch_generator(mode, steps, alpha_of_eps):
    """PGD-AT and FGSM-RS: a uniform start in the ball from the epoch's generator, then sign steps,
    each projected onto the ball and [0, 1] (the shared serobust.linf_pgd loop)."""
    model = _model(se=True).train()
    g = torch.Generator().manual_seed(3)
    x, y = torch.rand(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)
    eps = 8 / 255
    cfg = TrainConfig(adversarial=mode, adv_eps="8/255", adv_steps=3)
    got = _adversarial_batch(model, x, y, cfg, torch.Generator().manual_seed(0), torch.device("cpu"))
    expected_model = _model(se=True).train()  # the same weights; BatchNorm statistics move alike
    gen = torch.Generator().manual_seed(0)
    x_adv = (x + (torch.rand(x.shape, generator=gen) * 2 - 1) * eps).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(expected_model(x_adv), y), x_adv)
        x_adv = x_adv.detach() + alpha_of_eps(eps) * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    torch.testing.assert_close(got, x_adv, rtol=0, atol=1e-6)


def test_evaluate_accuracy_on_a_model_without_parameters_restores_its_mode():
    from serobust.trainer import evaluate_accuracy

    model = torch.nn.Flatten().train()  # logits are the pixels: no parameter tells the device
    x = torch.rand(10, 1, 2, 5, generator=torch.Generator().manual_seed(0))
    y = x.flatten(1).argmax(1)
    y[:3] = (y[:3] + 1) % 10
    accuracy, loss = evaluate_accuracy(model, x, y, batch_size=4)
    assert accuracy == pytest.approx(0.7)
    assert loss == pytest.approx(torch.nn.functional.cross_entropy(x.flatten(1), y).item(), rel=1e-6)
    assert model.training
