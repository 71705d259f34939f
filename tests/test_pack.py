"""Packed training equals K separate trainings (same init, data and noise), member by member."""

from __future__ import annotations

import os

import pytest
import torch
from scaffold import Recorder
from torch.utils._python_dispatch import TorchDispatchMode

from trainers.checkpoint import load_checkpoint, save_checkpoint
from trainers.config import EvalConfig, TrainConfig
from trainers.objectives import make_objective
from trainers.pack import check_pack, train_pack
from trainers.reporting import EstimateRequest, MemberStopped, NullReporter, TrainingDiverged
from trainers.train import train

# Float reassociation of batched (grouped) kernels only; a wrong stream or a
# shared gradient is off by orders of magnitude more.
#: Float32 tolerances.  The absolute one covers terms that are small differences of large
#: sums (a TC is log q(z) − Σ_d log q(z_d), each tens of nats over a batch): float32's
#: 6e-8 relative rounding of those sums leaves a few 1e-6 on the difference.
RTOL, ATOL = 2e-5, 1e-5
#: Where these tests train: the CPU in the suite; benchmarks/gpu_check.sh runs them again with
#: VAE_STUDY_TEST_DEVICE=cuda (packs against their unpacked twins on the GPU).
DEVICE = os.environ.get("VAE_STUDY_TEST_DEVICE", "cpu")
if DEVICE.startswith("cuda"):
    # TF32 convolutions round to 10 mantissa bits, far above the float32 tolerances here: the
    # twins are compared in true float32 (what a pack changes is kernel grouping, not precision).
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


def _config(seed: int, weights: dict | None = None, **overrides) -> TrainConfig:
    options = dict(
        variant="beta_vae",
        weights=weights or {},
        steps=5,
        batch_size=16,
        log_every=1,
        checkpoint_every=1,
        device=DEVICE,
        # Twins are compared in float32: a pack's bf16 casts by hand where autocast decides per op.
        precision="fp32",
        seed=seed,
        eval=EvalConfig(recon_points=32, metrics=[], udr_points=16),
    )
    options.update(overrides)
    return TrainConfig(**options)


def _assert_terms_close(packed: dict[str, float], unpacked: dict[str, float]) -> None:
    assert list(packed) == list(unpacked)
    for name in unpacked:
        assert packed[name] == pytest.approx(unpacked[name], rel=RTOL, abs=ATOL), name


def _assert_params_close(packed: torch.Tensor, unpacked: torch.Tensor, max_travel: float) -> None:
    """Equal to float tolerance, except where Adam amplified a rounding difference.

    Adam moves every element by about lr per step whatever its gradient's size, so
    an element whose gradient is rounding noise may move differently by up to the
    distance trained (``max_travel``); there are few such elements.  A wrong data
    stream, noise stream or gradient moves most elements differently.
    """
    off = ~torch.isclose(packed, unpacked, rtol=RTOL, atol=ATOL)
    assert off.float().mean() < 1e-3, f"{int(off.sum())} of {off.numel()} elements differ"
    assert (packed - unpacked).abs().max() <= 2 * max_travel


MEMBERS = {
    "beta_vae": [
        {"beta": {"schedule": "constant", "value": 1.0}},
        {"beta": {"schedule": "linear", "start": 0.0, "end": 8.0, "start_step": 0, "end_step": 4}},
        {"beta": {"schedule": "cyclical", "start": 0.0, "end": 4.0, "period": 2, "ramp_fraction": 0.5}},
    ],
    # The decomposition inside the loss (gradients through the minibatch estimator).
    "beta_tcvae": [{"beta": {"schedule": "constant", "value": b}} for b in (1.0, 6.0, 12.0)],
    # A derived weight (λ_d from λ_od) and extra terms.
    "dip_vae_ii": [{"lambda_od": {"schedule": "constant", "value": v}} for v in (1.0, 10.0, 50.0)],
}


