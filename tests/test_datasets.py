"""Data sets: procedural variants, and the real-file loaders on tiny files in the upstream layouts."""

import h5py
import numpy as np
import pytest
import torch

from study.spec import SpecError, parse_spec
from trainers.config import EvalConfig, TrainConfig
from trainers.data import ColorDSprites, DataFileError, NoisyDSprites, ProceduralDSprites, make_dataset
from trainers.data.files import MPI3D_LAYOUTS, load_mpi3d
from trainers.reporting import NullReporter
from trainers.train import train


def _grid(sizes):
    return np.stack(np.meshgrid(*[np.arange(n) for n in sizes], indexing="ij"), -1).reshape(-1, len(sizes))


def _factors(data, n=16, seed=0):
    return data.sample_factors(n, torch.Generator().manual_seed(seed))


# Procedural variants ------------------------------------------------------------------------


def test_color_dsprites_colours_the_sprite_per_image():
    data, plain = ColorDSprites(), ProceduralDSprites()
    f = _factors(data)
    x = data.observations(f, generator=torch.Generator().manual_seed(1))
    mask = plain.observations(f)
    assert x.shape == (16, 3, 64, 64)
    assert torch.equal(x.amax(1, keepdim=True) > 0, mask > 0)  # colour only where the sprite is
    for i in range(16):
        colours = x[i][:, mask[i, 0] > 0]
        assert torch.allclose(colours, colours[:, :1].expand_as(colours))  # one colour per image
        assert ((colours >= 0.5) & (colours <= 1.0)).all()
    again = data.observations(f, generator=torch.Generator().manual_seed(1))
    other = data.observations(f, generator=torch.Generator().manual_seed(2))
    assert torch.equal(x, again) and not torch.equal(x, other)


def test_noisy_dsprites_keeps_a_white_sprite_on_uniform_noise():
    data = NoisyDSprites()
    f = _factors(data, 32)
    x = data.observations(f, generator=torch.Generator().manual_seed(0))
    mask = ProceduralDSprites().observations(f).expand(-1, 3, -1, -1) > 0
    assert (x[mask] == 1.0).all()
    background = x[~mask]
    assert 0.0 <= background.min() and background.max() <= 1.0
    assert abs(background.mean().item() - 0.5) < 0.01 and abs(background.var().item() - 1 / 12) < 0.003


# dSprites files ------------------------------------------------------------------------------

DSPRITES_SIZES = (1, 3, 2, 2, 3, 3)  # color, shape, scale, orientation, posX, posY


def _dsprites_arrays():
    classes = _grid(DSPRITES_SIZES).astype(np.int64)
    rng = np.random.default_rng(0)
    imgs = (rng.random((len(classes), 64, 64)) > 0.9).astype(np.uint8)
    values = classes.astype(np.float64) / np.maximum(np.array(DSPRITES_SIZES) - 1, 1)
    return imgs, classes, values


@pytest.mark.parametrize("compressed", [False, True])
def test_dsprites_npz_in_the_upstream_layout(tmp_path, compressed):
    imgs, classes, values = _dsprites_arrays()
    path = tmp_path / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
    save = np.savez_compressed if compressed else np.savez
    save(path, imgs=imgs, latents_classes=classes, latents_values=values, metadata=np.array({"date": "x"}))
    data = make_dataset("dsprites_file", path=str(path))
    assert data.factor_names == ("shape", "scale", "orientation", "posX", "posY")
    assert data.factor_sizes == DSPRITES_SIZES[1:] and data.observation_shape == (1, 64, 64)
    assert isinstance(data.images, np.memmap) != compressed  # stored members are memory-mapped
    f = data.index_to_factors(torch.tensor([0, 5, 107, 5]))
    x = data.observations(f)
    np.testing.assert_array_equal(x[:, 0].numpy(), imgs[[0, 5, 107, 5]].astype(np.float32))


def test_dsprites_hdf5_in_the_upstream_layout(tmp_path):
    imgs, classes, values = _dsprites_arrays()
    path = tmp_path / "dsprites.hdf5"
    with h5py.File(path, "w") as f:
        f["imgs"] = imgs
        f["latents/classes"] = classes
        f["latents/values"] = values
    data = make_dataset("dsprites_file", path=str(path))
    index = torch.tensor([107, 3, 3, 0])  # unsorted and repeated: h5py needs sorted unique reads
    x = data.observations(data.index_to_factors(index))
    np.testing.assert_array_equal(x[:, 0].numpy(), imgs[index.numpy()].astype(np.float32))


# 3DShapes and MPI3D --------------------------------------------------------------------------

SHAPES_SIZES = (2, 2, 2, 2, 2, 3)


def _write_shapes3d(path, shuffle=False):
    classes = _grid(SHAPES_SIZES)
    grids = [np.linspace(0, 0.9, 10)[:2], np.linspace(0, 0.9, 10)[:2], np.linspace(0, 0.9, 10)[:2],
             np.linspace(0.75, 1.25, 8)[:2], np.arange(4.0)[:2], np.linspace(-30, 30, 15)[:3]]  # fmt: skip
    labels = np.stack([grids[k][classes[:, k]] for k in range(6)], 1)
    images = np.random.default_rng(0).integers(0, 256, (len(classes), 64, 64, 3), dtype=np.uint8)
    if shuffle:
        labels = labels[::-1]
    with h5py.File(path, "w") as f:
        f["images"] = images
        f["labels"] = labels
    return images


