"""The seed notes' hierarchical VAE: its generator, per-level KLs, K-sample reconstruction and weight prior."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from trainers.models import make_likelihood
from trainers.objectives import make_objective


def _objective(likelihood=None, **options):
    options = {"num_levels": 3, "level_dims": [3, 2, 4], **options}
    extra = {"likelihood": likelihood} if likelihood else {}
    return make_objective("hierarchical_vae", {"beta": 2.0}, 1000, options=options, **extra)


def test_the_generator_is_top_down_with_linear_lifts():
    model = _objective(hidden=32).build_model(5, 1, "code")
    g = torch.Generator().manual_seed(0)
    z1, z2, z3 = (torch.randn(4, d, generator=g) for d in (3, 2, 4))

    def mlp(seq, h):
        return F.linear(F.relu(F.linear(h, seq[0].weight, seq[0].bias)), seq[2].weight, seq[2].bias)

    h3 = z3 @ model.lift[2].weight.T
    h2 = mlp(model.dec[1], h3) + z2 @ model.lift[1].weight.T
    h1 = mlp(model.dec[0], h2) + z1 @ model.lift[0].weight.T
    torch.testing.assert_close(model.generate([z1, z2, z3]), model.decoder(h1))
    assert all(lift.bias is None for lift in model.lift)


def test_terms_per_level_kl_k_sample_recon_and_weight_prior():
    objective = _objective(make_likelihood("gaussian", 0.2), num_samples=3, kappa=50.0, hidden=32)
    model = objective.build_model(5, 1, "code")
    x = torch.rand(4, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    terms = objective.forward_terms(model, x, 0, torch.Generator().manual_seed(7), "fp32")
    assert list(terms) == list(objective.term_names())
    levels = model.encode_levels(x)
    for i, (mu, logvar) in enumerate(levels, start=1):
        kl = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(1).mean()
        torch.testing.assert_close(terms[f"kl_level_{i}"], kl)
    torch.testing.assert_close(terms["kl"], sum(terms[f"kl_level_{i}"] for i in (1, 2, 3)))
    # The K samples, drawn level by level from the same stream, decoded one by one.
    noise = torch.Generator().manual_seed(7)
    eps = [torch.randn(3 * 4, mu.shape[1], generator=noise) for mu, _ in levels]
    nlls = []
    for k in range(3):
        zs = [mu + (0.5 * lv).exp() * e[k * 4 : (k + 1) * 4] for (mu, lv), e in zip(levels, eps, strict=True)]
        mean = torch.sigmoid(model.generate(zs))
        nlls.append(-Normal(mean, 0.2).log_prob(x).flatten(1).sum(1).mean())
    torch.testing.assert_close(terms["recon"], torch.stack(nlls).mean())
    generator = [*model.lift.parameters(), *model.dec.parameters(), *model.decoder.parameters()]
    torch.testing.assert_close(terms["weight_prior"], sum(p.square().sum() for p in generator) / 100.0)
    torch.testing.assert_close(terms["loss"], terms["recon"] + terms["weight_prior"] + 2.0 * terms["kl"])
    no_prior = _objective(kappa=math.inf, hidden=32)
    assert no_prior.forward_terms(model, x, 0, torch.Generator(), "fp32")["weight_prior"].item() == 0.0


def test_per_level_traversals():
    model = _objective(hidden=32).build_model(5, 1, "code").eval()
    x = torch.rand(2, 1, 64, 64)
    values = (-1.0, 1.0)
    with torch.no_grad():
        rows = model.traverse(x, values)
        top = model.traverse_level(x, 2, values)
    assert rows.shape[0] == (3 + 2 + 4) * 2 and top.shape[0] == 4 * 2
    torch.testing.assert_close(rows[-8:], top)
    assert model.latent_dim == 9 and model.representation(x).shape == (2, 9)


@pytest.mark.parametrize(
    "options, field",
    [({"num_levels": 0}, "num_levels"), ({"level_dims": [2]}, "level_dims"), ({"kappa": 0}, "kappa"),
     ({"num_samples": 0}, "num_samples")],
)  # fmt: skip
def test_options_are_checked(options, field):
    with pytest.raises(ValueError, match=f"variant_options.{field}"):
        make_objective("hierarchical_vae", {}, 10, options=options)
