import math

import numpy as np
import pytest
import torch

from trainers.data import ProceduralDSprites, make_dataset


@pytest.fixture(scope="module")
def data():
    return ProceduralDSprites()


def test_factor_grid_is_the_upstream_one(data):
    assert data.factor_names == ("shape", "scale", "orientation", "posX", "posY")
    assert data.factor_sizes == (3, 6, 40, 32, 32)
    assert data.size == 737_280
    v = data.factor_values
    np.testing.assert_allclose(v["scale"], [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert len(v["orientation"]) == 40 and v["orientation"][0] == 0.0
    np.testing.assert_allclose(np.diff(v["orientation"]), 2 * math.pi / 39)
    np.testing.assert_allclose(v["posX"], np.arange(32) / 31)
    np.testing.assert_allclose(v["posY"], np.arange(32) / 31)


def test_index_and_factors_are_inverse_bijections(data):
    index = torch.tensor([0, 1, 31, 32, 1023, 40_960, 737_279])
    factors = data.index_to_factors(index)
    assert factors[0].tolist() == [0, 0, 0, 0, 0]
    assert factors[1].tolist() == [0, 0, 0, 0, 1]  # posY varies fastest, as upstream
    assert factors[-1].tolist() == [2, 5, 39, 31, 31]
    assert torch.equal(data.factors_to_index(factors), index)
    every = torch.arange(0, data.size, 997)
    assert torch.equal(data.factors_to_index(data.index_to_factors(every)), every)


def test_sampled_factors_cover_the_grid_and_are_seeded(data):
    a = data.sample_factors(20_000, torch.Generator().manual_seed(3))
    b = data.sample_factors(20_000, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    for k, n in enumerate(data.factor_sizes):
        counts = torch.bincount(a[:, k], minlength=n)
        assert counts.numel() == n and counts.min() > 0


def test_images_are_binary_deterministic_and_depend_only_on_factors(data):
    factors = data.sample_factors(64, torch.Generator().manual_seed(0))
    x = data.observations(factors)
    assert x.shape == (64, 1, 64, 64) and x.dtype == torch.float32
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    # The same factors rendered in another batch give the same pixels.
    assert torch.equal(data.observations(factors[10:20]), x[10:20])
    assert (x.flatten(1).sum(1) > 0).all()


def _centroid(image):
    ys, xs = torch.nonzero(image[0, 0], as_tuple=True)
    return xs.float().mean().item(), ys.float().mean().item()


def test_each_factor_moves_the_image_the_way_it_says(data):
    base = [1, 3, 0, 16, 16]

    def render(**changes):
        f = list(base)
        for name, value in changes.items():
            f[data.factor_names.index(name)] = value
        return data.observations(torch.tensor([f]))

    xs = [_centroid(render(posX=i))[0] for i in (0, 10, 20, 31)]
    ys = [_centroid(render(posY=i))[1] for i in (0, 10, 20, 31)]
    assert xs == sorted(xs) and xs[-1] - xs[0] > 30
    assert ys == sorted(ys) and ys[-1] - ys[0] > 30
    areas = [render(scale=s).sum().item() for s in range(6)]
    assert areas == sorted(areas) and areas[-1] > 3 * areas[0]
    shapes = [render(shape=s) for s in range(3)]
    assert not torch.equal(shapes[0], shapes[1]) and not torch.equal(shapes[1], shapes[2])
    # The ellipse turns with orientation; the upstream grid's last angle equals the first.
    assert not torch.equal(render(orientation=0), render(orientation=10))
    assert torch.equal(render(orientation=0), render(orientation=39))


def test_bad_factors_are_rejected(data):
    with pytest.raises(ValueError, match="out of range"):
        data.observations(torch.tensor([[3, 0, 0, 0, 0]]))
    with pytest.raises(ValueError, match="shape"):
        data.observations(torch.zeros(2, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="unknown dataset"):
        make_dataset("mnist")
