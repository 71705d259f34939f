"""He initialisation (trainers.models.init): the variances it draws and what it fixes on dSprites."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainers.data import make_dataset
from trainers.models.init import init_weights
from trainers.objectives import make_objective


@pytest.mark.parametrize(
    "layer, fan_in",
    [
        (nn.Linear(1024, 256), 1024),
        (nn.Conv2d(32, 64, 4, 2, 1), 32 * 16),
        # Stride 2, kernel 4: each output pixel sees 2 × 2 kernel taps of each input channel.
        (nn.ConvTranspose2d(64, 32, 4, 2, 1), 64 * 4),
    ],
)
def test_weights_have_he_variance_and_zero_bias(layer, fan_in):
    torch.manual_seed(0)
    init_weights(layer)
    assert layer.weight.var().item() == pytest.approx(2.0 / fan_in, rel=0.05)
    assert layer.weight.mean().abs().item() < 3 * math.sqrt(2.0 / fan_in / layer.weight.numel())
    assert torch.count_nonzero(layer.bias) == 0


def test_a_transposed_convolution_keeps_the_second_moment_of_rectified_input():
    # Brute force: E[y²] = fan_in · (2 / fan_in) · E[relu(x)²] = 2 · 0.5 = 1 away from the border.
    torch.manual_seed(1)
    layer = init_weights(nn.ConvTranspose2d(64, 64, 4, 2, 1))
    with torch.no_grad():
        y = layer(torch.relu(torch.randn(16, 64, 16, 16)))
    assert y[:, :, 2:-2, 2:-2].square().mean().item() == pytest.approx(1.0, rel=0.1)


def test_the_initialised_encoder_tells_dsprites_images_apart():
    # torch's default initialisation maps every dSprites image to nearly one code (the
    # posterior starts collapsed); He initialisation does not.
    data = make_dataset("dsprites")
    x = data.observations(data.sample_factors(256, torch.Generator().manual_seed(9)))
    objective = make_objective("beta_vae", {}, data.size)
    spread = {}
    for name, make in (("default", objective.build_model), ("he", objective.new_model)):
        torch.manual_seed(0)
        with torch.no_grad():
            spread[name] = make(10, 1, "code").encode(x).mu.std(0).mean().item()
    assert spread["default"] < 0.01
    assert spread["he"] > 0.1
