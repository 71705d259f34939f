"""Do trials learn?  Train the reference configurations on procedural dSprites and record
their curves, final terms and disentanglement, beside the published figures.

    python benchmarks/learning_check.py [--steps 10000] [--lr 1e-3] [--seeds 0] [--only NAME ...]
                                        [--probe-every 1000] [--jobs 2] [--out DIR]
    python benchmarks/learning_check.py --diagnose      # the initialisation diagnosis only
    python benchmarks/learning_check.py --tc-bias [--steps 3000]   # the TC estimate by batch size
    python benchmarks/learning_check.py --set demo --steps 6000 --lr 1e-4 --seeds 0 1
                                                        # the demo's candidates (docs/benchmarks.md)

Each configuration trains through the product's trainer (``trainers.train.train``) in its
own process (one thread, the tuned allocator); ``plain_beta_vae_b4`` trains the
independent plain-PyTorch β-VAE of ``benchmarks/plain_vae.py`` instead.  Every
``--probe-every`` steps a probe scores the model as it stands: MIG (disentanglement_lib's:
10,000 points, 20 bins, mean codes), the latent × factor mutual-information matrix it is
computed from, and each latent's KL on 2,048 held-out images (the emergence curves of
Burgess et al. 2018).  A trial counts as collapsed when its held-out recon is within 10 %
of the mean-image decoder's (no latent used).

``--set demo`` trains the candidates for the demo study instead (``demo_candidates``):
β-TCVAE at several TC weights, learning rates and batch sizes, FactorVAE and β-VAE, each
in the budget a 10-minute demo on two cores allows.

Writes ``DIR/results.json`` (curves, probes, final terms), ``DIR/table.md`` and
``DIR/curves.png``.  ``--diagnose`` measures why trials collapsed before He
initialisation (trainers.models.init): the spread of μ(x) across images at step 0 and the
capacity objective's first steps under torch's default initialisation and under He's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path

TUNABLES = "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296"
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]


def reference_configs(steps: int) -> dict[str, dict]:
    """The reference configurations by name: variant and weights as the papers set them
    for dSprites, a capacity ramp compressed into ``steps``."""
    return {
        "vae_b1": {"variant": "beta_vae", "weights": {"beta": {"schedule": "constant", "value": 1.0}}},
        "beta_vae_b4": {"variant": "beta_vae", "weights": {"beta": {"schedule": "constant", "value": 4.0}}},
        "beta_vae_b4_fp32": {
            "variant": "beta_vae",
            "weights": {"beta": {"schedule": "constant", "value": 4.0}},
            "precision": "fp32",
        },
        "beta_tcvae_b6": {"variant": "beta_tcvae", "weights": {"beta": {"schedule": "constant", "value": 6.0}}},
        "annealed_c25_g1000": {
            "variant": "annealed_vae",
            "weights": {
                "gamma": {"schedule": "constant", "value": 1000.0},
                "capacity": {"schedule": "linear", "start": 0.0, "end": 25.0, "start_step": 0, "end_step": steps},
            },
        },
        "factor_vae_g35": {"variant": "factor_vae", "weights": {"gamma": {"schedule": "constant", "value": 35.0}}},
        "plain_beta_vae_b4": {"variant": "plain", "weights": {"beta": 4.0}},
    }


def demo_candidates(steps: int) -> dict[str, dict]:
    """Candidates for the demo study: a configuration may set its own ``lr`` and ``batch_size``
    (the same number of images as ``steps`` of batch 64)."""

    def tcvae(beta: float, **extra) -> dict:
        return {"variant": "beta_tcvae", "weights": {"beta": {"schedule": "constant", "value": beta}}, **extra}

    return {
        "beta_tcvae_b6": tcvae(6.0),
        "beta_tcvae_b10": tcvae(10.0),
        "beta_tcvae_b20": tcvae(20.0),
        "beta_tcvae_b10_lr5e-5": tcvae(10.0, lr=5e-5),
        "beta_tcvae_b10_batch256": tcvae(10.0, batch_size=256, lr=4e-4, steps=steps // 4),
        "beta_tcvae_b10_dlib": tcvae(10.0, variant_options={"regulariser": "disentanglement_lib"}),
        "factor_vae_g35": {"variant": "factor_vae", "weights": {"gamma": {"schedule": "constant", "value": 35.0}}},
        "beta_vae_b8": {"variant": "beta_vae", "weights": {"beta": {"schedule": "constant", "value": 8.0}}},
    }


CONFIG_SETS = {"reference": reference_configs, "demo": demo_candidates}


#: What the papers report for these models on dSprites (300,000 steps, batch 64, lr 1e-4).
PUBLISHED = {
    "vae_b1": "MIG ≈ 0.05–0.1 (Locatello et al. 2019, β = 1 end of the β-VAE range)",
    "beta_vae_b4": "MIG ≈ 0.1–0.3 (Locatello et al. 2019); Chen et al. 2018: β-VAE below β-TCVAE",
    "beta_vae_b4_fp32": "same as beta_vae_b4 (bf16 vs fp32 on one config)",
    "beta_tcvae_b6": "MIG ≈ 0.15–0.35 (Locatello et al. 2019); at or above β-VAE's (Chen et al. 2018)",
    "annealed_c25_g1000": "KL follows C(t); factors emerge one at a time, position first (Burgess et al. 2018); "
    "MIG ≈ 0.05–0.3 (Locatello et al. 2019)",
    "factor_vae_g35": "MIG ≈ 0.1–0.35 (Locatello et al. 2019)",
    "plain_beta_vae_b4": "independent trainer: should match beta_vae_b4 within seed noise",
    "beta_tcvae_b10": "MIG ≈ 0.15–0.35 (Locatello et al. 2019, β-TCVAE at β 4–10)",
    "beta_tcvae_b20": "β beyond Chen et al.'s 6: TC pressure against the minibatch estimator's bias",
    "beta_tcvae_b10_lr5e-5": "half disentanglement_lib's lr",
    "beta_tcvae_b10_batch256": "batch 256 at lr 4e-4, as many images: the TC estimate's bias falls with batch size",
    "beta_tcvae_b10_dlib": "disentanglement_lib's β-TCVAE form (KL + (β−1)·TC, minibatch-weighted)",
    "beta_vae_b8": "MIG ≈ 0.1–0.3 (Locatello et al. 2019)",
}


def probe(representation, posterior, data, seed: int = 0) -> dict:
    """MIG, its MI matrix and per-latent KL of a model as it stands."""
    import numpy as np
    import torch

    from trainers.metrics.information import discretize, entropy, mutual_information_matrix
    from trainers.metrics.mig import NUM_BINS, NUM_POINTS
    from trainers.metrics.sampling import seeded_codes

    with torch.no_grad():
        codes, factors = seeded_codes(representation, data, seed, NUM_POINTS, "cpu")
        mi = mutual_information_matrix(discretize(codes, NUM_BINS), factors)
        h = np.array([entropy(factors[:, k]) for k in range(factors.shape[1])])
        top = np.sort(mi, axis=0)[::-1]
        per_factor = (top[0] - top[1]) / h
        rng = torch.Generator().manual_seed(seed + 5)
        x = data.observations(data.sample_factors(2048, rng), "cpu", rng)
        mu, logvar = posterior(x)
        kl = (0.5 * (mu.square() + logvar.exp() - 1 - logvar)).mean(0)
    return {
        "mig": float(per_factor.mean()),
        "mig_per_factor": dict(zip(data.factor_names, per_factor.round(4).tolist(), strict=True)),
        "mi": mi.round(4).tolist(),
        "kl_per_latent": kl.numpy().round(4).tolist(),
    }


def mean_image_recon(data) -> float:
    """Held-out recon (nats per image) of a decoder that outputs the mean image: the collapse level."""
    import torch

    rng = torch.Generator().manual_seed(11)
    x = data.observations(data.sample_factors(4096, rng), "cpu", rng)
    p = x.mean(0, keepdim=True).clamp(1e-6, 1 - 1e-6)
    return float(-(x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1).mean())


def run_product(name: str, spec: dict, steps: int, lr: float, seed: int, probe_every: int) -> dict:
    """Train one reference configuration through ``trainers.train``; probe it along the way and at the end."""
    import tempfile

    import torch

    from trainers.artifacts import load_model
    from trainers.config import EvalConfig, TrainConfig
    from trainers.data import make_dataset
    from trainers.reporting import NullReporter
    from trainers.setup import build
    from trainers.train import train

    torch.set_num_threads(1)
    extra = {k: v for k, v in spec.items() if k not in ("variant", "weights", "lr", "steps")}
    options = {"precision": "auto", "batch_size": 64, **extra}
    steps = spec.get("steps", steps)
    config = TrainConfig(
        variant=spec["variant"],
        weights=spec["weights"],
        steps=steps,
        lr=spec.get("lr", lr),
        latent_dim=10,
        seed=seed,
        log_every=100,
        checkpoint_every=probe_every,
        eval=EvalConfig(metrics=["mig"]),
        **options,
    )
    data = make_dataset("dsprites")

    class Recorder(NullReporter):
        def __init__(self) -> None:
            self.curve: list[dict] = []
            self.probes: list[dict] = []

        def on_terms(self, step, terms):
            # The plain loop reports as member 0 of one.
            self.curve.append({"step": step, **{k: round(float(v), 4) for k, v in terms[0].items()}})

        def on_checkpoint(self, step, state):
            _, model = build(config, data)
            model.load_state_dict(state["model"])
            model.eval()
            self.probes.append({"step": step, **probe(model.representation, model.posterior, data)})

    recorder = Recorder()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        result = train(config, recorder, output_dir=out)
        model = load_model(result.artifacts["checkpoint"])
        recorder.probes.append({"step": steps, **probe(model.representation, model.posterior, data)})
    return {
        "name": name,
        "trainer": "product",
        "seed": seed,
        "precision": config.precision,
        "lr": config.lr,
        "batch_size": config.batch_size,
        "steps": steps,
        "curve": recorder.curve,
        "probes": recorder.probes,
        "final": result.terms,
        "metrics": result.metrics,
        "wall_s": round(time.perf_counter() - began, 1),
        "images_per_second": round(result.images_per_second, 1),
    }


def run_plain(name: str, spec: dict, steps: int, lr: float, seed: int, probe_every: int) -> dict:
    """Train the independent plain-PyTorch β-VAE (benchmarks/plain_vae.py) from its own initialisation."""
    import torch
    from plain_vae import PlainBetaVAE, adam, beta_vae_terms

    from trainers.data import make_dataset

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    data = make_dataset("dsprites")
    model = PlainBetaVAE(10).he_init()
    optimizer = adam(model, lr)
    rng = torch.Generator().manual_seed(seed + 1000)
    beta = spec["weights"]["beta"]
    curve: list[dict] = []
    probes: list[dict] = []
    sums: dict[str, float] = {}
    began = time.perf_counter()

    def representation(x):
        return model.posterior(x)[0]

    for step in range(1, steps + 1):
        x = data.observations(data.sample_factors(64, rng), "cpu", rng)
        terms = beta_vae_terms(model, x, torch.randn(64, 10, generator=rng), beta)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        for key, value in terms.items():
            sums[key] = sums.get(key, 0.0) + float(value.detach())
        if step % 100 == 0:
            curve.append({"step": step, **{k: round(v / 100, 4) for k, v in sums.items()}, "beta": beta})
            sums = {}
        if step % probe_every == 0 or step == steps:
            model.eval()
            probes.append({"step": step, **probe(representation, model.posterior, data)})
            model.train()
    train_s = time.perf_counter() - began
    model.eval()
    with torch.no_grad():
        # Held-out terms on the product's evaluation points (EvalConfig: seed 0, 2,048 images).
        rng = torch.Generator().manual_seed(0)
        totals: dict[str, float] = {}
        for _ in range(32):
            x = data.observations(data.sample_factors(64, rng), "cpu", rng)
            for key, value in beta_vae_terms(model, x, torch.randn(64, 10, generator=rng), beta).items():
                totals[key] = totals.get(key, 0.0) + float(value) / 32
    return {
        "name": name,
        "trainer": "plain",
        "lr": lr,
        "batch_size": 64,
        "steps": steps,
        "seed": seed,
        "precision": "fp32",
        "curve": curve,
        "probes": probes,
        "final": totals,
        "metrics": {"mig": probes[-1]["mig"]},
        "wall_s": round(time.perf_counter() - began, 1),
        "images_per_second": round(steps * 64 / train_s, 1),
    }


def run_one(job: tuple) -> dict:
    name, spec, steps, lr, seed, probe_every = job
    runner = run_plain if spec["variant"] == "plain" else run_product
    return runner(name, spec, steps, lr, seed, probe_every)


def active_latents(kl_per_latent: list[float], threshold: float = 0.1) -> int:
    """Latents whose KL to the prior exceeds ``threshold`` nats: the ones the model uses."""
    return sum(k > threshold for k in kl_per_latent)


def emergence_order(probes: list[dict], factor_names: tuple[str, ...], threshold: float = 0.5) -> list[str]:
    """Factors in the order a latent first carried them: the first probe at which some latent's
    KL passed ``threshold`` nats, that latent named by the factor it is most informative about."""
    import numpy as np

    seen: dict[int, tuple[int, str]] = {}
    for p in probes:
        mi = np.asarray(p["mi"])
        for latent, kl in enumerate(p["kl_per_latent"]):
            if kl > threshold and latent not in seen:
                seen[latent] = (p["step"], factor_names[int(mi[latent].argmax())])
    return [f"{factor}@{step}" for step, factor in sorted(seen.values())]


def write_outputs(runs: list[dict], out: Path, args: argparse.Namespace, collapse: float, wall: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from trainers.data import make_dataset

    factor_names = make_dataset("dsprites").factor_names
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": date.today().isoformat(),
        "host": f"the {os.cpu_count()}-core host ({platform.node()}, {platform.processor() or platform.machine()})",
        "command": "python benchmarks/learning_check.py " + " ".join(sys.argv[1:]),
        "steps": args.steps,
        "lr": args.lr,
        "mean_image_recon": round(collapse, 1),
        "wall_s": round(wall, 1),
    }
    (out / "results.json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
    lines = [
        f"Measured on {meta['date']}, {meta['host']}, `{meta['command']}` "
        f"({args.steps:,} steps of batch 64 at lr {args.lr:g} unless a row says otherwise: "
        f"{args.steps / 300_000:.1%} of the papers' 300,000; mean-image recon {collapse:.1f} nats; "
        f"{wall / 60:.0f} min wall).",
        "",
        "| config | seed | precision | lr | batch | recon | KL | TC | active latents | MIG "
        "| MIG by factor (shape/scale/orient/x/y) | emergence (factor@step) | collapsed | published (dSprites) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        last = run["probes"][-1]
        by_factor = "/".join(f"{v:.2f}" for v in last["mig_per_factor"].values())
        collapsed = run["final"]["recon"] > 0.9 * collapse
        tc = run["final"].get("total_correlation")
        lines.append(
            f"| {run['name']} | {run['seed']} | {run['precision']} | {run['lr']:g} | {run['batch_size']} "
            f"| {run['final']['recon']:.1f} "
            f"| {run['final']['kl']:.2f} | {'' if tc is None else f'{tc:.2f}'} "
            f"| {active_latents(last['kl_per_latent'])} | {run['metrics']['mig']:.3f} | {by_factor} "
            f"| {', '.join(emergence_order(run['probes'], factor_names)[:5])} | {'yes' if collapsed else 'no'} "
            f"| {PUBLISHED[run['name']]} |"
        )
    (out / "table.md").write_text("\n".join(lines) + "\n")

    fig, axes = plt.subplots(1, 4, figsize=(20, 4.2))
    for run in runs:
        label = f"{run['name']} s{run['seed']}"
        steps = [c["step"] for c in run["curve"]]
        axes[0].plot(steps, [c["recon"] for c in run["curve"]], label=label)
        axes[1].plot(steps, [c["kl"] for c in run["curve"]], label=label)
        if "capacity" in run["curve"][0]:
            axes[1].plot(steps, [c["capacity"] for c in run["curve"]], "k--", lw=0.8, label=f"C(t) {label}")
        axes[2].plot([p["step"] for p in run["probes"]], [p["mig"] for p in run["probes"]], "o-", label=label)
    axes[0].set(title="train recon (nats/image)", xlabel="step", ylim=(0, collapse * 1.1))
    axes[1].set(title="train KL (nats)", xlabel="step")
    axes[2].set(title="MIG (10,000 points)", xlabel="step")
    axes[2].legend(fontsize=7)
    annealed = [r for r in runs if r["name"].startswith("annealed")]
    if annealed:
        run = annealed[0]
        steps = [p["step"] for p in run["probes"]]
        for latent in range(len(run["probes"][0]["kl_per_latent"])):
            axes[3].plot(steps, [p["kl_per_latent"][latent] for p in run["probes"]], label=f"z{latent}")
        axes[3].set(title=f"per-latent KL, {run['name']}", xlabel="step")
        axes[3].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=90)


def diagnose() -> None:
    """The spread of μ(x) at step 0 and the capacity objective's first 600 steps, by initialisation."""
    import torch

    from trainers.config import TrainConfig
    from trainers.data import make_dataset
    from trainers.setup import build, stream_seeds

    torch.set_num_threads(1)
    data = make_dataset("dsprites")
    x = data.observations(data.sample_factors(256, torch.Generator().manual_seed(9)))
    config = TrainConfig(
        variant="annealed_vae",
        weights={
            "gamma": {"schedule": "constant", "value": 100.0},
            "capacity": {"schedule": "linear", "start": 0.0, "end": 25.0, "start_step": 0, "end_step": 4000},
        },
        lr=1e-3,
        precision="fp32",
    )
    print("init      step  recon     KL  index-code MI  dead FC units  spread of mu(x)")
    for init in ("torch", "he"):
        seeds = stream_seeds(config.seed)
        torch.manual_seed(seeds["init"])
        objective, model = build(config, data)
        if init == "torch":
            torch.manual_seed(seeds["init"])
            model = objective.build_model(10, 1, "code")
        _diagnose_run(init, objective, model, config, data, x, seeds)


