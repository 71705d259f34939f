import pytest
import torch
import torch.nn.functional as F

from trainers.data import ProceduralDSprites
from trainers.models import GaussianVAE
from trainers.objectives import OBJECTIVES, make_objective
from trainers.objectives.gaussian import reparameterize


def _batch(b=8, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(b, 1, 64, 64, generator=g) > 0.8).float()
    mu, logvar = torch.randn(b, d, generator=g), torch.randn(b, d, generator=g) * 0.3
    z = reparameterize(mu, logvar, g)
    logits = torch.randn(b, 1, 64, 64, generator=g)
    return x, mu, logvar, z, logits


def test_the_three_variants_are_registered():
    assert {"vae", "beta_vae", "annealed_vae"} <= set(OBJECTIVES)


def test_recon_is_summed_over_pixels_and_averaged_over_the_batch():
    x, mu, logvar, z, logits = _batch()
    terms = make_objective("vae", {}, 1000)(x, mu, logvar, z, logits, step=0)
    per_image = [F.binary_cross_entropy_with_logits(logits[i], x[i], reduction="sum") for i in range(len(x))]
    torch.testing.assert_close(terms["recon"], torch.stack(per_image).mean())
    kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1).mean()
    torch.testing.assert_close(terms["kl"], kl)
    torch.testing.assert_close(terms["loss"], terms["recon"] + terms["kl"])


def test_beta_vae_loss_and_reported_beta_follow_the_schedule():
    x, mu, logvar, z, logits = _batch()
    objective = make_objective("beta_vae", {"beta": {"schedule": "linear", "end": 8, "end_step": 100}}, 1000)
    terms = objective(x, mu, logvar, z, logits, step=25)
    assert terms["beta"].item() == pytest.approx(2.0)
    torch.testing.assert_close(terms["loss"], terms["recon"] + 2.0 * terms["kl"])


def test_annealed_vae_penalises_distance_to_capacity():
    x, mu, logvar, z, logits = _batch()
    objective = make_objective(
        "annealed_vae",
        {"gamma": 100, "capacity": {"schedule": "linear", "end": 20, "end_step": 10}},
        1000,
    )
    terms = objective(x, mu, logvar, z, logits, step=5)
    assert terms["capacity"].item() == pytest.approx(10.0)
    torch.testing.assert_close(terms["loss"], terms["recon"] + 100 * (terms["kl"] - 10.0).abs())


@pytest.mark.parametrize("variant", sorted(OBJECTIVES))
def test_every_declared_term_is_reported_and_training_decreases_the_loss(variant):
    torch.manual_seed(0)
    # Made for its network, as the training loops make it (Gaussian variants then report kl_z0..kl_z5).
    objective = make_objective(variant, {}, 737_280, latent_dim=6)
    model = objective.build_model(6, 1, "code")
    optimizers = objective.make_optimizers(model, 1e-3)
    data = ProceduralDSprites()
    rng, noise = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    batch = lambda: data.observations(data.sample_factors(32, rng))  # noqa: E731
    losses = []
    for step in range(30):
        terms = objective.train_step(model, optimizers, batch, step, noise, "fp32")
        assert list(terms) == list(objective.term_names()), variant
        assert all(torch.isfinite(v).all() for v in terms.values()), variant
        losses.append(terms["loss"].item())
    for parameter in model.parameters():
        assert parameter.grad is None or torch.isfinite(parameter.grad).all()
    assert sum(losses[-5:]) < sum(losses[:5]), variant


@pytest.mark.parametrize("variant", ["beta_vae", "annealed_vae", "beta_tcvae", "dip_vae_i", "hfvae"])
def test_each_latents_kl_is_reported_and_they_sum_to_the_kl(variant):
    x, mu, logvar, z, logits = _batch()
    d = mu.shape[1]
    terms = make_objective(variant, {}, 1000, latent_dim=d)(x, mu, logvar, z, logits, step=0)
    per_latent = torch.stack([terms[f"kl_z{i}"] for i in range(d)])
    # Closed form per dimension: ½ E_batch[μ² + σ² − 1 − log σ²].
    expected = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).mean(0)
    torch.testing.assert_close(per_latent, expected)
    torch.testing.assert_close(per_latent.sum(), terms["kl"])
    assert "kl_z0" not in make_objective(variant, {}, 1000)(x, mu, logvar, z, logits, step=0)


def test_decomposition_takes_no_gradient_when_the_loss_does_not_use_it():
    model = GaussianVAE(4)
    x = _batch()[0]
    post = model.encode(x)
    z = reparameterize(post.mu, post.logvar)
    terms = make_objective("beta_vae", {}, 1000)(x, post.mu, post.logvar, z, model.decode(z), step=0)
    assert terms["loss"].requires_grad and not terms["total_correlation"].requires_grad


def test_unknown_variant_and_weight_are_named():
    with pytest.raises(ValueError, match="variant: unknown variant 'tcvae'"):
        make_objective("tcvae", {}, 10)
    with pytest.raises(ValueError, match=r"weights\.gamma: variant 'beta_vae' takes no such weight"):
        make_objective("beta_vae", {"gamma": 1}, 10)
    with pytest.raises(ValueError, match=r"weights\.beta\.value: must be >= 0"):
        make_objective("beta_vae", {"beta": -2}, 10)
