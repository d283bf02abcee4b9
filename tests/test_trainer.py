"""The trainer: determinism, atomic checkpoints, resume after interruption or kill, clear errors, and the
CUDA-graph step (on the CPU through its eager fallback; the CUDA tests run on a GPU machine)."""

from __future__ import annotations

import dataclasses
import logging
import math
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
from serobust.data.tensors import BatchAugment
from serobust.errors import DeviceError
from serobust.io import CheckpointError
from serobust.training import TrainConfig, adversarial, loop, schedule, train
from serobust.training import step as steps
from serobust.training.adversarial import adversarial_batch

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

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
        from serobust.training import TrainConfig, train
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


def test_a_users_history_csv_in_the_checkpoint_dir_is_refused_not_overwritten(digits, tmp_path):
    users = tmp_path / "history.csv"
    users.write_text("run,score\n1,0.5\n")
    with pytest.raises(CheckpointError, match="history.csv was not written by serobust"):
        train(_model(), digits, dataclasses.replace(FAST, epochs=1), checkpoint_dir=tmp_path, device="cpu")
    assert users.read_text() == "run,score\n1,0.5\n" and not (tmp_path / "last.pt").exists()
    users.unlink()  # serobust's own history, its last.pt deleted to train afresh: replaced
    train(_model(), digits, dataclasses.replace(FAST, epochs=1), checkpoint_dir=tmp_path, device="cpu")
    (tmp_path / "last.pt").unlink()
    _, hist = train(_model(), digits, dataclasses.replace(FAST, epochs=1), checkpoint_dir=tmp_path, device="cpu")
    assert list(pd.read_csv(tmp_path / "history.csv")["epoch"]) == list(hist["epoch"]) == [1]


