"""Ground-truth data sets read from the upstream release files.

| name          | file                                   | layout read                                           |
|---------------|----------------------------------------|-------------------------------------------------------|
| ``dsprites_file`` | ``dsprites_ndarray_*.npz`` or ``.hdf5`` | ``imgs`` [N, 64, 64] uint8, ``latents_classes`` [N, 6] |
| ``shapes3d``  | ``3dshapes.h5``                        | ``images`` [N, 64, 64, 3] uint8, ``labels`` [N, 6]     |
| ``mpi3d``     | ``mpi3d_*.npz``                        | ``images`` [N, 64, 64, 3] uint8                        |

Factor orders are the releases': dSprites (color,) shape, scale, orientation,
posX, posY (the constant colour dropped); 3DShapes floor hue 10, wall hue 10,
object hue 10, scale 8, shape 4, orientation 15 (480,000 images); MPI3D object
colour, shape, size, camera height, background colour, horizontal axis 40, vertical
axis 40 — 6·6·2·3·3·40·40 = 1,036,800 images in the final release, 4·4·2·3·3·40·40 =
460,800 in the 2019 toy/realistic/real files (told apart by the image count).
Images are stored in row-major factor order (the last factor varies fastest); the
loaders check that against the labels where the file has them.

Reads never copy a file into memory twice: an ``.npz`` member stored uncompressed
is memory-mapped in place; a compressed one is decompressed once; HDF5 datasets are
read per batch (sorted, de-duplicated indices, as h5py requires).  A missing,
truncated or wrong-shaped file raises :class:`DataFileError` naming the file and
what was expected.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainers.data.base import GroundTruthData

MPI3D_LAYOUTS = {
    1_036_800: (6, 6, 2, 3, 3, 40, 40),
    460_800: (4, 4, 2, 3, 3, 40, 40),
}
MPI3D_NAMES = (
    "object_color", "object_shape", "object_size", "camera_height", "background_color",
    "horizontal_axis", "vertical_axis",
)  # fmt: skip
SHAPES3D_NAMES = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
DSPRITES_NAMES = ("color", "shape", "scale", "orientation", "posX", "posY")


#: Height and width of the images every model here takes (Locatello et al.'s 64×64 networks).
IMAGE_SIZE = 64


class DataFileError(ValueError):
    """A data file that is missing, unreadable or not in the expected layout."""


def _check_images(path: Path, name: str, shape: Sequence[int], channels: Sequence[int]) -> None:
    """``shape`` must be [N, 64, 64] (``channels`` empty) or [N, 64, 64, C] with C in ``channels``, N > 0."""
    shape = tuple(int(n) for n in shape)
    expected = ", ".join(f"[N, {IMAGE_SIZE}, {IMAGE_SIZE}{f', {c}' if c else ''}]" for c in channels or (0,))
    if len(shape) != 3 + bool(channels) or (channels and shape[3] not in channels):
        raise DataFileError(f"{path}: {name} of shape {list(shape)}; expected {expected}")
    if shape[0] == 0:
        raise DataFileError(f"{path}: {name} holds no images; expected {expected} with N > 0")
    if shape[1:3] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataFileError(
            f"{path}: {name} are {shape[1]}×{shape[2]} images; the models take {IMAGE_SIZE}×{IMAGE_SIZE} "
            f"(resize the data set), expected {expected}"
        )


def _require(path: Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: data file not found")
    return path


def npz_member(path: Path, key: str) -> np.ndarray:
    """Array ``key`` of an ``.npz``: memory-mapped when stored uncompressed, else loaded once."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = {name.removesuffix(".npy") for name in archive.namelist()}
            if key not in names:
                raise DataFileError(f"{path}: no array {key!r} (arrays: {', '.join(sorted(names))})")
            info = archive.getinfo(f"{key}.npy")
        if info.compress_type == zipfile.ZIP_STORED:
            with open(path, "rb") as handle:
                handle.seek(info.header_offset)
                local = handle.read(30)
                name_length, extra_length = struct.unpack("<HH", local[26:30])
                handle.seek(info.header_offset + 30 + name_length + extra_length)
                version = np.lib.format.read_magic(handle)
                read_header = {
                    (1, 0): np.lib.format.read_array_header_1_0,
                    (2, 0): np.lib.format.read_array_header_2_0,
                }.get(version)
                if read_header is None:
                    raise DataFileError(f"{path}: array {key!r} has unsupported .npy format version {version}")
                shape, fortran, dtype = read_header(handle)
                offset = handle.tell()
            if offset + int(np.prod(shape)) * dtype.itemsize > path.stat().st_size:
                raise DataFileError(f"{path}: array {key!r} is truncated")
            return np.memmap(path, dtype=dtype, mode="r", shape=shape, order="F" if fortran else "C", offset=offset)
        with np.load(path) as archive:
            return archive[key]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        if isinstance(error, DataFileError):
            raise
        raise DataFileError(f"{path}: not a readable .npz ({type(error).__name__}: {error})") from None


def _h5_file(path: Path) -> Any:
    import h5py  # only the HDF5 loaders need it

    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise DataFileError(f"{path}: not a readable HDF5 file ({error})") from None


def _h5_dataset(handle: Any, path: Path, key: str) -> Any:
    if key not in handle:
        raise DataFileError(f"{path}: no dataset {key!r} (datasets: {', '.join(sorted(handle.keys()))})")
    return handle[key]


