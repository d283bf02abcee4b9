"""The attack registry: registering a family (at runtime, or as one file dropped into serobust/attacks/),
its validation, and registered attacks going through evaluate/generate like the built-in ones."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchattacks

import serobust as sr
from serobust.attacks import (
    ATTACKS,
    Attack,
    AttackSpec,
    attack,
    evaluate,
    generate,
    int_rule,
    register_attack,
    unregister_attack,
)
from serobust.attacks.base import attack_identity, implementation


class TwoStepFGSM(Attack):
    """Two signed-gradient steps of eps / 2 from x, no random start (written here in plain PyTorch)."""

    name = "fgsm2"
    defaults = {"steps": 2}
    rules = {"steps": int_rule(1)}

    def budget(self, config, *, eps, num_classes):
        return f"{config['steps']} steps of eps/{config['steps']}"

    def runner(self, model, config, *, eps, num_classes, seed):
        def run(x, y):
            x_adv = x.clone()
            for _ in range(config["steps"]):
                x_adv.requires_grad_(True)
                (g,) = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)
                x_adv = (x_adv.detach() + eps / config["steps"] * g.sign())
                x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
            return x_adv

        return run, [f"{config['steps']}-step FGSM"]


@pytest.fixture
def registered():
    """Register attack classes for one test; unregistered afterwards, so the registry stays as it was."""
    names: list[str] = []

    def reg(cls, **kw):
        register_attack(cls, **kw)
        names.append(cls.name)
        return cls

    yield reg
    for name in names:
        if name in ATTACKS:
            unregister_attack(name)


@pytest.fixture(scope="module")
def base(trained_digits_pair):
    return trained_digits_pair[0]


@pytest.fixture(scope="module")
def small(digits_xy):
    _, (x, y) = digits_xy
    return x[:64], y[:64]


def test_a_runtime_attack_works_by_name_everywhere(registered, base, small):
    registered(TwoStepFGSM)
    x, y = small
    assert "fgsm2" in ATTACKS and dict(ATTACKS["fgsm2"]) == {"steps": 2}  # the live view sees it
    spec = attack("fgsm2", steps=3)
    assert spec == AttackSpec("FGSM2", {"steps": 3}) and spec.label == "fgsm2(steps=3)"
    assert spec.norm == "Linf" and spec.budget == "3 steps of eps/3" and spec.config == {"steps": 3}
    with pytest.raises(ValueError, match=">= 1"):
        attack("fgsm2", steps=0)
    with pytest.raises(TypeError, match="valid options: steps"):
        attack("fgsm2", alpha=0.1)
    # independent computation: torchattacks' PGD without random start, alpha = eps / steps, is the same attack
    eps = 0.1
    ref = torchattacks.PGD(base, eps=eps, alpha=eps / 3, steps=3, random_start=False)(x, y)
    result = evaluate(base, (x, y), ["fgsm", spec], [0, eps], batch_size=len(x), return_examples=True)
    summary, examples = result.summary, result.examples
    torch.testing.assert_close(examples[(spec.label, eps)], ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(generate(base, x, y, "fgsm2", eps, batch_size=len(x)),
                               torchattacks.PGD(base, eps=eps, alpha=eps / 2, steps=2, random_start=False)(x, y),
                               rtol=0, atol=1e-6)
    row = summary[(summary["attack"] == spec.label) & (summary["eps"] == eps)].iloc[0]
    with torch.no_grad():
        robust = ((base(x).argmax(1) == y) & (base(ref).argmax(1) == y)).double().mean().item()
    assert row["robust_acc"] == pytest.approx(robust, abs=1e-12)
    assert row["budget"] == "3 steps of eps/3" and "3-step FGSM" in row["notes"]
    assert sr.register_attack is register_attack and sr.Attack is Attack


def test_register_validates_the_class(registered):
    def family(**attrs):
        body = {"name": "tmp_attack", "runner": TwoStepFGSM.runner, **attrs}
        return type("Tmp", (Attack,), body)

    with pytest.raises(ValueError, match="already registered"):
        register_attack(type("Again", (TwoStepFGSM,), {"name": "pgd"}))
    with pytest.raises(ValueError, match="name must be"):
        register_attack(family(name="worst_case"))
    with pytest.raises(ValueError, match="name must be"):
        register_attack(family(name="My PGD"))
    with pytest.raises(TypeError, match="must define runner"):
        register_attack(type("NoRunner", (Attack,), {"name": "tmp_attack"}))
    with pytest.raises(TypeError, match=r"no rule for \['steps'\]"):
        register_attack(family(defaults={"steps": 2}))
    with pytest.raises(ValueError, match="default of 'steps' fails its own rule"):
        register_attack(family(defaults={"steps": 0}, rules={"steps": int_rule(1)}))
    with pytest.raises(ValueError, match="norm option"):
        register_attack(family(norm=None))
    with pytest.raises(TypeError, match="subclass"):
        register_attack(object)
    assert "tmp_attack" not in ATTACKS  # nothing half-registered

    registered(family(defaults={"k": 1}, rules={"k": int_rule(0)}))
    assert dict(ATTACKS["tmp_attack"]) == {"k": 1}
    registered(family(defaults={"k": 5}, rules={"k": int_rule(0)}), replace=True)  # a notebook cell run again
    assert dict(ATTACKS["tmp_attack"]) == {"k": 5}
    with pytest.raises(TypeError):
        ATTACKS["tmp_attack"] = {}  # read-only
    unregister_attack("tmp_attack")
    with pytest.raises(ValueError, match="unknown attack"):
        attack("tmp_attack")


# --------------------------------------------------------------------------------------------------------
# display names, cheap options and labels read back
# --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, name", [
    (attack("pgd"), "PGD-10"), (attack("pgd", steps=50, n_restarts=5), "PGD-50, 5 restarts"),
    (attack("pgd", random_start=False, steps=20), "PGD-20 (no random start)"), (attack("pgd_l2"), "PGD-L2-10"),
    (attack("apgd_ce"), "APGD-CE-100"), (attack("apgd_ce", loss="dlr", steps=20, n_restarts=2), "APGD-DLR-20, 2 restarts"),
    (attack("square", n_queries=100, n_restarts=2), "Square (100 queries)"), (attack("autoattack"), "AutoAttack"),
    (attack("autoattack", version="fast", fab_steps=3), "AutoAttack (fast)"), (attack("fgsm"), "FGSM"),
    (attack("cw", steps=8), "CW-L2"), (attack("noise", n_samples=3), "random sign noise"),
])
def test_each_family_names_its_configured_attack_as_the_report_always_did(spec, name):
    assert spec.display == name


@pytest.mark.parametrize("name", list(ATTACKS))
def test_every_registered_attack_has_a_display_name_and_cheap_options_that_validate(name):
    impl = implementation(name)
    spec = attack(name, **impl.cheap)  # the options pass the rules and the family's cross-option checks
    assert dict(spec.options) == {k: impl.rules[k](k, v) for k, v in impl.cheap.items()}
    assert set(spec.config) == set(impl.defaults)
    for s in (attack(name), spec):
        assert isinstance(s.display, str) and s.display.strip() and s.display == impl.display(s.config)
    assert isinstance(impl.title, str) and impl.title.strip()


def test_display_title_and_cheap_of_a_runtime_attack(registered):
    registered(TwoStepFGSM)
    assert TwoStepFGSM.title == "FGSM2" and attack("fgsm2", steps=3).display == "FGSM2-3"  # name upper-cased
    assert TwoStepFGSM.cheap == {}

    @registered
    class Titled(TwoStepFGSM):
        name = "titled"
        title = "iFGSM"
        cheap = {"steps": 1}

    @registered
    class Renamed(Titled):  # another attack under another name: not the parent's title
        name = "renamed"

    assert attack("titled").display == "iFGSM-2" and attack("renamed", steps=4).display == "RENAMED-4"
    assert AttackSpec.from_label("titled(steps=1)") == attack("titled", **Titled.cheap)


def test_register_checks_title_and_cheap(registered):
    def family(**attrs):
        return type("Tmp", (TwoStepFGSM,), {"name": "tmp_attack", **attrs})

    with pytest.raises(ValueError, match="title must be"):
        register_attack(family(title=" "))
    with pytest.raises(TypeError, match="cheap option 'stepz' is not an option; options: steps"):
        register_attack(family(cheap={"stepz": 1}))
    with pytest.raises(ValueError, match="cheap value of 'steps' fails its rule"):
        register_attack(family(cheap={"steps": 0}))
    assert "tmp_attack" not in ATTACKS


@pytest.mark.parametrize("name", list(ATTACKS))
def test_from_label_is_the_inverse_of_label(name):
    impl = implementation(name)
    for options in ({}, dict(impl.defaults), dict(impl.cheap)):
        spec = attack(name, **options)
        back = AttackSpec.from_label(spec.label)
        assert back == spec and back.label == spec.label and back.config == spec.config


def test_from_label_reads_literals_and_rejects_what_is_not_a_label():
    spec = AttackSpec.from_label(" apgd_ce(loss='dlr', norm=\"L2\", steps=7) ")
    assert spec == attack("apgd_ce", loss="dlr", norm="L2", steps=7)
    assert AttackSpec.from_label("pgd(alpha=None, random_start=False, steps=5)") == attack(
        "pgd", alpha=None, random_start=False, steps=5)
    assert AttackSpec.from_label("cw(kappa=0, c=5)").config["c"] == 5.0  # ints read back as the floats written
    assert AttackSpec.from_label("PGD") == attack("pgd")
    for unknown in ("my_attack(x=1)", "worst_case", "excitation_pgd_v0(steps=3)"):
        assert AttackSpec.from_label(unknown) is None
    for bad in ("pgd(", "pgd(3)", "pgd(steps=int('3'))", "pgd(steps=1, steps=2)", "pgd.x", "pgd(**o)", "",
                "pgd(steps=3) + 1"):
        with pytest.raises(ValueError, match="an attack label is a name or a call"):
            AttackSpec.from_label(bad)
    with pytest.raises(TypeError, match="valid options"):
        AttackSpec.from_label("pgd(stepz=3)")  # a registered attack, an option it does not have
    with pytest.raises(ValueError, match=">= 1"):
        AttackSpec.from_label("pgd(steps=0)")
    with pytest.raises(TypeError, match="got int"):
        AttackSpec.from_label(3)  # type: ignore[arg-type]


def test_a_broken_attack_is_caught_by_the_sanity_checks(registered, base, small):
    @registered
    class Broken(TwoStepFGSM):
        name = "broken"

        def runner(self, model, config, *, eps, num_classes, seed):
            run, notes = super().runner(model, config, eps=eps, num_classes=num_classes, seed=seed)
            return (lambda x, y: (run(x, y) + 2 * eps).clamp(0, 1)), notes

    with pytest.raises(RuntimeError, match="harness bug.*'broken'.*Linf budget"):
        evaluate(base, small, "broken", 0.05)
    with pytest.raises(RuntimeError, match="harness bug"):
        generate(base, *small, "broken", 0.05)


def test_fixing_a_misclassified_input_does_not_count_as_robust(registered, base, small):
    @registered
    class Helpful(TwoStepFGSM):
        """Descends the loss: pushes examples towards their (wrong) label."""

        name = "helpful"

        def runner(self, model, config, *, eps, num_classes, seed):
            def run(xb, yb):
                xa = xb.clone()
                for _ in range(10):
                    xa.requires_grad_(True)
                    (g,) = torch.autograd.grad(F.cross_entropy(model(xa), yb), xa)
                    xa = torch.min(torch.max(xa.detach() - eps / 4 * g.sign(), xb - eps), xb + eps).clamp(0, 1)
                return xa

            return run, []

    x, y = small
    wrong = y.clone()
    wrong[::2] = (y[::2] + 1) % 10  # half the labels wrong: clean-misclassified examples
    result = evaluate(base, (x, wrong), "helpful", 0.3, per_example=True)
    summary, per_ex = result.summary, result.per_example
    rows = per_ex[per_ex["attack"] == "helpful"]
    fixed = ~rows["clean_correct"] & (rows["adv_pred"] == rows["label"])
    assert fixed.sum() > 0  # the perturbation did fix some inputs, so the assertion below has teeth
    assert not (rows["robust_correct"] & ~rows["clean_correct"]).any()
    assert summary["robust_acc"].iloc[0] <= summary["clean_acc"].iloc[0]


_DROPPED_IN = '''
"""An attack added by dropping this one file into serobust/attacks/."""
import torch

from .base import Attack, register_attack, unit_rule


@register_attack
class HalfSign(Attack):
    """x + fraction * eps * sign(x - 0.5): pushes pixels away from gray (no gradients)."""

    name = "half_sign"
    defaults = {"fraction": 0.5}
    rules = {"fraction": unit_rule}

    def budget(self, config, *, eps, num_classes):
        return f"{config['fraction']:g} * eps towards the nearer end of [0, 1]"

    def runner(self, model, config, *, eps, num_classes, seed):
        return (lambda x, y: (x + config["fraction"] * eps * torch.sign(x - 0.5)).clamp(0, 1)), []
'''

_SCRIPT = '''
import json, torch, serobust
from serobust import attack, evaluate, masking_diagnostics
from torch import nn
torch.manual_seed(0)
model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
x, y = torch.rand(20, 1, 4, 4), torch.randint(0, 3, (20,))
summary = evaluate(model, (x, y), ["half_sign", attack("half_sign", fraction=1.0)], 0.2, batch_size=8).summary
print(json.dumps({"file": serobust.__file__, "attacks": list(serobust.ATTACKS),
                  "linf_max": summary["linf_max"].tolist(), "budget": summary["budget"].tolist()}))
'''


def test_one_dropped_in_file_adds_an_attack(tmp_path):
    src = Path(sr.__file__).parent
    shutil.copytree(src, tmp_path / "serobust", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "serobust" / "attacks" / "half_sign.py").write_text(textwrap.dedent(_DROPPED_IN))
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(out["file"]).is_relative_to(tmp_path)  # the copy ran, not the installed package
    assert out["attacks"][-1] == "half_sign" and "pgd" in out["attacks"]
    assert out["linf_max"][:2] == pytest.approx([0.1, 0.2], abs=1e-6)  # fraction * eps
    assert out["budget"][0] == "0.5 * eps towards the nearer end of [0, 1]"


def test_identity_follows_what_a_class_does_not_its_docstrings_or_comments():
    from serobust.attacks.base import _code_of

    plain = 'class A:\n    """Doc."""\n    steps = 3  # the budget\n\n    def run(self):\n        """Run."""\n        return 1\n'
    reworded = 'class A:\n    """Other words, more of them."""\n    steps = 3\n\n    def run(self):\n        return 1\n'
    changed = 'class A:\n    """Doc."""\n    steps = 4  # the budget\n\n    def run(self):\n        """Run."""\n        return 1\n'
    assert _code_of(plain) == _code_of(reworded)
    assert _code_of(plain) != _code_of(changed)
    name, digest = attack_identity("pgd").split(":")
    assert name == "serobust.attacks.pgd.PGD" and len(digest) == 16
