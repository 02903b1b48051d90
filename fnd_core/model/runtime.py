"""Device choice and mixed precision, in one place for encoding, training and scoring."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else is checked and returned."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available here")
    return resolved


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (no loss scaling needed); full precision on CPU."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


PRECISIONS = ("auto", "fp32", "bf16", "int8")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 natively (a bf16 GPU, an AVX512-BF16 or AMX CPU)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in checks)
    return False


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a clear error."""
    if precision not in PRECISIONS:
        raise ValueError(
            f"inference precision {precision!r} is not one of {', '.join(PRECISIONS)} "
            "(FND_INFERENCE_PRECISION)"
        )
    return precision


def float_precision(precision: str, device: torch.device) -> str:
    """The torch path for ``precision``: ``fp32`` or ``bf16``; ``auto`` and ``int8`` -> the
    device's fastest float (bf16 where native). Training fits heads on these features."""
    if check_precision(precision) in ("auto", "int8"):
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def inference_autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast for encoder inference at a resolved precision (see :func:`float_precision`)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def loader_workers(requested: int, device: torch.device) -> int:
    """DataLoader worker processes: ``requested``, or for -1 (auto) 0 on CPU and up to 4 on GPU.

    On a CPU the encoders already use every core, and decoding in worker processes took cores
    from them: 86-97 posts/s inline vs 70-72 with 2 workers on 2 cores (224 px JPEGs). With
    a GPU, decoding on the CPU overlaps the GPU's work.
    """
    if requested >= 0:
        return requested
    if device.type == "cpu":
        return 0
    return max(0, min(4, len(os.sched_getaffinity(0)) - 1))


def module_device(module: torch.nn.Module) -> torch.device:
    """Device of a module's first parameter (CPU for a module without any)."""
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@contextlib.contextmanager
def cpu_threads(n: int, device: torch.device) -> Iterator[None]:
    """Temporarily cap intra-op CPU threads (restored after).

    The fusion head's matrices are tiny: extra OpenMP threads add no speed, and on a busy
    machine their spin-waiting made a head step ~30x slower (5 ms -> 150 ms measured here).
    """
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(n, before)))
    try:
        yield
    finally:
        torch.set_num_threads(before)
