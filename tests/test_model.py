import pytest
import torch

from trainers.models import GaussianVAE


def _conv_params(cin, cout, k):
    return cin * cout * k * k + cout


@pytest.mark.parametrize("kernels, k", [("code", 2), ("paper", 4)])
def test_encoder_is_the_locatello_architecture(kernels, k):
    d = 10
    model = GaussianVAE(d, kernels=kernels)
    expected = (
        _conv_params(1, 32, 4) + _conv_params(32, 32, 4) + _conv_params(32, 64, k) + _conv_params(64, 64, k)
        + (1024 * 256 + 256) + (256 * 2 * d + 2 * d)
    )  # fmt: skip
    assert sum(p.numel() for p in model.encoder.parameters()) == expected
    post = model.encode(torch.zeros(3, 1, 64, 64))
    assert post.mu.shape == (3, d) and post.logvar.shape == (3, d)


def test_decoder_mirrors_it_and_gives_logits_per_pixel():
    d = 7
    model = GaussianVAE(d)
    expected = (
        (d * 256 + 256) + (256 * 1024 + 1024)
        + _conv_params(64, 64, 4) + _conv_params(64, 32, 4) + _conv_params(32, 32, 4) + _conv_params(32, 1, 4)
    )  # fmt: skip
    assert sum(p.numel() for p in model.decoder.parameters()) == expected
    assert model.decode(torch.zeros(2, d)).shape == (2, 1, 64, 64)


def test_unknown_kernel_variant():
    with pytest.raises(ValueError, match="kernels"):
        GaussianVAE(4, kernels="wide")
