"""Aggregate training throughput of packs: images/s for K members trained in one step.

Each row is a fresh child process (GLIBC_TUNABLES must be set before Python starts)
running the real training loop (``trainers.pack.train_pack``: data rendered on
the device, per-member noise, terms, one Adam step) for K members of the standard
64×64 β-VAE.  The clock runs between the first and the last term report, so
warm-up (and compilation) is excluded.  ``unpacked`` is one trial through
``trainers.train.train``, the way a study without packing trains.

Columns: aggregate images/s (K × batch × steps / s); ``vs K=1``, the ratio to
K = 1 of the same mode in this run; ``vs unpacked``, the ratio to the unpacked
trainer with the same precision and compilation; ``roofline``, achieved FLOP/s
(FLOPs of one step counted by ``torch.utils.flop_counter``) over the device's
peak: the nominal dense peak for known GPUs, else the best large-matmul rate
measured here in either precision (a practical ceiling).

    python benchmarks/throughput.py [--ks 1 4 16 64] [--modes eager-fp32 eager-bf16 compiled-bf16]
        [--steps 6] [--batch-size 64] [--device auto] [--largest]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

TUNABLES = "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296"
#: Nominal dense peaks (FLOP/s) by device name and precision (vendor data sheets, SXM parts).
NOMINAL_PEAKS = {
    "H100": {"fp32": 67e12, "bf16": 989e12},
    "H200": {"fp32": 67e12, "bf16": 989e12},
    "A100": {"fp32": 19.5e12, "bf16": 312e12},
}


def _configs(k: int, mode: str, steps: int, batch_size: int, device: str):
    from trainers.config import EvalConfig, TrainConfig

    compiled, precision = mode.split("-")
    # Reports every `warmup` steps; the first report ends the warm-up (oneDNN and
    # compilation specialise on the first steps' shapes).
    warmup = 3 if compiled == "compiled" else 2
    return [
        TrainConfig(
            variant="beta_vae",
            weights={"beta": {"schedule": "constant", "value": 1.0 + m}},
            seed=m,
            steps=warmup * (1 + steps),
            log_every=warmup,
            batch_size=batch_size,
            device=device,
            precision=precision,
            compile=compiled == "compiled",
            eval=EvalConfig(recon_points=batch_size, metrics=[], udr_points=2),
        )
        for m in range(k)
    ], warmup


def step_flops(batch_size: int, device: str) -> float:
    """FLOPs of one forward+backward of one member (counted, not estimated)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from trainers.objectives import make_objective

    model = make_objective("beta_vae", {}, 737280).build_model(10, 1, "code").to(device)
    x = torch.rand(batch_size, 1, 64, 64, device=device)
    with FlopCounterMode(display=False) as counter:
        posterior = model.encode(x)
        logits = model.decode(posterior.mu + torch.exp(0.5 * posterior.logvar))
        torch.nn.functional.binary_cross_entropy_with_logits(logits, x).backward()
    return float(counter.get_total_flops())


def matmul_peak(device: str, precision: str) -> float:
    import torch

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    n = 4096 if device.startswith("cuda") else 1024
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    best = 0.0
    for _ in range(5):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        began = time.perf_counter()
        for _ in range(10):
            a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = max(best, 10 * 2 * n**3 / (time.perf_counter() - began))
    return best


def child(k: int, mode: str, steps: int, batch_size: int, device: str, threads: int) -> None:
    import torch

    from trainers.pack import train_pack
    from trainers.reporting import NullReporter
    from trainers.train import train

    if threads:
        torch.set_num_threads(threads)
    configs, warmup = _configs(max(k, 1), mode, steps, batch_size, device)
    stamps: list[float] = []

    def stamp() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    class Clock(NullReporter):
        def on_terms(self, step, terms):  # the report's .tolist() has synchronised already
            stamp()

    if k == 0:  # the unpacked trainer
        train(configs[0], Clock())
    else:
        train_pack(configs, Clock())
    images = max(k, 1) * batch_size * warmup * (len(stamps) - 1)
    print(json.dumps({"images_per_second": images / (stamps[-1] - stamps[0])}))


def run(args: argparse.Namespace, k: int, mode: str) -> float | None:
    env = {**os.environ, "GLIBC_TUNABLES": TUNABLES}
    cmd = [sys.executable, __file__, "--child", str(k), mode, "--steps", str(args.steps)]
    cmd += ["--batch-size", str(args.batch_size), "--device", args.device, "--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        if "out of memory" in proc.stderr.lower():
            return None
        raise SystemExit(f"K={k} {mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["images_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--modes", nargs="+", default=["eager-fp32", "eager-bf16", "compiled-fp32", "compiled-bf16"])
    parser.add_argument("--steps", type=int, default=6, help="timed reports (each 2-3 steps)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--largest", action="store_true", help="also double K past the largest until out of memory")
    parser.add_argument("--child", nargs=2, metavar=("K", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.device == "auto":
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.child:
        child(int(args.child[0]), args.child[1], args.steps, args.batch_size, args.device, args.threads)
        return

    import torch

    name = (
        torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    )
    flops = step_flops(args.batch_size, args.device) / args.batch_size
    print(f"device: {name}; batch {args.batch_size}; {flops / 1e9:.3f} GFLOP per image (forward+backward, counted)")
    print(f"{'mode':<14}{'K':>6}{'images/s':>14}{'vs K=1':>9}{'vs unpacked':>13}{'roofline':>10}")
    for mode in args.modes:
        precision = mode.split("-")[1]
        nominal = next((p for key, p in NOMINAL_PEAKS.items() if key in name), None)
        # Without a data sheet, the ceiling is the best large matmul here in either precision
        # (a CPU without bf16 units runs bf16 matmuls slower than fp32 ones).
        peak = nominal[precision] if nominal else max(matmul_peak(args.device, p) for p in ("fp32", "bf16"))
        unpacked = run(args, 0, mode)
        print(f"{mode:<14}{'unpk':>6}{unpacked:>14,.0f}{'':>9}{1.0:>13.2f}{unpacked * flops / peak:>10.2%}")
        base = None
        ks = list(args.ks)
        while ks:
            k = ks.pop(0)
            rate = run(args, k, mode)
            if rate is None:
                print(f"{mode:<14}{k:>6}{'out of memory':>14}")
                break
            base = base or rate
            print(
                f"{mode:<14}{k:>6}{rate:>14,.0f}{rate / base:>9.2f}{rate / unpacked:>13.2f}{rate * flops / peak:>10.2%}"
            )
            if args.largest and not ks and k < 4096:
                ks.append(2 * k)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