@pytest.mark.parametrize("variant", list(MEMBERS))
def test_packed_members_match_their_unpacked_twins(variant):
    configs = [_config(seed, weights, variant=variant) for seed, weights in enumerate(MEMBERS[variant])]
    pack = Recorder()
    outcomes = train_pack(configs, pack)
    assert [k for k, _ in pack.ended] == [0, 1, 2] and not pack.failed
    for k, config in enumerate(configs):
        alone = Recorder()
        result = train(config, alone)
        for (step, terms), (packed_step, packed) in zip(alone.member_terms(), pack.member_terms(k), strict=True):
            assert packed_step == step
            _assert_terms_close(packed, terms)
        _assert_terms_close(outcomes[k].terms, result.terms)
        # Parameters after 4 steps, and Adam's moments: the member's slice is its own optimiser.
        packed_state, state = pack.states[4], alone.states[4]
        for name, value in state["model"].items():
            _assert_params_close(packed_state["params"][name][k], value, config.lr * 4)
        # Adam's moments after the first step, before Adam can amplify a rounding difference
        # (an element whose gradient is rounding noise moves by ±lr either way).
        first_packed, first = pack.states[1], alone.states[1]
        for i, moments in first["optimizers"]["model"]["state"].items():
            packed_moments = first_packed["optimizer"]["state"][i]
            # Rounding differences of a gradient scale with it: the floor is relative to the largest moment.
            floor = 1e-5 * float(moments["exp_avg"].abs().max())
            torch.testing.assert_close(packed_moments["exp_avg"][k], moments["exp_avg"], rtol=1e-4, atol=floor)
    # Members differ: the pack did not train one model three times.
    assert len({round(o.terms["recon"], 3) for o in outcomes}) == 3


def test_a_diverging_member_fails_alone_and_the_others_are_untouched():
    # β = 1e39 is infinite in float32: that member's loss is non-finite from step 0.
    weights = [{"beta": {"schedule": "constant", "value": v}} for v in (4.0, 1e39, 2.0)]
    configs = [_config(seed, w) for seed, w in enumerate(weights)]
    pack = Recorder()
    outcomes = train_pack(configs, pack)
    with pytest.raises(TrainingDiverged) as alone:
        train(configs[1], NullReporter())
    assert isinstance(outcomes[1], TrainingDiverged)
    assert (outcomes[1].step, outcomes[1].term) == (alone.value.step, alone.value.term) == (0, "loss")
    assert set(pack.failed) == {1} and [k for k, _ in pack.ended] == [0, 2]
    assert all(terms is None for _, terms in pack.member_terms(1))
    for k in (0, 2):
        _assert_terms_close(outcomes[k].terms, train(configs[k], NullReporter()).terms)


def test_a_resumed_pack_continues_exactly(tmp_path):
    configs = [_config(seed, steps=6, checkpoint_every=3) for seed in range(2)]
    whole = Recorder()
    expected = train_pack(configs, whole)
    path = save_checkpoint(tmp_path / "pack.pt", whole.states[3])
    resumed = Recorder()
    outcomes = train_pack(configs, resumed, resume=load_checkpoint(path))
    assert resumed.terms == whole.terms[3:]
    assert [o.terms for o in outcomes] == [o.terms for o in expected]


def test_members_write_unpacked_artifacts(tmp_path):
    configs = [_config(seed) for seed in range(2)]
    train_pack(configs, NullReporter(), output_dirs=[tmp_path / "a", tmp_path / "b"])
    # Member b's checkpoint is an unpacked trial's: it loads into the unpacked model.
    state = load_checkpoint(tmp_path / "b" / "model.pt")
    model = make_objective("beta_vae", {}, 2).build_model(10, 1, "code")
    model.load_state_dict(state["model"])
    assert state["step"] == 5 and "optimizers" not in state  # the final model: no optimiser state
    assert {p.name for p in (tmp_path / "a").iterdir()} >= {"model.pt", "codes.npz", "traversals.png", "metrics.json"}


def test_what_cannot_share_a_pack_is_named():
    with pytest.raises(ValueError, match=r"pack member 1: lr is 0\.001"):
        check_pack([_config(0), _config(1, lr=1e-3)])
    with pytest.raises(ValueError, match=r"pack member 1: variant"):
        check_pack([_config(0), _config(1, variant="vae")])
    with pytest.raises(ValueError, match=r"variant 'factor_vae' cannot be packed"):
        train_pack([_config(0, variant="factor_vae"), _config(1, variant="factor_vae")], NullReporter())
    kept = Recorder()
    train_pack([_config(0), _config(1)], kept)
    with pytest.raises(ValueError, match="checkpoint member 1 was written for seed=1"):
        train_pack([_config(0), _config(2)], NullReporter(), resume=kept.states[4])


class ConvolutionDtypes(TorchDispatchMode):
    """The dtype of every convolution and matrix product that runs (forward and backward)."""

    OPS = ("convolution", "convolution_backward", "addmm", "mm", "bmm")

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, torch.dtype]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in self.OPS:
            self.seen.append((name, args[0].dtype))
        return func(*args, **(kwargs or {}))


