"""One checkpoint-fit rule for both loops (trainers.checkpoint.check_fit): a checkpoint resumes
only the training it was written for, whichever loop (plain: one member, packed: several)."""

from __future__ import annotations

import json

import pytest
from scaffold import Recorder

from trainers.checkpoint import CheckpointError
from trainers.config import EvalConfig, TrainConfig
from trainers.members import train_members
from trainers.reporting import NullReporter


def _config(seed: int = 0, **changes) -> TrainConfig:
    options = dict(
        variant="beta_vae",
        weights={"beta": {"schedule": "constant", "value": 2.0}},
        latent_dim=3,
        steps=4,
        batch_size=8,
        lr=1e-3,
        log_every=2,
        checkpoint_every=2,
        num_threads=1,
        seed=seed,
        eval=EvalConfig(recon_points=16, metrics=[], udr_points=16),
    )
    options.update(changes)
    return TrainConfig(**options)


def _checkpoint(members: int) -> dict:
    """The step-2 checkpoint of a run of ``members`` (1: the plain loop, 2: a pack)."""
    kept = Recorder()
    train_members([_config(seed) for seed in range(members)], kept)
    return kept.states[2]


@pytest.mark.parametrize("members", [1, 2], ids=["plain", "packed"])
@pytest.mark.parametrize(
    "field, changed",
    [
        ("lr", 2e-3),
        ("weights", {"beta": {"schedule": "constant", "value": 3.0}}),
        ("estimator", "mws"),
        ("precision", "bf16"),
        ("latent_dim", 4),
    ],
)
def test_a_checkpoint_of_other_training_is_refused_by_both_loops(members, field, changed):
    state = _checkpoint(members)
    configs = [_config(seed, **{field: changed}) for seed in range(members)]  # a pack's members share all but weights
    with pytest.raises(CheckpointError, match=f"was written for {field}="):
        train_members(configs, NullReporter(), resume=state)


@pytest.mark.parametrize("members", [1, 2], ids=["plain", "packed"])
def test_how_a_run_runs_and_is_evaluated_may_change_on_resume(members):
    """The log cadence and the evaluation are not what was trained: the resumed run continues
    exactly (its terms are the uninterrupted run's)."""
    whole = Recorder()
    train_members([_config(seed, log_every=1) for seed in range(members)], whole)
    changes = dict(log_every=1, eval=EvalConfig(recon_points=32, metrics=[], udr_points=16))
    resumed = Recorder()
    train_members([_config(seed, **changes) for seed in range(members)], resumed, resume=_checkpoint(members))
    assert resumed.terms == whole.terms[2:]


def test_a_plain_checkpoint_written_before_the_decoder_fields_still_resumes():
    state = dict(_checkpoint(1))
    saved = json.loads(state["config"])
    for name in ("decoder", "decoder_sigma", "decoder_sigma_learned"):
        del saved[name]
    state["config"] = json.dumps(saved)
    resumed = Recorder()
    train_members([_config()], resumed, resume=state)
    assert [step for step, _ in resumed.terms] == [4] and not resumed.failed