@pytest.mark.parametrize("mode", ["pgd", "fgsm_rs"])
def test_adversarial_training_examples_stay_in_budget(mode):
    model = _model().eval()
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    cfg = TrainConfig(adversarial=mode, adv_eps="8/255", adv_steps=3)
    gen = torch.Generator().manual_seed(0)
    x_adv = adversarial_batch(model, x, y, cfg, gen, torch.device("cpu"))
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
    ({"cuda_graph": "fast"}, "cuda_graph"), ({"cuda_graph": True}, "cuda_graph"),
])
def test_bad_config_values_name_the_key(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


def test_schedules_reach_peak_and_decay():
    from serobust.training.schedule import lr_at

    for name in ("onecycle", "cosine"):
        cfg = TrainConfig(schedule=name, lr=0.1, warmup_frac=0.2)
        lrs = [lr_at(s, 100, cfg) for s in range(100)]
        assert max(lrs) == pytest.approx(0.1) and lrs[0] < 0.02 and lrs[-1] < 0.01
    assert lr_at(50, 100, TrainConfig(schedule="constant", lr=0.1)) == 0.1


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
    got = adversarial_batch(model, x, y, cfg, torch.Generator().manual_seed(0), torch.device("cpu"))
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
    from serobust.training import evaluate_accuracy

    model = torch.nn.Flatten().train()  # logits are the pixels: no parameter tells the device
    x = torch.rand(10, 1, 2, 5, generator=torch.Generator().manual_seed(0))
    y = x.flatten(1).argmax(1)
    y[:3] = (y[:3] + 1) % 10
    accuracy, loss = evaluate_accuracy(model, x, y, batch_size=4)
    assert accuracy == pytest.approx(0.7)
    assert loss == pytest.approx(torch.nn.functional.cross_entropy(x.flatten(1), y).item(), rel=1e-6)
    assert model.training
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            evaluate_accuracy(model, x, y, batch_size=bad)


# ----------------------------------------------------------------------------------------------------------
# The step: eager on the CPU exactly as before, and the CUDA-graph step
# ----------------------------------------------------------------------------------------------------------


def _reference_train(model, data, cfg):
    """The trainer's documented algorithm written out by hand (onecycle, no attack), for the CPU."""
    model.to(memory_format=torch.channels_last)
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}],
                          lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    x, y = data.train.tensors()
    n, b = len(y), cfg.batch_size
    steps = math.ceil(n / b)
    total, warm = steps * cfg.epochs, int(cfg.warmup_frac * steps * cfg.epochs)
    for epoch in range(cfg.epochs):
        model.train()
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        perm = torch.randperm(n, generator=g)
        for i in range(steps):
            s = epoch * steps + i
            lr = cfg.lr * (s + 1) / warm if s < warm else cfg.lr * max(0.0, 1 - (s - warm) / (total - warm))
            for group in opt.param_groups:
                group["lr"] = lr
            idx = perm[i * b : (i + 1) * b]
            xb = data.augment(x[idx], generator=g).contiguous(memory_format=torch.channels_last)
            loss = torch.nn.functional.cross_entropy(model(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model


@pytest.mark.parametrize("cuda_graph", ["auto", "off"])
def test_cpu_training_equals_the_hand_written_algorithm_bit_for_bit(digits, cuda_graph):
    """On the CPU the default (and "off") step is today's eager step: the same weights to the last bit,
    with augmentation and a smaller last batch (1438 = 11 * 128 + 30)."""
    data = dataclasses.replace(digits, augment=BatchAugment(padding=1, flip=True))
    cfg = dataclasses.replace(FAST, epochs=2, cuda_graph=cuda_graph)
    ours, _ = train(_model(se=True), data, cfg, device="cpu")
    assert _same_weights(ours, _reference_train(_model(se=True), data, cfg))


def _batches(n_full=6, b=16, last=5):
    g = torch.Generator().manual_seed(0)
    sizes = [b] * n_full + [last] + [b] * 2  # a smaller batch between full ones, as at an epoch's end
    return [(torch.rand(s, 1, 8, 8, generator=g).contiguous(memory_format=torch.channels_last),
             torch.randint(0, 10, (s,), generator=g)) for s in sizes]


def test_graphed_step_computes_exactly_what_the_eager_step_computes():
    """The wrapper (warm-up, static buffers, replays, an eager step for another batch size) changes nothing:
    on the CPU its replays run the same step on the static buffers, so weights and totals match bit for bit."""
    results = []
    for wrap in (False, True):
        model = _model(se=True).to(memory_format=torch.channels_last).train()
        opt = steps.make_optimizer(model, FAST)
        step = steps.Step(model, opt, torch.nn.CrossEntropyLoss(), torch.device("cpu"))
        run = steps.GraphedStep(step, warmup=2) if wrap else step
        for i, (xb, yb) in enumerate(_batches()):
            steps.set_lr(opt, 0.05 * (i + 1) / 9)
            run(xb, yb)
        results.append((model, step.loss_sum.clone(), step.correct.clone()))
        if wrap:
            assert run.warmup_left == 0 and run._x.shape == (16, 1, 8, 8)
            assert run._x.is_contiguous(memory_format=torch.channels_last)
            torch.testing.assert_close(run._x, _batches()[-1][0], rtol=0, atol=0)  # the last full batch
    (m1, loss1, correct1), (m2, loss2, correct2) = results
    assert _same_weights(m1, m2) and torch.equal(loss1, loss2) and torch.equal(correct1, correct2)
    assert correct1 > 0 and loss1 > 0


def _graph_mode_on_cpu(monkeypatch):
    """The CUDA-graph mode's optimizer (fused SGD, learning rate in a tensor) and wrapper, on the CPU;
    returns the list of steps the wrapper ran."""
    calls = []

    class Counted(steps.GraphedStep):
        def __call__(self, xb, yb, noise=None):
            groups = self.step.opt.param_groups  # capturable also after a resume's load_state_dict
            assert all(g["fused"] is True and g["lr"] is groups[0]["lr"] for g in groups)
            calls.append(len(yb))
            super().__call__(xb, yb, noise)

    monkeypatch.setattr(loop, "use_cuda_graph", lambda setting, device: setting != "off")
    monkeypatch.setattr(loop, "GraphedStep", Counted)
    return calls


@pytest.mark.parametrize("momentum", [0.9, 0.0])
def test_capturable_optimizer_makes_the_same_sgd_steps(momentum):
    """Fused SGD reading the learning rate from a device tensor (what a CUDA graph can replay) takes the
    steps of the eager optimizer: per-step learning rates, weight decay on weights only, Nesterov momentum."""
    cfg = TrainConfig(momentum=momentum, weight_decay=5e-3)
    models = []
    for capturable in (False, True):
        model = _model(se=True).train()
        opt = steps.make_optimizer(model, cfg)
        steps.set_step_mode(opt, device=torch.device("cpu"), capturable=capturable)
        assert all((g["fused"] is True) == capturable for g in opt.param_groups)
        step = steps.Step(model, opt, torch.nn.CrossEntropyLoss(), torch.device("cpu"), capturable=capturable)
        for i, (xb, yb) in enumerate(_batches(n_full=4, last=16)):
            steps.set_lr(opt, 0.1 * (i + 1) / 7)
            step(xb, yb)
        models.append(model)
    sa, sb = models[0].state_dict(), models[1].state_dict()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=1e-5, atol=1e-7)
    assert not _same_weights(models[0], _model(se=True))


def test_graph_mode_trains_like_eager_mode_and_resumes_bit_identically(digits, tmp_path, monkeypatch):
    eager, h_eager = train(_model(), digits, FAST, device="cpu")
    calls = _graph_mode_on_cpu(monkeypatch)
    graphed, h_graphed = train(_model(), digits, FAST, device="cpu")
    assert calls == ([128] * 11 + [30]) * 3  # every step went through the wrapper
    assert list(h_graphed.columns) == list(h_eager.columns)
    # the same training up to fused SGD's last-bit rounding, which the training amplifies a little
    pd.testing.assert_series_equal(h_graphed["train_loss"], h_eager["train_loss"], rtol=1e-3, check_exact=False)
    pd.testing.assert_series_equal(h_graphed["test_acc"], h_eager["test_acc"], atol=0.01, check_exact=False)

    def stop(epoch, row):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_model(), digits, FAST, checkpoint_dir=tmp_path / "g", device="cpu", on_epoch_end=stop)
    ckpt = serobust.io.load_checkpoint(tmp_path / "g" / "last.pt")
    assert all(isinstance(g["lr"], float) and g["fused"] is None for g in ckpt["optimizer"]["param_groups"])
    resumed, hist = train(_model(), digits, FAST, checkpoint_dir=tmp_path / "g", device="cpu")
    assert list(hist["epoch"]) == [1, 2, 3] and _same_weights(graphed, resumed)


