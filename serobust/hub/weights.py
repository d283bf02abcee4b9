"""Where a member's weights live (each library's cache, ``weights_dir`` offline, or a user's file) and how a
weights-only state dict file is read into an architecture."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from .specs import MemberError, MemberSpec

__all__ = ["weights_file", "missing_weights", "cache_dir", "read_state_dict", "load_state"]


def cache_dir(lib: str, weights_dir: str) -> Path:
    if weights_dir:
        return Path(weights_dir).expanduser() / lib
    if lib == "torchvision":
        return Path(torch.hub.get_dir()) / "checkpoints"
    if lib == "pytorchcv":
        return Path("~/.torch/models").expanduser()
    if lib == "robustbench":
        return Path("models").resolve()
    return Path(os.environ.get("HF_HUB_CACHE", "~/.cache/huggingface/hub")).expanduser()


def weights_file(spec: MemberSpec, weights_dir: str = "") -> tuple[Path | None, str]:
    """Where this member's weights are read from: ``(the file if present, where it must be put)``."""
    lib, name = spec.library, spec.name
    if spec.weights:
        p = Path(spec.weights)
        return (p if p.is_file() else None), f"the weights file {p}"
    if lib == "torchscript":
        p = Path(name)
        return (p if p.is_file() else None), f"the TorchScript file {p}"
    folder = cache_dir(lib, weights_dir)
    if lib == "timm":
        import timm

        cfg = timm.get_pretrained_cfg(name)
        if weights_dir:
            for ext in (".safetensors", ".pth", ".bin"):
                if (folder / f"{name}{ext}").is_file():
                    return folder / f"{name}{ext}", ""
            return None, (f"{folder / (name + '.safetensors')} (model.safetensors of https://huggingface.co/"
                          f"{cfg.hf_hub_id})")
        if not cfg.hf_hub_id:  # weights published by URL only: torch hub's cache
            p = Path(torch.hub.get_dir()) / "checkpoints" / cfg.url.rsplit("/", 1)[-1]
            return (p if p.is_file() else None), f"{p} (from {cfg.url})"
        from huggingface_hub import try_to_load_from_cache

        for filename in ("model.safetensors", "pytorch_model.bin"):
            hit = try_to_load_from_cache(cfg.hf_hub_id, filename)
            if isinstance(hit, str):
                return Path(hit), ""
        return None, (f"the Hugging Face cache {folder} (online: timm downloads it; offline: download "
                      f"model.safetensors of https://huggingface.co/{cfg.hf_hub_id}, put it at "
                      f"<weights_dir>/timm/{name}.safetensors and set [model] weights_dir)")
    if lib == "torchvision":
        import torchvision

        url = torchvision.models.get_model_weights(name).DEFAULT.url
        p = folder / url.rsplit("/", 1)[-1]
        return (p if p.is_file() else None), f"{p} (from {url})"
    if lib == "pytorchcv":
        from pytorchcv.models.common.model_store import get_model_name_suffix_data, imgclsmob_repo_url

        error, sha1, tag = get_model_name_suffix_data(name)
        file = f"{name}-{error}-{sha1[:8]}.pth"
        p = folder / file
        return (p if p.is_file() else None), f"{p} (unzipped from {imgclsmob_repo_url}/releases/download/{tag}/{file}.zip)"
    dataset, threat, model = name.split("/")
    p = folder / dataset / threat / f"{model}.pt"
    return (p if p.is_file() else None), f"{p} (robustbench downloads it when online)"


def missing_weights(spec: MemberSpec, weights_dir: str = "") -> str | None:
    """``None`` when the member's weights are on disk, else one line saying which file to put where."""
    found, where = weights_file(spec, weights_dir)
    return None if found is not None else f"{spec.source}: weights not found; put them at {where}"


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A weights-only state dict (``.safetensors`` or a torch file; ``{"state_dict": ...}`` wrappers unwrapped)."""
    from ..io import CheckpointError

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling refused, truncated or not a weights file
        raise CheckpointError(f"{path} is not a readable weights-only state dict ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200] if str(e) else ''}); save it with "
                              "torch.save(model.state_dict(), path)", where=str(path)) from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no state dict of tensors; save it with "
                              "torch.save(model.state_dict(), path)", where=str(path))
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_state(model: nn.Module, path: Path, spec: MemberSpec, num_classes: int | None = None) -> None:
    state = read_state_dict(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected:
        raise MemberError(f"{path} does not fit {spec.source}: {len(missing)} missing keys (e.g. "
                          f"{missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]}); give the state "
                          "dict saved from this architecture, or the architecture it was saved from")
    if shapes:
        k = shapes[0]
        raise MemberError(f"{path} does not fit {spec.source}: {k} is {tuple(state[k].shape)} in the file, "
                          f"{tuple(own[k].shape)} in the model: the file was trained with another class count "
                          f"or width{f' (the data set has {num_classes} classes)' if num_classes else ''}; evaluate "
                          "it on data with its classes, or give the architecture it was saved from")
    model.load_state_dict(state)
