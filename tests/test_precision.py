"""``training.precision: auto``: bf16 only where the device computes it natively."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from trainers.precision import cpu_has_native_bf16, resolve_precision


@pytest.mark.parametrize(
    "flags, environ, native",
    [
        (True, {}, True),
        (False, {}, False),
        (True, {"ONEDNN_MAX_CPU_ISA": "AVX2"}, False),
        (True, {"ONEDNN_MAX_CPU_ISA": "avx512_core"}, False),
        (True, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, True),
        (True, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}, True),
        (True, {"ONEDNN_MAX_CPU_ISA": "ALL"}, True),
        (True, {"DNNL_MAX_CPU_ISA": "AVX2"}, False),
        (True, {"ONEDNN_MAX_CPU_ISA": "NO_SUCH_ISA"}, False),
        (True, {"ATEN_CPU_CAPABILITY": "avx2"}, False),
        (True, {"ATEN_CPU_CAPABILITY": "avx512"}, True),
    ],
)
def test_native_bf16_needs_the_flags_and_no_cap_below_them(flags, environ, native):
    assert cpu_has_native_bf16(flags, environ) is native


def test_explicit_precisions_are_kept_and_unknown_ones_refused():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", cpu)


def _auto_in_child(**environ: str) -> str:
    code = "import torch; from trainers.precision import resolve_precision as r; print(r('auto', torch.device('cpu')))"
    caps = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
    env = {name: value for name, value in os.environ.items() if name not in caps} | environ
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_auto_is_fp32_when_onednn_is_capped_at_avx2():
    assert _auto_in_child(ONEDNN_MAX_CPU_ISA="AVX2") == "fp32"


def test_auto_is_bf16_on_a_native_bf16_host():
    if not (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()):
        pytest.skip("this CPU has neither AVX512-BF16 nor AMX")
    assert _auto_in_child() == "bf16"
