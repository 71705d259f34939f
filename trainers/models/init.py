"""Parameter initialisation of every network a variant trains.

He et al. (2015), "Delving Deep into Rectifiers": each weight ~ N(0, 2 / fan_in), each
bias 0, so that a ReLU layer keeps the second moment of its input.  For a transposed
convolution of stride s and kernel k, an output pixel receives ``in_channels · (k/s)²``
inputs: that is its fan-in (torch's ``kaiming_normal_`` would count ``out_channels · k²``).

Why not torch's default (``kaiming_uniform_(a=√5)``: weight variance 1/(3·fan_in), biases
uniform in ±1/√fan_in): it shrinks the input-dependent part of the signal at every
layer, and dSprites images are 97 % background, so the default-initialised encoder of
:mod:`trainers.models.conv` maps every image to nearly the same code (the spread of
μ(x) across images is ≈ 6·10⁻⁴ at step 0, against ≈ 0.23 here).  Training then starts
from a collapsed posterior: a β-VAE sits at the mean image (recon ≈ 515 nats) for
hundreds of steps, and a capacity objective γ·|KL − C(t)| with C(0) = 0 kills the
encoder's units before C grows, after which it meets C with information-free KL
(``benchmarks/learning_check.py --diagnose`` measures both).
"""

from __future__ import annotations

import math

import torch
from torch import nn


@torch.no_grad()
def init_weights(model: nn.Module) -> nn.Module:
    """He-normal weights and zero biases for every linear and convolution layer of ``model``.

    Args:
        model: any network; layers other than ``Linear``, ``Conv2d`` and ``ConvTranspose2d``
            (and parameters outside layers, such as a learned log σ) keep their values.

    Returns:
        ``model``, initialised in place, drawing from torch's global generator.
    """
    for module in model.modules():
        if isinstance(module, nn.ConvTranspose2d):
            kernel = math.prod(module.kernel_size) / math.prod(module.stride)
            fan_in = module.in_channels // module.groups * kernel
        elif isinstance(module, (nn.Conv2d, nn.Linear)):
            fan_in = module.weight[0].numel()
        else:
            continue
        module.weight.normal_(0.0, math.sqrt(2.0 / fan_in))
        if module.bias is not None:
            module.bias.zero_()
    return model
