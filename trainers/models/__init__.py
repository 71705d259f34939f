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

__all__ = [
    "KERNEL_CHOICES",
    "TRAVERSAL_VALUES",
    "ConvDecoder",
    "ConvEncoder",
    "ConvFeatures",
    "EncoderOutput",
    "GaussianVAE",
]
