"""Encoder/decoder architectures."""

from trainers.models.conv import (
    KERNEL_CHOICES,
    TRAVERSAL_VALUES,
    ConvDecoder,
    ConvEncoder,
    ConvFeatures,
    EncoderOutput,
    GaussianVAE,
)
from trainers.models.likelihood import BERNOULLI, LIKELIHOODS, Likelihood, make_likelihood

__all__ = [
    "BERNOULLI",
    "KERNEL_CHOICES",
    "LIKELIHOODS",
    "TRAVERSAL_VALUES",
    "ConvDecoder",
    "ConvEncoder",
    "ConvFeatures",
    "EncoderOutput",
    "GaussianVAE",
    "Likelihood",
    "make_likelihood",
]
