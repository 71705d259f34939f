"""Device checks of the trainers (torch and numpy only: no Ray, Optuna or MLflow needed).

``placement``: an unpacked trial (``trainers.train.train``) and a pack of two
(``trainers.pack.train_pack``) run every network operation (convolutions and linear
layers: inputs, weights and outputs) on the configured device, and the rendered
training batches live there too (the data set's ``observations``).  ``bf16``, for
an unpacked trial and for a pack of two: with ``precision: bf16`` at least 90 % of
the networks' convolutions and linear layers produce bfloat16 (autocast is in
force where they run), the reported terms are finite floats, and the held-out
terms stay near the float32 run of the same configs (the tolerances of
``tests/test_pack.py``'s bf16 test).

Prints one line per check, ``PASS name: detail`` or ``FAIL name: detail``, and
exits 1 if any failed.  ``--device cpu`` is a smoke run of the same code.

    python benchmarks/gpu_checks.py [--device cuda] [--steps 20]
"""

from __future__ import annotations

import argparse
import collections
import math
import sys
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainers.config import EvalConfig, TrainConfig
from trainers.data import make_dataset
from trainers.pack import train_pack
from trainers.reporting import NullReporter
from trainers.train import train

NETWORK_OPS = {F.conv2d, F.conv_transpose2d, F.linear, torch.conv2d, torch.conv_transpose2d}


class OpRecorder(TorchFunctionMode):
    """Counts, for each network operation, the devices of its tensors, and the dtypes of its
    outputs while training (gradients on; evaluation runs in float32 without them)."""

    def __init__(self) -> None:
        super().__init__()
        self.devices: collections.Counter[str] = collections.Counter()
        self.out_dtypes: collections.Counter[str] = collections.Counter()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in NETWORK_OPS:
            self.calls += 1
            for value in (*args, *(kwargs or {}).values(), out):
                if isinstance(value, torch.Tensor):
                    self.devices[value.device.type] += 1
            if isinstance(out, torch.Tensor) and torch.is_grad_enabled():  # training, not evaluation
                self.out_dtypes[str(out.dtype).removeprefix("torch.")] += 1
        return out


class BatchDevices:
    """Wraps the data set's ``observations`` to record where each rendered batch lives."""

    def __init__(self, dataset: str = "dsprites") -> None:
        self.devices: collections.Counter[str] = collections.Counter()
        self.cls = type(make_dataset(dataset))
        self.original = self.cls.observations

    def __enter__(self) -> BatchDevices:
        original, devices = self.original, self.devices

        def observations(data, *args, **kwargs):
            out = original(data, *args, **kwargs)
            devices[out.device.type] += 1
            return out

        self.cls.observations = observations
        return self

    def __exit__(self, *exc) -> None:
        self.cls.observations = self.original


class TermReports(NullReporter):
    def __init__(self) -> None:
        self.reports: list = []

    def on_terms(self, step, terms):
        self.reports.append(terms)


def _config(device: str, steps: int, seed: int = 0, precision: str = "fp32", beta: float = 4.0) -> TrainConfig:
    return TrainConfig(
        variant="beta_vae",
        weights={"beta": {"schedule": "constant", "value": beta}},
        steps=steps,
        batch_size=64,
        log_every=max(1, steps // 4),
        device=device,
        seed=seed,
        precision=precision,
        eval=EvalConfig(recon_points=256, metrics=[], udr_points=16),
    )


def check_placement(device: str, steps: int) -> str:
    want = torch.device(device).type
    lines = []
    for name, run in (
        ("unpacked", lambda: train(_config(device, steps), NullReporter())),
        ("pack of 2", lambda: train_pack([_config(device, steps, s) for s in range(2)], NullReporter())),
    ):
        with OpRecorder() as ops, BatchDevices() as batches:
            run()
        off = {k: v for k, v in ops.devices.items() if k != want}
        off_batches = {k: v for k, v in batches.devices.items() if k != want}
        assert ops.calls, f"{name}: no network operation was seen"
        assert not off, f"{name}: network tensors off {want}: {dict(ops.devices)}"
        assert batches.devices and not off_batches, f"{name}: batches rendered on {dict(batches.devices)}"
        lines.append(f"{name}: {ops.calls} network ops, {sum(batches.devices.values())} batches, all on {want}")
    if want == "cuda":
        lines.append(f"peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB allocated")
    return "; ".join(lines)


def _bf16_check(device: str, steps: int, members: int) -> str:
    def run(precision: str, report):
        configs = [_config(device, steps, s, precision) for s in range(members)]
        if members == 1:
            return [train(configs[0], report)]
        return train_pack(configs, report)

    with OpRecorder() as ops:
        bf16_report = TermReports()
        bf16 = run("bf16", bf16_report)
    fp32 = run("fp32", TermReports())
    outputs = dict(ops.out_dtypes)
    share = ops.out_dtypes["bfloat16"] / max(1, sum(ops.out_dtypes.values()))
    for terms in bf16_report.reports:
        for member in terms:
            for name, value in member.items():
                assert isinstance(value, float) and math.isfinite(value), f"term {name}: {value!r}"
    worst: dict[str, float] = {}
    for a, b in zip(fp32, bf16, strict=True):
        for name, rel, tol in (("recon", 0.02, 0.0), ("kl", 0.25, 0.05)):
            gap = abs(b.terms[name] - a.terms[name])
            assert gap <= max(rel * abs(a.terms[name]), tol), f"{name}: bf16 {b.terms[name]} vs fp32 {a.terms[name]}"
            worst[name] = max(worst.get(name, 0.0), gap / max(abs(a.terms[name]), 1e-12))
    gaps = ", ".join(f"{k} {v:.2%}" for k, v in worst.items())
    assert share >= 0.9, f"network outputs under bf16 autocast: {outputs} (terms vs fp32: {gaps})"
    return f"{share:.0%} of network outputs bfloat16 {outputs}; terms float32; held-out terms vs fp32: {gaps}"


def check_bf16_unpacked(device: str, steps: int) -> str:
    return _bf16_check(device, steps, 1)


def check_bf16_pack(device: str, steps: int) -> str:
    return _bf16_check(device, steps, 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"FAIL cuda: torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device")
        return 1
    failed = 0
    checks = (
        ("placement", check_placement),
        ("bf16 autocast, unpacked", check_bf16_unpacked),
        ("bf16 autocast, pack of 2", check_bf16_pack),
    )
    for name, check in checks:
        try:
            print(f"PASS {name} on {args.device}: {check(args.device, args.steps)}", flush=True)
        except Exception as error:  # report every check, then fail
            failed += 1
            detail = str(error).splitlines()[0] if str(error) else type(error).__name__
            print(f"FAIL {name} on {args.device}: {detail}", flush=True)
            traceback.print_exc(file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
