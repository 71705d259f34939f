"""The product's β-VAE training step against an independent plain-PyTorch one (benchmarks/plain_vae.py).

From the same weights, batches and reparameterisation noise, both must give the same
recon, KL and loss at every step: a wrong loss scale, sign, reduction, KL formula,
optimiser setting or data stream in ``trainers/`` shows as a gap from step 1.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from scaffold import Recorder

from trainers.config import EvalConfig, TrainConfig
from trainers.data import make_dataset
from trainers.setup import build, stream_seeds
from trainers.train import train

ROOT = Path(__file__).resolve().parents[1]
STEPS = 30


def _plain_module():
    spec = importlib.util.spec_from_file_location("plain_vae", ROOT / "benchmarks" / "plain_vae.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_product_trainer_follows_an_independent_beta_vae_step_by_step():
    plain = _plain_module()
    config = TrainConfig(
        variant="beta_vae",
        weights={"beta": {"schedule": "constant", "value": 4.0}},
        steps=STEPS,
        batch_size=32,
        lr=1e-3,
        precision="fp32",
        log_every=1,
        seed=3,
        eval=EvalConfig(recon_points=32, metrics=[], udr_points=16),
    )
    data = make_dataset("dsprites")
    seeds = stream_seeds(config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seeds["init"])
        _, model = build(config, data)
    independent = plain.PlainBetaVAE(config.latent_dim)
    ours, theirs = list(model.parameters()), list(independent.parameters())
    assert [p.shape for p in ours] == [p.shape for p in theirs]
    with torch.no_grad():
        for mine, other in zip(ours, theirs, strict=True):
            other.copy_(mine)

    product = Recorder()
    train(config, product)
    curve = [terms for _, terms in product.member_terms()]

    optimizer = plain.adam(independent, config.lr)
    data_rng = torch.Generator().manual_seed(seeds["data"])
    noise_rng = torch.Generator().manual_seed(seeds["noise"])
    for step in range(STEPS):
        x = data.observations(data.sample_factors(config.batch_size, data_rng), "cpu", data_rng)
        eps = torch.randn(config.batch_size, config.latent_dim, generator=noise_rng)
        terms = plain.beta_vae_terms(independent, x, eps, beta=4.0)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        for name in ("recon", "kl", "loss"):
            assert curve[step][name] == pytest.approx(terms[name].item(), rel=1e-3, abs=1e-3), (step, name)
    # The run learned something in 30 steps (the comparison is not between two frozen models).
    assert curve[-1]["recon"] < 0.8 * curve[0]["recon"]