def test_shapes3d_in_the_upstream_layout_and_training_on_it(tmp_path):
    path = tmp_path / "3dshapes.h5"
    images = _write_shapes3d(path)
    data = make_dataset("shapes3d", path=str(path))
    assert data.factor_names == ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
    assert data.factor_sizes == SHAPES_SIZES and data.observation_shape == (3, 64, 64)
    x = data.observations(data.index_to_factors(torch.tensor([95, 1])))
    np.testing.assert_allclose(x.permute(0, 2, 3, 1).numpy(), images[[95, 1]] / 255.0, rtol=1e-6)
    config = TrainConfig(
        variant="beta_vae", dataset="shapes3d", dataset_options={"path": str(path)}, latent_dim=4, steps=3,
        batch_size=8, num_threads=1, eval=EvalConfig(recon_points=8, metric_options={"mig": {"num_points": 50}}),
    )  # fmt: skip
    result = train(config, NullReporter())
    assert np.isfinite(result.terms["recon"]) and "mig" in result.metrics


def test_mpi3d_release_is_detected_by_count_and_subsets_load(tmp_path):
    assert MPI3D_LAYOUTS[1_036_800] == (6, 6, 2, 3, 3, 40, 40) and np.prod(MPI3D_LAYOUTS[460_800]) == 460_800
    sizes = (2, 2, 1, 1, 1, 2, 3)
    images = np.random.default_rng(1).integers(0, 256, (int(np.prod(sizes)), 64, 64, 3), dtype=np.uint8)
    path = tmp_path / "mpi3d_toy.npz"
    np.savez(path, images=images)
    with pytest.raises(DataFileError, match=r"mpi3d_toy\.npz: 24 images matches no MPI3D release"):
        load_mpi3d(path)
    data = load_mpi3d(path, factor_sizes=sizes)
    x = data.observations(data.index_to_factors(torch.tensor([23])))
    np.testing.assert_allclose(x[0].permute(1, 2, 0).numpy(), images[23] / 255.0, rtol=1e-6)


# Errors --------------------------------------------------------------------------------------


def test_bad_files_are_named_with_what_was_expected(tmp_path):
    with pytest.raises(DataFileError, match=r"nowhere\.h5: data file not found"):
        make_dataset("shapes3d", path=str(tmp_path / "nowhere.h5"))
    imgs, classes, _ = _dsprites_arrays()
    stored = tmp_path / "stored.npz"
    np.savez(stored, imgs=imgs, latents_classes=classes)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(stored.read_bytes()[: stored.stat().st_size // 2])
    with pytest.raises(DataFileError, match=r"truncated\.npz: not a readable \.npz"):
        make_dataset("dsprites_file", path=str(truncated))
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, imgs=imgs[:10], latents_classes=classes)
    with pytest.raises(DataFileError, match=r"wrong\.npz: 10 images, but the factor grid"):
        make_dataset("dsprites_file", path=str(wrong))
    nokey = tmp_path / "nokey.npz"
    np.savez(nokey, images=imgs)
    with pytest.raises(DataFileError, match=r"nokey\.npz: no array 'imgs'"):
        make_dataset("dsprites_file", path=str(nokey))
    shuffled = tmp_path / "shuffled.h5"
    _write_shapes3d(shuffled, shuffle=True)
    with pytest.raises(DataFileError, match=r"shuffled\.h5: images are not in row-major factor order"):
        make_dataset("shapes3d", path=str(shuffled))
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not hdf5")
    with pytest.raises(DataFileError, match=r"garbage\.h5: not a readable HDF5 file"):
        make_dataset("shapes3d", path=str(garbage))
    empty = tmp_path / "empty.npz"
    np.savez(empty, imgs=imgs[:0], latents_classes=classes[:0])
    expected = r"empty\.npz: latents_classes of shape \[0, 6\]; expected \[N, 6\] with N > 0"
    with pytest.raises(DataFileError, match=expected):
        make_dataset("dsprites_file", path=str(empty))
    small = tmp_path / "small.npz"
    np.savez(small, imgs=imgs[:, :32, :32], latents_classes=classes)
    with pytest.raises(DataFileError, match=r"small\.npz: imgs are 32×32 images; the models take 64×64"):
        make_dataset("dsprites_file", path=str(small))
    grey = tmp_path / "mpi3d_grey.npz"
    np.savez(grey, images=imgs[:, :, :, None])
    expected = r"mpi3d_grey\.npz: images of shape \[108, 64, 64, 1\]; expected \[N, 64, 64, 3\]"
    with pytest.raises(DataFileError, match=expected):
        make_dataset("mpi3d", path=str(grey))


def test_a_spec_with_a_missing_data_file_is_a_spec_error(tmp_path):
    spec = {
        "name": "t",
        "variant": "beta_vae",
        "dataset": "shapes3d",
        "dataset_options": {"path": str(tmp_path / "3dshapes.h5")},
        "objectives": [{"name": "recon", "mode": "min"}],
    }
    with pytest.raises(SpecError, match=r"dataset_options\.path: .*3dshapes\.h5: data file not found"):
        parse_spec(spec)
