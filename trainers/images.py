"""Figures written as 8-bit grayscale PNGs with the standard library (no imaging dependency)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import torch


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write ``image [H, W]`` with values in [0, 1] as a grayscale PNG."""
    pixels = (np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    height, width = pixels.shape
    raw = b"".join(b"\x00" + pixels[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path = Path(path)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    )
    return path


def tile(images: torch.Tensor, rows: int, cols: int, pad: int = 2) -> np.ndarray:
    """Arrange ``images [rows·cols, 1, H, W]`` into one grid with ``pad`` pixels of gap."""
    images = images.detach().float().cpu()[:, 0]
    h, w = images.shape[-2:]
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad), 0.5)
    for i in range(min(rows * cols, images.shape[0])):
        r, c = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        grid[top : top + h, left : left + w] = images[i].numpy()
    return grid


def _lzw_uncompressed(pixels: bytes) -> bytes:
    """GIF LZW data (min code size 8) that never grows past 9-bit codes.

    A clear code every 250 literals keeps the decoder's table below 512 entries,
    so every code is a plain 9-bit literal: valid LZW, no compression needed.
    """
    clear, end = 256, 257
    codes: list[int] = []
    for start in range(0, len(pixels), 250):
        codes.append(clear)
        codes.extend(pixels[start : start + 250])
    codes.append(end)
    out = bytearray()
    buffer = bits = 0
    for code in codes:
        buffer |= code << bits
        bits += 9
        while bits >= 8:
            out.append(buffer & 0xFF)
            buffer >>= 8
            bits -= 8
    if bits:
        out.append(buffer & 0xFF)
    return bytes(out)


def write_gif(path: str | Path, frames: list[np.ndarray], delay_ms: int = 150) -> Path:
    """Write grayscale ``frames`` ([H, W], values in [0, 1]) as a looping GIF89a animation."""
    first = np.asarray(frames[0])
    height, width = first.shape
    palette = bytes(v for g in range(256) for v in (g, g, g))
    data = bytearray(b"GIF89a" + struct.pack("<HHBBB", width, height, 0xF7, 0, 0) + palette)
    data += b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"  # loop forever
    for frame in frames:
        pixels = (np.clip(np.asarray(frame, dtype=np.float64), 0.0, 1.0) * 255.0).round().astype(np.uint8)
        if pixels.shape != (height, width):
            raise ValueError("all GIF frames must have the same shape")
        data += b"\x21\xf9\x04\x04" + struct.pack("<H", max(1, delay_ms // 10)) + b"\x00\x00"
        data += b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x08"
        stream = _lzw_uncompressed(pixels.tobytes())
        for start in range(0, len(stream), 255):
            block = stream[start : start + 255]
            data += bytes([len(block)]) + block
        data += b"\x00"
    data += b"\x3b"
    path = Path(path)
    path.write_bytes(bytes(data))
    return path
