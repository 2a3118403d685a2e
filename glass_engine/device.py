"""Device and precision selection: CUDA when present, otherwise the CPU."""

from __future__ import annotations

import logging

import torch

from glass_engine.errors import ConfigError

logger = logging.getLogger(__name__)


def resolve_device(requested: str = "auto") -> torch.device:
    """Map `auto`, `cpu` or `cuda[:N]` to a torch device; `cuda` without a GPU is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"Device {requested!r} was requested but no CUDA GPU is available. Use --device cpu or auto.")
        return torch.device(requested)
    if requested == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"Unknown device {requested!r}. Choose auto, cpu or cuda.")


def resolve_precision(requested: str, device: torch.device) -> torch.dtype:
    """Map a precision name to the autocast dtype used for the discriminator and GAS steps.

    `auto` picks bfloat16 on a CUDA GPU that supports it and float32 elsewhere. The CPU keeps float32 under
    `auto` because the benchmark's reduced-precision comparison is what decides whether a CPU default may
    change; an explicit `bfloat16` is honoured on both.
    """
    if requested == "float32":
        return torch.float32
    if requested == "bfloat16":
        return torch.bfloat16
    if requested == "float16":
        return torch.float16
    if requested == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    raise ConfigError(f"Unknown precision {requested!r}. Choose auto, float32, bfloat16 or float16.")
