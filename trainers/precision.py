"""Mixed precision: bf16 autocast for the networks, float32 for every loss term.

``training.precision`` is ``fp32``, ``bf16`` or ``auto`` (the default): ``auto`` is bf16
where the hardware computes it natively and fp32 elsewhere, because emulated bf16 is
slower than fp32, not faster.  Measured with ``benchmarks/train_step.py`` on this
project's AVX512-BF16 host: bf16 trains 1.2–1.4× faster than fp32 there, while on an
AVX2-only CPU oneDNN emulates bf16 and a training step runs about 9× slower.

Native bf16 means:

- CUDA: ``torch.cuda.is_bf16_supported()`` (Ampere and later);
- CPU: the processor has AVX512-BF16 or AMX, **and** neither oneDNN
  (``ONEDNN_MAX_CPU_ISA``, or its old name ``DNNL_MAX_CPU_ISA``) nor ATen
  (``ATEN_CPU_CAPABILITY``) is capped below it.  Torch's own CPU-feature flags ignore
  those caps, so they are read here; capping oneDNN is how a bf16 host is made to
  behave like an AVX2-only one (``ONEDNN_MAX_CPU_ISA=AVX2``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext

import torch

PRECISIONS = ("auto", "fp32", "bf16")

#: oneDNN's ISA names in increasing order (its ``dnnl_cpu_isa_t``); bf16 dot products are
#: native from AVX512_CORE_BF16 on.
ONEDNN_ISAS = (
    "SSE41",
    "AVX",
    "AVX2",
    "AVX2_VNNI",
    "AVX2_VNNI_2",
    "AVX512_CORE",
    "AVX512_CORE_VNNI",
    "AVX512_CORE_BF16",
    "AVX10_1_512",
    "AVX512_CORE_FP16",
    "AVX10_1_512_AMX",
    "AVX512_CORE_AMX",
    "AVX10_1_512_AMX_FP16",
    "AVX512_CORE_AMX_FP16",
)
_FIRST_BF16_ISA = ONEDNN_ISAS.index("AVX512_CORE_BF16")


def cpu_has_native_bf16(cpu_flags: bool, environ: Mapping[str, str]) -> bool:
    """Whether bf16 runs natively on this CPU, given its flags and the ISA caps in ``environ``.

    Args:
        cpu_flags: the processor has AVX512-BF16 or AMX.
        environ: the process environment (``ONEDNN_MAX_CPU_ISA``, ``DNNL_MAX_CPU_ISA``,
            ``ATEN_CPU_CAPABILITY``).

    Returns:
        False when the flags are missing or a cap stops below AVX512-BF16.

    Example::

        >>> cpu_has_native_bf16(True, {"ONEDNN_MAX_CPU_ISA": "AVX2"})
        False
    """
    if not cpu_flags:
        return False
    cap = (environ.get("ONEDNN_MAX_CPU_ISA") or environ.get("DNNL_MAX_CPU_ISA") or "").strip().upper()
    if cap and cap not in ("ALL", "DEFAULT"):
        if cap not in ONEDNN_ISAS or ONEDNN_ISAS.index(cap) < _FIRST_BF16_ISA:
            return False
    aten = environ.get("ATEN_CPU_CAPABILITY", "").strip().lower()
    return aten not in ("default", "avx2")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively (see the module docstring)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    flags = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return cpu_has_native_bf16(flags, os.environ)


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision a run computes in: ``precision`` itself, or for ``auto`` bf16 where
    :func:`native_bf16` holds and fp32 elsewhere."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "fp32"


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """bf16 autocast on ``device`` for ``bf16``; nothing for ``fp32`` (``auto`` must be resolved first)."""
    if precision == "auto":
        raise ValueError("precision: resolve 'auto' with resolve_precision before training")
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()