def _check_row_major(path: Path, classes: np.ndarray, sizes: Sequence[int]) -> None:
    index = np.zeros(len(classes), dtype=np.int64)
    for k, n_k in enumerate(sizes):
        index = index * n_k + classes[:, k]
    if not np.array_equal(index, np.arange(len(classes))):
        raise DataFileError(f"{path}: images are not in row-major factor order {tuple(sizes)}")


class ImageFileData(GroundTruthData):
    """Ground-truth data whose observations are rows of an image array in factor order."""

    def __init__(
        self,
        images: Any,
        factor_names: Sequence[str],
        factor_sizes: Sequence[int],
        source: Path,
        scale: float = 1.0 / 255.0,
        keep: Any = None,
    ) -> None:
        # ``keep`` holds an open HDF5 file for as long as its datasets are read.
        self.images, self.source, self.scale, self._keep = images, source, scale, keep
        self.factor_names, self.factor_sizes = tuple(factor_names), tuple(int(n) for n in factor_sizes)
        shape = tuple(images.shape)
        _check_images(source, "images", shape, (1, 3) if len(shape) == 4 else ())
        if shape[0] != self.size:
            raise DataFileError(f"{source}: {shape[0]} images, but the factor grid {self.factor_sizes} has {self.size}")
        if len(shape) == 3:
            self.channels_last, self.observation_shape = False, (1, shape[1], shape[2])
        else:
            self.channels_last, self.observation_shape = True, (shape[3], shape[1], shape[2])

    def observations(
        self, factors: torch.Tensor, device: torch.device | str = "cpu", generator: torch.Generator | None = None
    ) -> torch.Tensor:
        factors = torch.as_tensor(factors, dtype=torch.int64).cpu()
        self._check_factors(factors)
        index = self.factors_to_index(factors).numpy()
        unique, inverse = np.unique(index, return_inverse=True)  # h5py reads need sorted, distinct rows
        pixels = np.asarray(self.images[unique])[inverse]
        x = torch.from_numpy(pixels.astype(np.float32) * self.scale)
        x = x.permute(0, 3, 1, 2) if self.channels_last else x[:, None]
        return x.contiguous().to(device)


def load_dsprites_file(path: str | Path) -> ImageFileData:
    """The upstream dSprites release (``.npz`` or ``.hdf5``)."""
    path = _require(Path(path))
    if path.suffix == ".npz":
        images, classes, keep = npz_member(path, "imgs"), np.asarray(npz_member(path, "latents_classes")), None
    else:
        keep = _h5_file(path)
        images = _h5_dataset(keep, path, "imgs")
        classes = np.asarray(_h5_dataset(keep, path, "latents/classes"))
    if classes.ndim != 2 or classes.shape[1] != 6 or not len(classes):
        raise DataFileError(
            f"{path}: latents_classes of shape {list(classes.shape)}; expected [N, 6] with N > 0 ({DSPRITES_NAMES})"
        )
    _check_images(path, "imgs", images.shape, ())
    sizes = classes.max(axis=0) + 1
    _check_row_major(path, classes, sizes)
    if sizes[0] != 1:
        raise DataFileError(f"{path}: expected a single colour value, found {sizes[0]}")
    # The colour factor has one value in the release: drop it, as disentanglement_lib does.
    # Pixels are stored as 0/1.
    return ImageFileData(images, DSPRITES_NAMES[1:], sizes[1:], path, scale=1.0, keep=keep)


def load_shapes3d(path: str | Path) -> ImageFileData:
    """``3dshapes.h5`` (Burgess & Kim 2018)."""
    path = _require(Path(path))
    handle = _h5_file(path)
    images = _h5_dataset(handle, path, "images")
    labels = np.asarray(_h5_dataset(handle, path, "labels"))
    if labels.ndim != 2 or labels.shape[1] != 6 or not len(labels):
        raise DataFileError(
            f"{path}: labels of shape {list(labels.shape)}; expected [N, 6] with N > 0 ({SHAPES3D_NAMES})"
        )
    _check_images(path, "images", images.shape, (3,))
    values = [np.unique(labels[:, k]) for k in range(6)]
    classes = np.stack([np.searchsorted(values[k], labels[:, k]) for k in range(6)], 1)
    sizes = [len(v) for v in values]
    _check_row_major(path, classes, sizes)
    return ImageFileData(images, SHAPES3D_NAMES, sizes, path, keep=handle)


def load_mpi3d(path: str | Path, factor_sizes: Sequence[int] | None = None) -> ImageFileData:
    """An MPI3D ``.npz`` (Gondal et al. 2019); the release is told apart by its image count.

    ``factor_sizes`` overrides the detection (for a subset of a release).
    """
    path = _require(Path(path))
    images = npz_member(path, "images")
    _check_images(path, "images", images.shape, (3,))
    if factor_sizes is None:
        if len(images) not in MPI3D_LAYOUTS:
            known = ", ".join(f"{n:,}" for n in MPI3D_LAYOUTS)
            raise DataFileError(f"{path}: {len(images):,} images matches no MPI3D release ({known})")
        factor_sizes = MPI3D_LAYOUTS[len(images)]
    if len(factor_sizes) != len(MPI3D_NAMES):
        raise DataFileError(f"{path}: factor_sizes needs {len(MPI3D_NAMES)} entries ({', '.join(MPI3D_NAMES)})")
    return ImageFileData(images, MPI3D_NAMES, factor_sizes, path)