def test_a_checkpoint_resumes_under_another_cuda_graph_setting(digits, tmp_path, monkeypatch):
    """cuda_graph says how a step runs, not what it computes: an eager checkpoint continues as a graph run."""
    cfg = dataclasses.replace(FAST, cuda_graph="off")

    def stop(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_model(), digits, cfg, checkpoint_dir=tmp_path, device="cpu", on_epoch_end=stop)
    calls = _graph_mode_on_cpu(monkeypatch)
    _, hist = train(_model(), digits, FAST, checkpoint_dir=tmp_path, device="cpu")
    _, reference = train(_model(), digits, cfg, device="cpu")
    assert len(calls) == 24 and list(hist["epoch"]) == [1, 2, 3]
    assert hist["train_loss"].iloc[-1] == pytest.approx(reference["train_loss"].iloc[-1], rel=1e-3)


def test_cuda_graph_option_keys_and_devices():
    assert TrainConfig().to_dict()["cuda_graph"] == "auto"  # part of every key: it changes CUDA numerics
    for value in ("on", "off"):
        cfg = TrainConfig(cuda_graph=value)
        assert cfg.to_dict()["cuda_graph"] == value and TrainConfig(**cfg.to_dict()) == cfg
    assert TrainConfig(**TrainConfig().to_dict()) == TrainConfig()
    assert steps.use_cuda_graph("auto", torch.device("cpu")) is False
    assert steps.use_cuda_graph("off", torch.device("cuda")) is False
    assert steps.use_cuda_graph("auto", torch.device("cuda")) is True
    with pytest.raises(DeviceError, match="cuda_graph = 'auto'"):
        steps.use_cuda_graph("on", torch.device("cpu"))


def test_cuda_graph_on_without_cuda_says_what_to_use(digits):
    with pytest.raises(DeviceError, match="needs a CUDA device.*'off'"):
        train(_model(), digits, dataclasses.replace(FAST, cuda_graph="on"), device="cpu")


def test_device_resolution_and_progress_bar_come_from_the_shared_modules(digits):
    import tqdm

    assert loop.resolve_device is serobust.runtime.resolve_device
    assert loop.tqdm is tqdm.tqdm  # not tqdm.auto, which warns in notebooks without ipywidgets
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="cuda"):
            train(_model(), digits, FAST, device="cuda")


