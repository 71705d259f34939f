import json

import matplotlib.image
import numpy as np
import pytest
import torch
from scaffold import Recorder

from trainers.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from trainers.config import EvalConfig, TrainConfig
from trainers.reporting import NullReporter, TrainingDiverged
from trainers.train import train


def _config(**changes):
    base = dict(
        variant="beta_vae",
        weights={"beta": 2.0},
        latent_dim=4,
        steps=20,
        batch_size=16,
        lr=1e-3,
        log_every=5,
        checkpoint_every=10,
        num_threads=1,
        eval=EvalConfig(recon_points=64, metric_options={"mig": {"num_points": 300}}),
    )
    base.update(changes)
    return TrainConfig(**base)


def test_reports_terms_checkpoints_and_a_result(tmp_path):
    rec = Recorder()
    result = train(_config(), rec, output_dir=tmp_path)
    terms = rec.member_terms()
    assert [s for s, _ in terms] == [5, 10, 15, 20]
    assert list(rec.states) == [10]
    assert rec.ended == [(0, result)] and not rec.failed
    assert set(terms[0][1]) == {"recon", "kl", "index_code_mi", "total_correlation", "dimwise_kl", "loss", "beta",
                                "kl_z0", "kl_z1", "kl_z2", "kl_z3"}  # fmt: skip
    assert terms[-1][1]["loss"] < terms[0][1]["loss"]
    assert set(result.metrics) == {"mig"} and 0 <= result.metrics["mig"] <= 1
    for name in ("reconstructions", "traversals"):
        image = matplotlib.image.imread(result.artifacts[name])
        assert image.ndim == 2 and image.std() > 0
    assert matplotlib.image.imread(result.artifacts["traversals"]).shape[0] == 4 * 66 + 2  # one row per latent
    assert load_checkpoint(result.artifacts["checkpoint"])["step"] == 20


def test_resuming_from_a_checkpoint_reproduces_the_uninterrupted_run():
    full = Recorder()
    whole = train(_config(), full)
    resumed_rec = Recorder()
    resumed = train(_config(), resumed_rec, resume=full.states[10])
    assert [s for s, _ in resumed_rec.terms] == [15, 20]
    assert resumed_rec.terms == full.terms[2:]
    assert resumed.terms == whole.terms and resumed.metrics == whole.metrics


def test_a_checkpoint_asked_for_off_the_grid_resumes_exactly():
    """A stopping study asks for a checkpoint at step 7 (checkpoint_every is 10): the run
    resumed from it reports what the uninterrupted run reported after step 7."""

    asked = Recorder(checkpoint_at=(7,))
    whole = train(_config(log_every=1, checkpoint_every=10), asked)
    assert list(asked.states) == [7, 10]
    resumed_rec = Recorder()
    resumed = train(_config(log_every=1, checkpoint_every=10), resumed_rec, resume=asked.states[7])
    assert resumed_rec.terms == asked.terms[7:]
    assert resumed.terms == whole.terms


def test_same_seed_same_run_other_seed_other_run():
    a, b, c = (train(_config(steps=5, checkpoint_every=0, seed=s), NullReporter()) for s in (0, 0, 1))
    assert a.terms == b.terms
    assert a.terms["recon"] != c.terms["recon"]


def test_divergence_names_the_step_and_the_term():
    # A learning rate of 100 blows the decoder up in one Adam step: the second
    # forward pass (step 1) has non-finite logits, so recon goes first.
    rec = Recorder()
    with pytest.raises(TrainingDiverged) as caught:
        train(_config(lr=100.0, checkpoint_every=0), rec)
    assert caught.value.term == "recon" and caught.value.step == 1
    assert rec.failed == {0: caught.value} and not rec.ended


def test_bf16_autocast_trains_and_matches_fp32_terms_loosely():
    fp32 = train(_config(steps=10, checkpoint_every=0), NullReporter())
    bf16 = train(_config(steps=10, checkpoint_every=0, precision="bf16"), NullReporter())
    assert bf16.terms["recon"] == pytest.approx(fp32.terms["recon"], rel=0.05)


def test_corrupt_foreign_and_mismatched_checkpoints_are_clear_errors(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"garbage\.pt: not a readable checkpoint"):
        load_checkpoint(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match=r"foreign\.pt: not a vae-study checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match=r"missing\.pt: checkpoint file not found"):
        load_checkpoint(tmp_path / "missing.pt")

    rec = Recorder()
    train(_config(), rec)
    state = dict(rec.states[10])
    save_checkpoint(tmp_path / "ok.pt", state)
    assert load_checkpoint(tmp_path / "ok.pt")["step"] == 10
    with pytest.raises(CheckpointError, match="latent_dim=4"):
        train(_config(latent_dim=6), NullReporter(), resume=state)
    config = json.loads(state["config"])
    assert config["weights"] == {"beta": 2.0}


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"batch_size": 1}, "batch_size"),
        ({"lr": 0}, "lr"),
        ({"checkpoint_every": 7}, "checkpoint_every"),
        ({"precision": "fp8"}, "precision"),
        ({"latent_dim": 1}, "latent_dim"),
    ],
)
def test_invalid_config_names_the_field(changes, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        _config(**changes).validate()


def test_gif_writer_round_trips_through_pillow(tmp_path):
    from PIL import Image, ImageSequence

    from trainers.images import write_gif

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (37, 61)) / 255.0 for _ in range(4)]
    path = write_gif(tmp_path / "t.gif", frames, delay_ms=200)
    with Image.open(path) as gif:
        decoded = [np.asarray(frame.convert("L"), dtype=np.float64) / 255.0 for frame in ImageSequence.Iterator(gif)]
        assert gif.info["duration"] == 200 and gif.info.get("loop") == 0
    assert len(decoded) == 4
    for ours, theirs in zip(frames, decoded, strict=True):
        np.testing.assert_allclose(theirs, np.round(ours * 255) / 255, atol=1e-9)


