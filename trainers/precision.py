"""Mixed precision: bf16 autocast for the networks, float32 for every loss term."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

PRECISIONS = ("fp32", "bf16")


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()