def tc_bias(steps: int, sizes: tuple[int, ...] = (64, 256, 1024, 2048, 8192), points: int = 8192) -> None:
    """The minibatch TC estimate of one trained β-TCVAE (β = 10, lr 1e-4, seed 0) by batch size.

    Minibatch stratified sampling (``mss``, Chen et al. 2018, the default) estimates q(z_i)
    without bias, but its log is biased low (E log ≤ log E), and more so for the joint
    q(z_i) of ten dimensions, which 63 other posteriors seldom overlap, than for each
    one-dimensional q(z_id): TC = log q(z) − Σ_d log q(z_d) comes out low, even negative, at
    the training batch of 64 against N = 737,280 images, and rises with the batch.  Each
    row averages the estimate over the ``points`` held-out images cut into batches of B
    (one sample z per image, the same for every B)."""
    import tempfile

    import torch

    from trainers.artifacts import load_model
    from trainers.config import EvalConfig, TrainConfig
    from trainers.data import make_dataset
    from trainers.objectives.gaussian import kl_decomposition
    from trainers.reporting import NullReporter
    from trainers.train import train

    torch.set_num_threads(1)
    beta = {"schedule": "constant", "value": 10.0}
    config = TrainConfig(
        variant="beta_tcvae", weights={"beta": beta}, steps=steps, lr=1e-4, seed=0, log_every=100,
        eval=EvalConfig(metrics=["mig"]),
    )  # fmt: skip
    data = make_dataset("dsprites")
    with tempfile.TemporaryDirectory() as out:
        result = train(config, NullReporter(), output_dir=out)
        model = load_model(result.artifacts["checkpoint"]).eval()
    rng = torch.Generator().manual_seed(3)
    x = data.observations(data.sample_factors(points, rng), "cpu", rng)
    with torch.no_grad():
        posteriors = [model.posterior(chunk) for chunk in x.split(512)]
        mu = torch.cat([m.float() for m, _ in posteriors])
        logvar = torch.cat([v.float() for _, v in posteriors])
        z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=rng)
        print(
            f"beta_tcvae β=10 after {steps} steps (train TC at batch 64: {result.terms['total_correlation']:.2f}; "
            f"MIG {result.metrics['mig']:.3f}); TC estimate on {points} held-out images by batch size B:"
        )
        print(f"{'B':>6}  {'TC (mss)':>9}  batches")
        for b in sizes:
            parts = [
                float(kl_decomposition(z[i : i + b], mu[i : i + b], logvar[i : i + b], data.size)["total_correlation"])
                for i in range(0, points, b)
            ]
            print(f"{b:>6}  {sum(parts) / len(parts):>9.2f}  {points // b}")


