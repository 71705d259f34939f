"""Encoder/decoder architectures."""

from trainers.models.conv import KERNEL_CHOICES, ConvDecoder, ConvEncoder, EncoderOutput, GaussianVAE

__all__ = ["KERNEL_CHOICES", "ConvDecoder", "ConvEncoder", "EncoderOutput", "GaussianVAE"]