@needs_cuda
def test_cuda_graph_step_is_captured_and_trains_like_eager_steps(digits, caplog):
    with caplog.at_level(logging.INFO, logger="serobust.training"):
        _, h_graph = train(_model(), digits, dataclasses.replace(FAST, cuda_graph="on"), device="cuda")
    assert "captured as a CUDA graph (batch 128)" in caplog.text
    _, h_eager = train(_model(), digits, dataclasses.replace(FAST, cuda_graph="off"), device="cuda")
    assert h_graph["train_loss"].iloc[0] == pytest.approx(h_eager["train_loss"].iloc[0], rel=0.02)
    assert h_graph["test_acc"].iloc[-1] > 0.85 and h_eager["test_acc"].iloc[-1] > 0.85


@needs_cuda
def test_cuda_graph_replays_match_eager_steps_and_never_sync_the_host():
    dev = torch.device("cuda")
    models = []
    for wrap in (False, True):
        model = _model(se=True).to(dev, memory_format=torch.channels_last).train()
        opt = steps.make_optimizer(model, FAST)
        steps.set_step_mode(opt, device=dev, capturable=True)
        step = steps.Step(model, opt, torch.nn.CrossEntropyLoss(), dev, capturable=True)
        run = steps.GraphedStep(step, warmup=3) if wrap else step
        batches = [(xb.to(dev), yb.to(dev)) for xb, yb in _batches(n_full=8)]  # 8 full, 1 smaller, 2 full
        for i, (xb, yb) in enumerate(batches):
            checked = wrap and i >= 4  # captured and replayed at batch 3: from then on no step may sync
            if checked:
                assert run.graph is not None
                torch.cuda.set_sync_debug_mode("error")
            try:
                steps.set_lr(opt, 0.05 * (i + 1) / len(batches))
                run(xb, yb)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        models.append(model)
    sa, sb = models[0].state_dict(), models[1].state_dict()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=1e-3, atol=1e-4)


# ----------------------------------------------------------------------------------------------------------
# Adversarial training inside the step (and so inside the CUDA graph), the epoch order, fp32 scoring
# ----------------------------------------------------------------------------------------------------------


def _hand_written_at_step(model, opt, xb, yb, u, eps, alpha, steps):
    """PGD-AT written out (start from the U[0, 1) draws u, sign steps, projection, then one SGD step)."""
    x_adv = (xb + (2 * u - 1) * eps).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(model(x_adv), yb), x_adv)
        x_adv = x_adv.detach() + alpha * grad.sign()
        x_adv = (xb + (x_adv - xb).clamp(-eps, eps)).clamp(0, 1).detach()
    loss = torch.nn.functional.cross_entropy(model(x_adv), yb)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach() * len(yb)


@pytest.mark.parametrize("mode", ["pgd", "fgsm_rs"])
def test_at_step_through_the_graph_code_path_equals_the_eager_step_bit_for_bit(mode):
    """The whole adversarial step (random start from a static noise buffer, the attack iterations, the update)
    through the CUDA-graph wrapper with graphs off (warm-up, static buffers, replay = the step on the buffers,
    an eager step for the smaller batch) gives the eager step's loss and weights to the last bit, and both
    equal the algorithm written out by hand."""
    cfg = TrainConfig(adversarial=mode, adv_eps="8/255", adv_steps=3)
    attack = adversarial.TrainingAttack.of(cfg)
    assert (attack.steps, attack.alpha) == ((3, 2.5 * (8 / 255) / 3) if mode == "pgd" else (1, 1.25 * 8 / 255))
    results = []
    for how in ("eager", "graph code path", "by hand"):
        model = _model(se=True).to(memory_format=torch.channels_last).train()
        opt = steps.make_optimizer(model, cfg)
        step = steps.Step(model, opt, torch.nn.CrossEntropyLoss(), torch.device("cpu"), attack=attack)
        run = steps.GraphedStep(step, warmup=2) if how == "graph code path" else step
        gen = torch.Generator().manual_seed(1)
        losses, total = [], torch.zeros(())  # the running summed loss after each step
        for i, (xb, yb) in enumerate(_batches()):
            steps.set_lr(opt, 0.05 * (i + 1) / 9)
            u = torch.rand(xb.shape, generator=gen)
            if how == "by hand":
                total += _hand_written_at_step(model, opt, xb, yb, u, attack.eps, attack.alpha, attack.steps)
                losses.append(total.clone())
            else:
                run(xb, yb, u)
                losses.append(step.loss_sum.clone())
        if how == "graph code path":
            assert run.warmup_left == 0 and run._noise.shape == (16, 1, 8, 8)
        results.append((model, torch.stack(losses)))
    (m_eager, l_eager), (m_graph, l_graph), (m_hand, l_hand) = results
    assert torch.equal(l_eager, l_graph) and torch.equal(l_eager, l_hand)
    assert _same_weights(m_eager, m_graph) and _same_weights(m_eager, m_hand)
    # and the attack mattered: clean training from the same start ends elsewhere
    clean = _model(se=True).to(memory_format=torch.channels_last).train()
    opt = steps.make_optimizer(clean, cfg)
    plain = steps.Step(clean, opt, torch.nn.CrossEntropyLoss(), torch.device("cpu"))
    for i, (xb, yb) in enumerate(_batches()):
        steps.set_lr(opt, 0.05 * (i + 1) / 9)
        plain(xb, yb)
    assert not _same_weights(m_eager, clean)