def _diagnose_run(init, objective, model, config, data, x, seeds) -> None:
    import torch

    optimizers = objective.make_optimizers(model, config.lr)
    rng, noise = torch.Generator().manual_seed(seeds["data"]), torch.Generator().manual_seed(seeds["noise"])

    def batch():
        return data.observations(data.sample_factors(64, rng), "cpu", rng)

    def row(step: int, terms: dict) -> None:
        with torch.no_grad():
            units = model.encoder.features(x)
            spread = model.encode(x).mu.std(0).mean().item()
        dead = 1 - (units > 0).any(0).float().mean().item()
        nan = float("nan")
        print(
            f"{init:8s} {step:5d} {terms.get('recon', nan):6.1f} {terms.get('kl', nan):6.2f}"
            f" {terms.get('index_code_mi', nan):14.2f} {dead:14.0%} {spread:16.4f}"
        )

    row(0, {})
    for step in range(600):
        terms = objective.train_step(model, optimizers, batch, step, noise, "fp32")
        if (step + 1) in (50, 200, 600):
            row(step + 1, {k: float(v.detach()) for k, v in terms.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--only", nargs="+", help="configuration names (default: all)")
    parser.add_argument("--probe-every", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--set", choices=sorted(CONFIG_SETS), default="reference", dest="config_set")
    parser.add_argument("--out", type=Path, help="default docs/results/learning_check (demo: demo_candidates)")
    parser.add_argument("--diagnose", action="store_true")
    parser.add_argument("--tc-bias", action="store_true", help="the TC estimate of one trained β-TCVAE by batch size")
    args = parser.parse_args()
    if os.environ.get("GLIBC_TUNABLES") != TUNABLES:
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "GLIBC_TUNABLES": TUNABLES})
    if args.tc_bias:
        tc_bias(args.steps)
        return
    if args.diagnose:
        diagnose()
        return
    configs = CONFIG_SETS[args.config_set](args.steps)
    if args.out is None:
        folder = "learning_check" if args.config_set == "reference" else "demo_candidates"
        args.out = ROOT / "docs" / "results" / folder
    names = args.only or list(configs)
    unknown = sorted(set(names) - set(configs))
    if unknown:
        parser.error(f"--only: unknown configuration {unknown[0]!r}; known: {', '.join(configs)}")
    jobs = [(n, configs[n], args.steps, args.lr, s, args.probe_every) for n in names for s in args.seeds]
    from trainers.data import make_dataset

    collapse = mean_image_recon(make_dataset("dsprites"))
    began = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        runs = []
        for run in pool.map(run_one, jobs):
            print(
                f"{run['name']} seed {run['seed']}: recon {run['final']['recon']:.1f} kl {run['final']['kl']:.2f} "
                f"mig {run['metrics']['mig']:.3f} ({run['wall_s']:.0f} s)",
                flush=True,
            )
            runs.append(run)
    write_outputs(runs, args.out, args, collapse, time.perf_counter() - began)
    print((args.out / "table.md").read_text())


if __name__ == "__main__":
    main()
