"""Procedural dSprites: the upstream factor grid, rendered on the fly in torch.

Factor grid of the upstream release (Matthey et al. 2017, ``dsprites_ndarray_*.npz``
``latents_possible_values``), in the column order used everywhere here::

    shape        3   square, ellipse, heart (upstream values 1, 2, 3)
    scale        6   linspace(0.5, 1.0, 6)
    orientation 40   linspace(0, 2π, 40)  (radians)
    posX        32   linspace(0, 1, 32)
    posY        32   linspace(0, 1, 32)

The upstream ``color`` factor has a single value (white) and is omitted, as
disentanglement_lib does (its ``latent_factor_indices`` are 1..5).  Note that the
upstream orientation grid includes both end points, so orientation 0 and 39 are the
same angle (and the square repeats every quarter turn); metrics see exactly the
same redundancy as on the real files.

Images are 64×64 binary, drawn by testing each pixel centre against the shape in
the sprite's own frame (translate, rotate by −θ, divide by scale).  Shapes, sizes
and the position range are chosen to look like the upstream sprites; the pixels
are not bit-identical to the released files, which cannot be downloaded here.
Every image is a pure function of its factor indices, so a batch is reproducible
from the indices alone and the 737,280 images are never materialised.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from trainers.data.base import GroundTruthData

IMAGE_SIZE = 64
#: Half-extent in pixels of a sprite at scale 1.
SPRITE_RADIUS = 10.0
#: Sprite centres span [MARGIN, IMAGE_SIZE − MARGIN] pixels as posX/posY span [0, 1].
MARGIN = 10.0


class ProceduralDSprites(GroundTruthData):
    """dSprites rendered from factor indices (see module docstring)."""

    factor_names = ("shape", "scale", "orientation", "posX", "posY")
    factor_sizes = (3, 6, 40, 32, 32)
    observation_shape = (1, IMAGE_SIZE, IMAGE_SIZE)
    deterministic_observations = True

    def __init__(self) -> None:
        self.factor_values: dict[str, np.ndarray] = {
            "shape": np.array([1.0, 2.0, 3.0]),
            "scale": np.linspace(0.5, 1.0, 6),
            "orientation": np.linspace(0.0, 2.0 * math.pi, 40),
            "posX": np.linspace(0.0, 1.0, 32),
            "posY": np.linspace(0.0, 1.0, 32),
        }

    def observations(
        self,
        factors: torch.Tensor,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        factors = torch.as_tensor(factors, dtype=torch.int64).to(device)
        self._check_factors(factors)
        return render(factors, self.factor_values)


def _nuisance_generator(generator: torch.Generator | None) -> torch.Generator:
    # Without a caller's stream the nuisance is still reproducible (fixed seed).
    return generator if generator is not None else torch.Generator().manual_seed(0)


class ColorDSprites(ProceduralDSprites):
    """Colour-dSprites (Locatello et al. 2019): the sprite in a random colour per image.

    Each RGB channel of the sprite is uniform in [0.5, 1], drawn per image; the
    colour is a nuisance, not a factor (disentanglement_lib's ``ColorDSprites``).
    """

    observation_shape = (3, IMAGE_SIZE, IMAGE_SIZE)
    deterministic_observations = False

    def observations(self, factors, device="cpu", generator=None) -> torch.Tensor:
        mask = super().observations(factors, device)
        colour = torch.rand(mask.shape[0], 3, 1, 1, generator=_nuisance_generator(generator)) * 0.5 + 0.5
        return mask * colour.to(mask.device)


class NoisyDSprites(ProceduralDSprites):
    """Noisy-dSprites (Locatello et al. 2019): a white sprite on uniform noise.

    Every background pixel and channel is uniform in [0, 1], drawn per image; the
    sprite stays white (``min(sprite + noise, 1)``, as disentanglement_lib's ``NoisyDSprites``).
    """

    observation_shape = (3, IMAGE_SIZE, IMAGE_SIZE)
    deterministic_observations = False

    def observations(self, factors, device="cpu", generator=None) -> torch.Tensor:
        mask = super().observations(factors, device)
        noise = torch.rand(mask.shape[0], 3, IMAGE_SIZE, IMAGE_SIZE, generator=_nuisance_generator(generator))
        return torch.clamp(mask + noise.to(mask.device), max=1.0)


def _value(values: np.ndarray, index: torch.Tensor) -> torch.Tensor:
    table = torch.as_tensor(values, dtype=torch.float32, device=index.device)
    return table[index]


def render(factors: torch.Tensor, factor_values: dict[str, np.ndarray]) -> torch.Tensor:
    """Binary images ``[n, 1, 64, 64]`` for dSprites factor index rows ``[n, 5]``."""
    device = factors.device
    shape = factors[:, 0]
    scale = _value(factor_values["scale"], factors[:, 1])[:, None, None]
    theta = _value(factor_values["orientation"], factors[:, 2])[:, None, None]
    span = IMAGE_SIZE - 1 - 2 * MARGIN
    cx = (MARGIN + _value(factor_values["posX"], factors[:, 3]) * span)[:, None, None]
    cy = (MARGIN + _value(factor_values["posY"], factors[:, 4]) * span)[:, None, None]

    coords = torch.arange(IMAGE_SIZE, dtype=torch.float32, device=device)
    py, px = torch.meshgrid(coords, coords, indexing="ij")
    dx, dy = px[None] - cx, py[None] - cy
    cos, sin = torch.cos(theta), torch.sin(theta)
    # Sprite frame: undo the rotation, then the scale; unit radius at the edge.
    u = (cos * dx + sin * dy) / (scale * SPRITE_RADIUS)
    v = (-sin * dx + cos * dy) / (scale * SPRITE_RADIUS)

    # Each image tests only its own shape: a third of the work of testing all three.
    image = torch.zeros(u.shape, dtype=torch.bool, device=device)
    for kind, inside in enumerate((_inside_square, _inside_ellipse, _inside_heart)):
        rows = (shape == kind).nonzero().squeeze(1)
        if rows.numel():
            image[rows] = inside(u[rows], v[rows])
    return image.to(torch.float32)[:, None]


def _inside_square(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.maximum(u.abs(), v.abs()) <= 0.8


def _inside_ellipse(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return u * u + 4.0 * v * v <= 1.0


def _inside_heart(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(x² + y² − 1)³ − x² y³ ≤ 0, pointing down in image coordinates."""
    x, y = u * 1.25, v * -1.25 + 0.15
    x2 = x * x
    r = x2 + y * y - 1.0
    return r * r * r <= x2 * y * y * y
