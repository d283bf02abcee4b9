"""Where a model runs and in which state, and what its inputs must look like: one home for both.

* :func:`resolve_device`, :func:`model_device`: the device to run on, the device a model lives on;
* :func:`eval_mode`, :func:`attack_state`: eval mode (and frozen parameters for attacks) with every
  submodule's own mode and flag restored afterwards, also on exceptions (as torchattacks does);
* :func:`check_images`, :class:`BatchGuard`: images must be float in [0, 1] without NaN, labels integer
  class indices. ``check_images`` checks a whole tensor at once (one host sync per call);
  ``BatchGuard`` checks every batch of a stream on the device and reads the flags back once, so a
  loop over batches never waits on the host, and a bad later batch is blamed on the input, by batch.
"""

from __future__ import annotations

import contextlib
import numbers
import os
from collections.abc import Iterator

import torch
from torch import nn

from .errors import DeviceError, InputError

__all__ = [
    "resolve_device",
    "model_device",
    "eval_mode",
    "attack_state",
    "check_images",
    "check_labels",
    "check_batch_size",
    "check_int",
    "check_module_names",
    "BatchGuard",
    "fp32_scoring",
    "deterministic_cuda",
    "numerics_record",
    "available_cores",
]


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` or ``"auto"`` means CUDA when available, else the CPU.

    Raises:
        DeviceError: ``cuda`` was asked for but no GPU is visible.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise DeviceError(f"unknown device {device!r} ({e}); use 'auto', 'cpu' or 'cuda'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device 'cuda' was asked for but torch.cuda.is_available() is False on this machine; "
                          "use device = 'cpu' (or 'auto')")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DeviceError(f"device {device} does not exist: {torch.cuda.device_count()} GPU(s) are visible")
    return device


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); the CPU for a model with neither."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def eval_mode(*models: nn.Module) -> Iterator[None]:
    """Run in eval mode and restore every submodule's own mode afterwards."""
    modes = [(m, m.training) for model in models for m in model.modules()]
    try:
        for model in models:
            model.eval()
        yield
    finally:
        for module, mode in reversed(modes):
            module.training = mode


@contextlib.contextmanager
def attack_state(*models: nn.Module) -> Iterator[None]:
    """Eval mode and ``requires_grad=False`` on every parameter; modes and flags restored afterwards.

    Attacks need gradients with respect to the input only: frozen parameters never receive a
    ``.grad`` (torchattacks' FAB calls ``backward``), and the backward pass skips weight gradients.
    """
    flags = [(p, p.requires_grad) for model in models for p in model.parameters()]
    with eval_mode(*models):
        try:
            for p, _ in flags:
                p.requires_grad_(False)
            yield
        finally:
            for p, flag in reversed(flags):
                p.requires_grad_(flag)


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def fp32_scoring() -> Iterator[None]:
    """Float32 forwards for numbers that reach a table: autocast off (CUDA and CPU) and TF32 off.

    Attacks may craft under bf16 autocast; the predictions that are counted (clean and adversarial
    accuracy, the trainer's test accuracy) run inside this context. On CUDA, "float32" convolutions and
    matmuls are TF32 (10-bit mantissa) by default for cuDNN; both TF32 flags are switched off here and
    restored afterwards (they are process-wide flags, so a concurrent thread would see them too).
    """
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.autocast("cuda", enabled=False), torch.autocast("cpu", enabled=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


#: cuBLAS's documented setting for reproducible results (read when the cuBLAS handle is created)
CUBLAS_WORKSPACE = ":4096:8"


def deterministic_cuda(enabled: bool) -> None:
    """Opt-in repeatable CUDA numerics for this process (a no-op when ``enabled`` is False).

    ``torch.use_deterministic_algorithms(True, warn_only=True)`` (deterministic kernels where they exist,
    a warning naming each op that has none), cuDNN benchmark off and ``CUBLAS_WORKSPACE_CONFIG`` set
    (effective only if cuBLAS was not yet used in this process: executors set it before any CUDA work).
    Repeatable on one machine and software stack, not bit-identical to the CPU; slower (measure it).
    """
    if not enabled:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def numerics_record(device: torch.device, *, deterministic: bool = False) -> dict[str, object]:
    """What a run's metadata says about its numerics: precisions, TF32 and what "deterministic" means."""
    cuda = device.type == "cuda"
    return {
        "training": "bf16 autocast (float32 master weights)" if cuda else "float32",
        "scoring": "float32 (autocast off, TF32 off)",
        "tf32_outside_scoring": {"cudnn": bool(torch.backends.cudnn.allow_tf32),
                                 "matmul": bool(torch.backends.cuda.matmul.allow_tf32)} if cuda else None,
        "deterministic_mode": bool(deterministic and cuda),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG") if cuda else None,
        "determinism": ("statistically equal across runs and executors, not bit-identical (non-deterministic "
                        "cuDNN kernels and atomics; repeatable on one machine in deterministic mode)" if cuda
                        else "bit-identical for a given seed and thread count, whatever the executor"),
    }


def _shape_checks(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name} must be a tensor of images (N, C, H, W) in [0, 1], got {type(x).__name__}")
    if not torch.is_floating_point(x):
        raise InputError(f"{name} must be float images in [0, 1], got dtype {x.dtype}; "
                         "for uint8 images use x.float() / 255")
    if x.ndim != 4:
        raise InputError(f"{name} must have shape (N, C, H, W), got {tuple(x.shape)}")


def _range_message(name: str, lo: float, hi: float, n_nan: int, where: str = "") -> str:
    if n_nan:
        return (f"{name}{where} holds NaN value(s); fix the data (every pixel must be a number in [0, 1])")
    hint = ("; these look like 0..255 pixels: divide by 255" if hi > 1.5 else
            "; undo any Normalize transform: serobust models normalize inside")
    return f"{name}{where} must lie in [0, 1], found values in [{lo:.4g}, {hi:.4g}]{hint}"


def check_images(x: torch.Tensor, *, name: str = "x") -> None:
    """Raise :class:`InputError` unless ``x`` is a float (N, C, H, W) tensor in [0, 1] without NaN.

    One reduction over the whole tensor and one host sync: call it once per call of a library
    function, not once per batch (use :class:`BatchGuard` for streams).
    """
    _shape_checks(x, name)
    if x.numel() == 0:
        return
    stats = torch.stack([x.isnan().sum().to(x.dtype), x.nan_to_num(0.5).amin(), x.nan_to_num(0.5).amax()])
    n_nan, lo, hi = stats.tolist()
    if n_nan or lo < 0 or hi > 1:
        raise InputError(_range_message(name, lo, hi, int(n_nan)))


def check_labels(y: torch.Tensor, n: int, *, name: str = "y") -> None:
    """Raise :class:`InputError` unless ``y`` is an integer (n,) tensor of non-negative class indices."""
    if not isinstance(y, torch.Tensor):
        raise InputError(f"{name} must be a tensor of integer labels, shape ({n},), got {type(y).__name__}")
    if y.ndim != 1 or len(y) != n:
        raise InputError(f"{name} must have shape ({n},) to match the images, got {tuple(y.shape)}")
    if torch.is_floating_point(y) or y.dtype == torch.bool or y.is_complex():
        raise InputError(f"{name} must hold integer class indices, got dtype {y.dtype}; pass y.long()")


def check_int(value: object, *, name: str, minimum: int = 1, hint: str = "") -> int:
    """``value`` as a Python int >= ``minimum`` (numpy ints accepted, bools refused); ``ValueError`` naming
    ``name`` otherwise, followed by ``hint`` (e.g. ``" (e.g. 10_000)"``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}{hint}, got {value!r}")
    return int(value)


def check_module_names(model: nn.Module, names: list[str], *, what: str, hint: str) -> list[str]:
    """``names`` if each is a submodule of ``model``; else ``ValueError`` listing the unknown ones under the
    argument name ``what``, then ``hint`` (where to find valid names)."""
    modules = dict(model.named_modules())
    unknown = [name for name in names if name not in modules]
    if unknown:
        raise ValueError(f"{what} {unknown} are not modules of {type(model).__name__}; {hint}")
    return names


def check_batch_size(batch_size: object) -> int:
    """``batch_size`` as an int >= 1; ``ValueError`` otherwise."""
    return check_int(batch_size, name="batch_size")


def batch_where(b: int, batch_size: int | None) -> str:
    """`` (batch b, examples i..j)`` for error messages (just the batch when its size is unknown)."""
    if not batch_size:
        return f" (batch {b})"
    return f" (batch {b}, examples {b * batch_size}..{(b + 1) * batch_size - 1})"


class BatchGuard:
    """Input checks of every batch of a stream, on the device, read back once.

    ``guard(xb)`` records (min, max) of a batch as a device tensor (no host sync; a NaN makes both NaN);
    :meth:`check` reads all of them in one transfer and raises :class:`InputError` naming the first
    bad batch. Call ``check`` before any sanity check of the results, so that a bad input is blamed
    on the input and not on the harness.

    Args:
        name: how the input is called in the error message (``"images"``).
        batch_size: the batch size, to translate the batch number into example indices.
    """

    def __init__(self, name: str = "images", *, batch_size: int | None = None) -> None:
        self.name = name
        self.batch_size = batch_size
        self._stats: list[torch.Tensor] = []

    def __call__(self, xb: torch.Tensor) -> torch.Tensor:
        """Record one batch's (min, max) as a device tensor (one reduction; NaN propagates into both)."""
        _shape_checks(xb, self.name)
        if xb.numel():
            self._stats.append(torch.stack(torch.aminmax(xb.detach())))
        return xb

    def check(self) -> None:
        """One host sync for every batch recorded so far; raise on the first bad one."""
        if not self._stats:
            return
        table = torch.stack(self._stats).float().cpu()  # (batches, 2): min, max
        lo, hi = table[:, 0], table[:, 1]
        bad = lo.isnan() | hi.isnan() | (lo < 0) | (hi > 1)
        if not bool(bad.any()):
            return
        b = int(bad.nonzero()[0, 0])
        where = batch_where(b, self.batch_size)
        n_nan = 1 if bool(lo[b].isnan() | hi[b].isnan()) else 0
        raise InputError(_range_message(self.name, float(lo[b]), float(hi[b]), n_nan, where))
