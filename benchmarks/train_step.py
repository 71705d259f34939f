"""Training throughput on this host: images/s of the renderer and of full training steps.

Each configuration runs in a fresh child process (GLIBC_TUNABLES only acts when set
before Python starts), one thread per process, after a warm-up; the table reports
images/s and the ratio to the baseline (fp32, glibc defaults) measured in the same run.

    python benchmarks/train_step.py [--seconds 20] [--batch-size 64] [--threads 1] [--variant beta_vae]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

TUNABLES = "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296"


def child(kind: str, precision: str, seconds: float, batch_size: int, threads: int, variant: str) -> None:
    import torch

    from trainers.data import make_dataset
    from trainers.objectives import make_objective

    torch.set_num_threads(threads)
    data = make_dataset("dsprites")
    rng = torch.Generator().manual_seed(0)
    if kind == "render":
        step = lambda: data.observations(data.sample_factors(batch_size, rng))  # noqa: E731
    else:
        objective = make_objective(variant, {}, data.size)
        model = objective.build_model(10, 1, "code")
        optimizers = objective.make_optimizers(model, 1e-4)
        noise = torch.Generator().manual_seed(1)
        batch = lambda: data.observations(data.sample_factors(batch_size, rng))  # noqa: E731
        step = lambda: objective.train_step(model, optimizers, batch, 0, noise, precision)  # noqa: E731

    for _ in range(5):
        step()
    began, n = time.perf_counter(), 0
    while time.perf_counter() - began < seconds:
        step()
        n += batch_size
    print(json.dumps({"images_per_second": n / (time.perf_counter() - began)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variant", default="beta_vae")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PRECISION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.seconds, args.batch_size, args.threads, args.variant)
        return

    rows = []
    for kind, precision in (("render", "-"), ("train", "fp32"), ("train", "bf16")):
        for tunables in (False, True):
            env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
            if tunables:
                env["GLIBC_TUNABLES"] = TUNABLES
            cmd = [
                *(sys.executable, __file__, "--child", kind, precision, "--seconds", str(args.seconds)),
                *("--batch-size", str(args.batch_size), "--threads", str(args.threads), "--variant", args.variant),
            ]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
            rows.append((kind, precision, tunables, json.loads(out.splitlines()[-1])["images_per_second"]))

    print(f"{args.variant}, batch {args.batch_size}, {args.threads} thread(s), {args.seconds:.0f} s per row")
    print(f"{'what':<8}{'precision':<11}{'malloc tunables':<17}{'images/s':>10}{'ratio':>8}")
    baseline = {kind: ips for kind, precision, tun, ips in rows if not tun and precision in ("-", "fp32")}
    for kind, precision, tunables, ips in rows:
        ratio = ips / baseline[kind]
        print(f"{kind:<8}{precision:<11}{'on' if tunables else 'off':<17}{ips:>10.0f}{ratio:>7.2f}x")
    print("ratio: to the same row kind with fp32 (render: plain) and glibc defaults, same run")


if __name__ == "__main__":
    main()