def test_bf16_packs_compute_their_networks_in_bf16_and_keep_the_terms_near_float32():
    configs = [_config(seed, steps=10, checkpoint_every=0) for seed in range(2)]
    fp32 = train_pack(configs, NullReporter())
    bf16_configs = [_config(s, steps=10, checkpoint_every=0, precision="bf16") for s in range(2)]
    with ConvolutionDtypes() as recorded:
        bf16 = train_pack(bf16_configs, NullReporter())
    # Training's network arithmetic is bf16 (autocast alone left vmapped convolutions in float32):
    # every backward convolution (training only; evaluation runs no backward pass) is bf16.
    backward = [dtype for name, dtype in recorded.seen if name == "convolution_backward"]
    assert backward and set(backward) == {torch.bfloat16}, backward
    for a, b in zip(fp32, bf16, strict=True):
        assert b.terms["recon"] == pytest.approx(a.terms["recon"], rel=0.02)
        assert b.terms["kl"] == pytest.approx(a.terms["kl"], rel=0.25, abs=0.05)


def test_compiled_networks_keep_the_terms_of_eager_ones():
    # Compilation reorders float arithmetic only; a few steps stay at float tolerance.
    eager = train(_config(0, steps=3, checkpoint_every=0), NullReporter())
    compiled = train(_config(0, steps=3, checkpoint_every=0, compile=True), NullReporter())
    for name, value in eager.terms.items():
        assert compiled.terms[name] == pytest.approx(value, rel=1e-4, abs=1e-5), name


class StopAtRung(Recorder):
    """Asks for estimates at ``rung`` and stops the members in ``stop`` there."""

    def __init__(self, rung: int, stop: set[int]) -> None:
        super().__init__()
        self.rung, self.stop, self.estimates = rung, stop, {}

    def estimates_wanted(self, step):
        return EstimateRequest(("recon", "kl"), recon_points=32, metric_points=100) if step == self.rung else None

    def on_estimates(self, step, estimates):
        self.estimates[step] = dict(estimates)
        return set(self.stop)


def test_a_member_stopped_at_a_rung_is_cut_out_and_the_others_train_on_as_alone(tmp_path):
    configs = [_config(seed, steps=6, checkpoint_every=2) for seed in range(3)]
    pack = StopAtRung(rung=2, stop={1})
    outcomes = train_pack(configs, pack)
    assert isinstance(outcomes[1], MemberStopped) and outcomes[1].step == 2
    assert sorted(pack.estimates[2]) == [0, 1, 2] and set(pack.estimates[2][0]) == {"recon", "kl"}
    assert [k for k, _ in pack.ended] == [0, 2]
    assert [step for step, terms in pack.member_terms(1) if terms is not None] == [1, 2]
    for k in (0, 2):  # a cut pack is still each member's own training
        alone = Recorder()
        result = train(configs[k], alone)
        for (_, terms), (_, packed) in zip(alone.member_terms(), pack.member_terms(k), strict=True):
            _assert_terms_close(packed, terms)
        _assert_terms_close(outcomes[k].terms, result.terms)
    # The checkpoint after the rung holds the cut: a resumed pack trains the two others only.
    path = save_checkpoint(tmp_path / "pack.pt", pack.states[4])
    resumed = Recorder()
    again = train_pack(configs, resumed, resume=load_checkpoint(path))
    assert isinstance(again[1], MemberStopped) and [k for k, _ in resumed.ended] == [0, 2]
    assert [o.terms for o in again if not isinstance(o, MemberStopped)] == [outcomes[0].terms, outcomes[2].terms]


def test_a_pack_whose_members_are_all_stopped_ends_and_so_does_a_stopped_run():
    configs = [_config(seed, steps=6, checkpoint_every=2) for seed in range(2)]
    pack = StopAtRung(rung=2, stop={0, 1})
    outcomes = train_pack(configs, pack)
    assert all(isinstance(o, MemberStopped) for o in outcomes) and not pack.ended
    assert max(step for step, _ in pack.terms) == 2 and not pack.states  # no checkpoint of a pack that ended
    alone = StopAtRung(rung=4, stop={0})
    with pytest.raises(MemberStopped):
        train(configs[0], alone)
    assert max(step for step, _ in alone.terms) == 4 and sorted(alone.states) == [2]
