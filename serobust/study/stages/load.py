"""Load: a given member (published, or the user's checkpoint), loaded and checked, never trained."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from ...names import BASELINE
from ..plan import EvalData, Numerics, data_params
from ..tasks import Task
from .base import Planning, Stage, register_stage


@dataclass(frozen=True)
class LoadParams:
    """A member of given pair ``seed`` (the pair's index): its source (the member's config table,
    :meth:`serobust.hub.MemberSpec.to_dict`, read back with :func:`serobust.hub.parse_member`), where its
    weights are, their digest (a user's file: replacing it recomputes everything downstream), the data (a
    :class:`~serobust.study.plan.PairData`) and the numerical environment."""

    member: str
    seed: int
    pair: str
    source: dict[str, Any]
    weights_dir: str | None
    download: bool
    weights_sha256: str | None
    data: EvalData
    numerics: Numerics


def plan(study: Planning, seed: int | None) -> dict[str, Task]:
    """Both members of given pair ``seed`` (none unless the study gives pairs).

    A user's file (``weights``, TorchScript) enters the key by its digest; a library's pretrained weights are
    pinned by their name (timm's tag, torchvision's enum, pytorchcv's hash in the file name), so downloading
    them does not change the key."""
    from ...hub.weights import weights_file

    cfg = study.cfg
    if not cfg.model.pairs:
        return {}
    pair = cfg.model.pair_specs()[seed]
    out = {}
    for member in study.members:
        spec = pair.baseline if member == BASELINE else pair.se
        user_file = bool(spec.weights) or spec.library == "torchscript"
        found = weights_file(spec, cfg.model.weights_dir)[0] if user_file else None
        params = LoadParams(member=member, seed=seed, pair=pair.name, source=spec.to_dict(),
                            weights_dir=cfg.model.weights_dir, download=cfg.model.download,
                            weights_sha256=_sha256(found) if found is not None else None,
                            data=data_params(cfg, seed), numerics=study.env)
        out[member] = STAGE.task(params, label=f"{member} {pair.name}")
    return out


def _sha256(path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def run(ctx, p: LoadParams, inputs, folder):
    """A given member loaded and checked: it fits the data (class count, input size; an SE member must have SE
    modules); records what the report shows beside it: parameters, SE blocks, the preprocessing of its weights."""
    from ...excitation.adapters import NoSEModuleError, find_se_modules
    from ...hub.parse import parse_member
    from ...hub.preprocessing import preprocess
    from ...hub.specs import MemberError

    spec = parse_member(p.source, f"pair {p.pair} {p.member}")
    bundle = ctx.dataset(p.data)
    prep = preprocess(spec)
    if prep.size and tuple(bundle.image_size) != (prep.size, prep.size):
        raise MemberError(f"{spec.source} expects {prep.size}x{prep.size} images but data.name = {bundle.name!r} has "
                          f"{bundle.image_size[0]}x{bundle.image_size[1]}: use data.name = 'imagenet' (decoded at the "
                          "model's size) or set input_size on the member")
    model = ctx.load_member(p)
    try:
        se_blocks = len(find_se_modules(model))
    except NoSEModuleError:
        se_blocks = 0
    info = {"pair": p.pair, "member": p.member, "source": spec.source, "weights": spec.weights or "pretrained",
            "params": sum(q.numel() for q in model.parameters()), "se_blocks": se_blocks,
            "input_size": prep.size or bundle.image_size[0], "resize": prep.resize, "interpolation": prep.interpolation,
            "mean": list(prep.mean), "std": list(prep.std)}
    return {"info": pd.DataFrame([info])}


STAGE = register_stage(Stage("load", LoadParams, plan, run, order=11, priority=0, makes_model=True,
                             tables=(("members", "info"),)))