def test_adversarial_step_refuses_a_missing_noise_buffer():
    cfg = TrainConfig(adversarial="pgd", adv_steps=1)
    model = _model().train()
    step = steps.Step(model, steps.make_optimizer(model, cfg), torch.nn.CrossEntropyLoss(),
                         torch.device("cpu"), attack=adversarial.TrainingAttack.of(cfg))
    xb, yb = _batches(n_full=1)[0]
    with pytest.raises(ValueError, match="noise"):
        step(xb, yb)
    assert adversarial.TrainingAttack.of(TrainConfig()) is None


def test_epoch_order_is_drawn_on_the_cpu_for_every_device():
    """The permutation comes from a CPU generator seeded by (seed, epoch) whatever the training device, so a
    seed sees the same batches on a GPU as on the CPU (the device generator only draws augmentation/noise)."""
    expected = torch.randperm(50, generator=torch.Generator().manual_seed(7 * 1_000_003 + 2))
    cpu_gen = schedule.epoch_generator(7, 2, torch.device("cpu"))
    assert torch.equal(schedule.epoch_order(50, 7, 2, cpu_gen), expected)
    cuda_like = types.SimpleNamespace(device=torch.device("cuda"))  # never drawn from: the order is the CPU's
    got = schedule.epoch_order(50, 7, 2, cuda_like)
    assert got.device.type == "cpu" and torch.equal(got, expected)


class _NearlyTied(torch.nn.Module):
    """Logits 100 + (small differences): float32 tells the classes apart, bf16 (spacing 0.5 at 100) cannot."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(64, 10)
        with torch.no_grad():
            self.lin.weight.copy_(torch.randn(10, 64, generator=torch.Generator().manual_seed(0)) * 0.01)
            self.lin.bias.fill_(100.0)

    def forward(self, x):
        return self.lin(x.flatten(1))


def test_test_accuracy_is_scored_in_float32_even_under_autocast():
    from serobust.training import evaluate_accuracy

    model = _NearlyTied()
    x = torch.rand(200, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fp32 = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model(x).float()
    y = fp32.argmax(1)
    assert (bf16.argmax(1) == y).float().mean() < 0.5  # a bf16 score would be far off: the test can fail
    with torch.autocast("cpu", dtype=torch.bfloat16):
        accuracy, loss = evaluate_accuracy(model, x, y, batch_size=64)
    assert accuracy == 1.0
    assert loss == pytest.approx(torch.nn.functional.cross_entropy(fp32, y).item(), rel=1e-6)
    assert torch.backends.cudnn.allow_tf32 is True  # the TF32 flags are restored after scoring


@needs_cuda
@pytest.mark.parametrize("mode", ["pgd", "fgsm_rs"])
def test_cuda_graphed_adversarial_training_agrees_with_eager_within_noise(digits, caplog, mode):
    cfg = dataclasses.replace(FAST, adversarial=mode, adv_eps=0.1, adv_steps=3)
    with caplog.at_level(logging.INFO, logger="serobust.training"):
        _, h_graph = train(_model(), digits, dataclasses.replace(cfg, cuda_graph="on"), device="cuda")
    assert "captured as a CUDA graph (batch 128)" in caplog.text
    _, h_eager = train(_model(), digits, dataclasses.replace(cfg, cuda_graph="off"), device="cuda")
    assert h_graph["train_loss"].iloc[0] == pytest.approx(h_eager["train_loss"].iloc[0], rel=0.05)
    assert abs(h_graph["test_acc"].iloc[-1] - h_eager["test_acc"].iloc[-1]) < 0.05