def test_artifacts_are_the_final_model_pictures_config_and_metrics(tmp_path):
    result = train(_config(checkpoint_every=0), NullReporter(), output_dir=tmp_path)
    assert set(result.artifacts) == {"reconstructions", "traversals", "codes", "mig", "config", "metrics", "checkpoint"}
    final = load_checkpoint(result.artifacts["checkpoint"])
    assert set(final) == {"format", "step", "config", "model"}  # no optimiser state: the trial has ended
    animated = train(_config(checkpoint_every=0, steps=5, eval=EvalConfig(recon_points=16, metrics=[],
                                                                        traversal_gif=True)),
                     NullReporter(), output_dir=tmp_path / "gif")  # fmt: skip
    assert animated.artifacts["traversals_gif"].read_bytes()[:6] == b"GIF89a"
    assert "mig" not in animated.artifacts  # no mig metric, no mig.npz
    saved = json.loads(result.artifacts["metrics"].read_text())
    assert saved["terms"] == result.terms and saved["metrics"] == result.metrics
    assert TrainConfig.from_dict(json.loads(result.artifacts["config"].read_text())) == _config(checkpoint_every=0)


def test_codes_for_udr_are_the_mean_codes_of_shared_inputs(tmp_path):
    config = _config(
        checkpoint_every=0,
        eval=EvalConfig(recon_points=512, metric_options={"mig": {"num_points": 300}}, udr_points=300),
    )
    result = train(config, NullReporter(), output_dir=tmp_path)
    with np.load(result.artifacts["codes"]) as codes:
        mean, kl = codes["mean"], codes["kl"]
    assert mean.shape == (300, 4) and kl.shape == (4,) and (kl >= 0).all()
    # An independent pass: the saved model encodes the same inputs (eval seed + 3) to the same codes.
    from trainers.artifacts import load_model
    from trainers.data import make_dataset

    data = make_dataset("dsprites")
    model = load_model(result.artifacts["checkpoint"])  # the final model, as a user loads it
    rng = torch.Generator().manual_seed(config.eval.seed + 3)
    x = torch.cat(
        [data.observations(data.sample_factors(n, rng), torch.device("cpu"), rng) for n in (16,) * 18 + (12,)]
    )
    with torch.no_grad():
        np.testing.assert_allclose(model.representation(x).numpy(), mean, atol=1e-5)
    # Summed over latents, the per-latent KL estimates the held-out KL term (other inputs, same distribution).
    assert kl.sum() == pytest.approx(result.terms["kl"], rel=0.15)


def test_mig_npz_is_what_the_trials_mig_was_computed_from(tmp_path):
    from trainers.artifacts import load_model
    from trainers.data import make_dataset
    from trainers.metrics.information import discretize, mutual_information_matrix
    from trainers.metrics.sampling import seeded_codes
    from trainers.outputs import MIG_NPZ

    config = _config(checkpoint_every=0)
    result = train(config, NullReporter(), output_dir=tmp_path)
    assert result.artifacts["mig"] == tmp_path / MIG_NPZ and result.artifacts["mig"].stat().st_size < 4096
    with np.load(result.artifacts["mig"]) as saved:
        matrix, h, gaps, names = saved["matrix"], saved["entropy"], saved["mig_per_factor"], saved["factor_names"]
    data = make_dataset("dsprites")
    assert matrix.shape == (4, 5) and list(names) == list(data.factor_names)
    # An independent pass: the saved model encodes the evaluation's points (its seed) again.
    model = load_model(result.artifacts["checkpoint"])
    codes, factors = seeded_codes(model.representation, data, config.eval.seed, 300)
    np.testing.assert_allclose(matrix, mutual_information_matrix(discretize(codes, 20), factors), atol=1e-12)
    first, second = np.sort(matrix, axis=0)[::-1][:2]
    np.testing.assert_allclose(gaps, (first - second) / h, rtol=1e-12)
    assert gaps.mean() == pytest.approx(result.metrics["mig"], rel=1e-12)
    assert json.loads(result.artifacts["metrics"].read_text())["metrics"] == {"mig": result.metrics["mig"]}
