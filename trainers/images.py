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
