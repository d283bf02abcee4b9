"""Every accuracy that reaches a table is a float32 number: attacks may craft under bf16 autocast, but the
predictions that are counted come from a float32 forward (autocast and TF32 off).

On the CPU the harness ignores ``autocast``; these tests switch CPU bf16 autocast on (the path CUDA takes) and
compare the reported accuracies with an independent float32 reference. The model's logits are nearly tied, so
a bf16 forward would predict differently: each test can fail.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from serobust.attacks import attack, evaluate, evaluate_transfer, session


class NearlyTied(nn.Module):
    """Logits 100 + (small differences): float32 tells the classes apart, bf16 (spacing 0.5 at 100) cannot."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.lin = nn.Linear(64, 10)
        with torch.no_grad():
            self.lin.weight.copy_(torch.randn(10, 64, generator=torch.Generator().manual_seed(seed)) * 0.01)
            self.lin.bias.fill_(100.0)
        self.dtypes: list[torch.dtype] = []
        self.lin.register_forward_hook(lambda m, i, out: self.dtypes.append(out.dtype))

    def forward(self, x):
        return self.lin(x.flatten(1))


@pytest.fixture
def cpu_bf16(monkeypatch):
    monkeypatch.setattr(session, "AUTOCAST_DEVICES", ("cuda", "cpu"))


def _data(model):
    x = torch.rand(120, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fp32 = model(x).argmax(1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model(x).argmax(1)
    y = fp32.clone()
    y[:20] = (y[:20] + 1) % 10  # some clean mistakes too
    assert (bf16 == fp32).float().mean() < 0.5  # a bf16 score would differ: the tests below can fail
    return x, y


def _fp32_predictions(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


def test_evaluate_scores_clean_and_adversarial_predictions_in_float32(cpu_bf16):
    model = NearlyTied().eval()
    x, y = _data(model)
    model.dtypes.clear()
    attacks = [attack("fgsm"), attack("pgd", steps=2)]
    result = evaluate(model, (x, y), attacks, [0, 0.05], autocast=True, per_example=True, return_examples=True,
                      batch_size=50)
    frame, per_example, examples = result.summary, result.per_example, result.examples
    assert torch.bfloat16 in model.dtypes and torch.float32 in model.dtypes  # crafted in bf16, scored in fp32
    assert frame["notes"].str.contains("bf16 autocast").all()
    clean = _fp32_predictions(model, x) == y
    assert (frame["clean_acc"] == clean.sum().item() / len(y)).all()
    for spec in attacks:
        x_adv = examples[(spec.label, 0.05)]
        adv_pred = _fp32_predictions(model, x_adv)
        robust = clean & (adv_pred == y)
        row = frame[(frame["attack"] == spec.label) & (frame["eps"] == 0.05)].iloc[0]
        assert row["robust_acc"] == robust.sum().item() / len(y)
        got = per_example[(per_example["attack"] == spec.label) & (per_example["eps"] == 0.05)]
        assert (got["adv_pred"].to_numpy() == adv_pred.numpy()).all()


def test_transfer_scores_in_float32(cpu_bf16):
    source, target = NearlyTied(0).eval(), NearlyTied(1).eval()
    x, y = _data(source)
    frame = evaluate_transfer(source, target, (x, y), attack("fgsm"), [0, 0.05], autocast=True, batch_size=50).summary
    assert frame["source_clean_acc"].iloc[0] == pytest.approx((_fp32_predictions(source, x) == y).sum().item() / len(y), abs=1e-12)
    assert frame["target_clean_acc"].iloc[0] == pytest.approx((_fp32_predictions(target, x) == y).sum().item() / len(y), abs=1e-12)


def test_without_the_patch_cpu_autocast_is_ignored_and_said():
    model = NearlyTied().eval()
    x, y = _data(model)
    model.dtypes.clear()
    frame = evaluate(model, (x, y), attack("fgsm"), 0.05, autocast=True).summary
    assert frame["notes"].str.contains("autocast ignored").all()
    assert torch.bfloat16 not in model.dtypes
