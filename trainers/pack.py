"""Packed training: K members of one structure trained in one step, ``train_pack(configs, report)``.

A disentanglement study is thousands of small models that differ only in loss
weights, schedules and seeds; one 64×64 VAE at batch 64 leaves an accelerator
mostly idle.  A pack stacks the K members' parameters
(``torch.func.stack_module_state``) and runs the network once for all of them with
``torch.func.vmap`` over ``functional_call`` (a batched convolution is a grouped
one), maps the objective's pure :meth:`~trainers.objectives.base.GaussianObjective.pass_terms`
over the members with each member's weights in force, and takes one Adam step on
the stacked tensors.  Adam is elementwise, and the members' parameters are
disjoint, so the sum of the members' losses gives each member exactly its own
gradient and update: a pack is K independent trainings, up to the float
reassociation of batched kernels.

Each member keeps its own streams (``stream_seeds(seed)``: init, data, noise), so
member k of a pack sees the same initial weights, batches and noise as the
unpacked trial with its config; ``tests/test_pack.py`` checks parameters and terms
against unpacked twins.  A member whose term becomes non-finite is reported failed
(its first bad step and term, as :class:`~trainers.reporting.TrainingDiverged`) and
masked out of the loss and the update; the others go on.  Checkpoints hold every
member; each finished member gets the same artifacts (and an unpacked-format
``model.pt``) as an unpacked trial.

At a rung (the reporter's ``estimates_wanted``) each running member is estimated
(:func:`trainers.evaluation.estimate`) and the reporter names the members to stop
(Pareto stopping, ``study.pareto_stopping``): those are cut out of the pack.  Every later
step runs the network, the batch and the noise for the remaining members only (their
parameters gathered from the stacked tensors, so gradients reach only their slices), and
the pack's cost falls with its size; a pack whose members are all stopped ends.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from trainers.checkpoint import CheckpointError, check_fit
from trainers.config import TrainConfig
from trainers.data import make_dataset
from trainers.evaluation import estimate, finish_member
from trainers.objectives import Objective
from trainers.precision import resolve_precision
from trainers.reporting import (
    MemberStopped,
    Reporter,
    TermAccumulator,
    TrainingDiverged,
    TrainResult,
    checkpoint_due,
)
from trainers.setup import make_run_objective, resolve_device, stream_seeds

#: Fields every member of a pack shares (they differ in ``weights`` and ``seed``).
SHARED_FIELDS = (
    "variant",
    "variant_options",
    "dataset",
    "dataset_options",
    "latent_dim",
    "kernels",
    "decoder",
    "decoder_sigma",
    "decoder_sigma_learned",
    "estimator",
    "steps",
    "batch_size",
    "lr",
    "device",
    "precision",
    "compile",
    "num_threads",
    "log_every",
    "checkpoint_every",
    "eval",
)


def check_pack(configs: Sequence[TrainConfig]) -> None:
    """Raise ``ValueError`` naming the member and field that cannot share a pack."""
    if not configs:
        raise ValueError("pack: needs at least one member")
    first = configs[0].to_dict()
    for index, config in enumerate(configs[1:], start=1):
        other = config.to_dict()
        for name in SHARED_FIELDS:
            if other[name] != first[name]:
                raise ValueError(
                    f"pack member {index}: {name} is {other[name]!r}, member 0 has {first[name]!r} "
                    "(members share everything but weights and seed)"
                )


class StackedVAE:
    """K Gaussian VAEs of one architecture as stacked parameters ``[K, ...]``.

    ``encode``/``decode`` take and return tensors with a leading member dimension.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        params, buffers = stack_module_state(list(members))
        if buffers:
            raise ValueError("pack: models with buffers cannot be stacked")
        self.params: dict[str, torch.Tensor] = params
        self.size = len(members)
        # The template only lends its forward code to functional_call: no storage.
        self.template = copy.deepcopy(members[0]).to("meta")

    def _part(self, prefix: str, params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name[len(prefix) :]: value for name, value in params.items() if name.startswith(prefix)}

    def encode(
        self, params: Mapping[str, torch.Tensor], x: torch.Tensor, precision: str = "fp32"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        def one(p: dict[str, torch.Tensor], xi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            out = functional_call(self.template.encoder, *_in_precision(p, xi, precision))
            return out.mu.float(), out.logvar.float()

        return vmap(one)(self._part("encoder.", params), x)

    def decode(self, params: Mapping[str, torch.Tensor], z: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
        def one(p: dict[str, torch.Tensor], zi: torch.Tensor) -> torch.Tensor:
            return functional_call(self.template.decoder, *_in_precision(p, zi, precision)).float()

        return vmap(one)(self._part("decoder.", params), z)

    def member(self, index: int, build: Callable[[], nn.Module]) -> nn.Module:
        """Member ``index`` as a standalone module (a copy; for evaluation and artifacts)."""
        module = build()
        module.load_state_dict({name: value[index].detach().clone() for name, value in self.params.items()})
        return module.to(next(iter(self.params.values())).device)


def _in_precision(
    params: dict[str, torch.Tensor], x: torch.Tensor, precision: str
) -> tuple[dict[str, torch.Tensor], tuple[torch.Tensor]]:
    """One member's network arguments in the compute precision.

    Autocast does not reach inside ``vmap`` (a vmapped convolution runs in float32 under
    it, on the CPU at least), so bf16 is applied by hand: weights and input cast to
    bfloat16 (gradients flow back to the float32 weights through the cast), outputs
    returned to float32 by the caller, as autocast does for an unpacked network."""
    if precision != "bf16":
        return params, (x,)
    return {name: value.to(torch.bfloat16) for name, value in params.items()}, (x.to(torch.bfloat16),)


def pack_forward(
    stacked: StackedVAE,
    objective: Objective,
    params: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    eps: torch.Tensor,
    weights: Mapping[str, torch.Tensor],
    precision: str,
) -> dict[str, torch.Tensor]:
    """Every member's terms of one step, each ``[K]``: the pure, compilable part of a pack step.

    ``eps`` is the members' reparameterisation noise ``[K, B, d]``; ``weights`` the
    weights in force, each ``[K]``.  Mirrors ``GaussianObjective.forward_terms``:
    networks in ``precision`` (:func:`_in_precision`), latents and terms in float32.
    """
    mu, logvar = stacked.encode(params, x, precision)
    z = mu + torch.exp(0.5 * logvar) * eps
    logits = stacked.decode(params, z, precision)
    terms = vmap(objective.pass_terms)(x, mu, logvar, z, logits, dict(weights))
    terms.update(weights)
    return terms


def train_pack(
    configs: Sequence[TrainConfig],
    report: Reporter,
    resume: Mapping[str, Any] | None = None,
    output_dirs: Sequence[str | Path] | None = None,
) -> list[TrainResult | TrainingDiverged | MemberStopped]:
    """Train the members of ``configs`` together; see the module docstring.

    Returns, per member, its held-out :class:`TrainResult`, the :class:`TrainingDiverged`
    that failed it or the :class:`MemberStopped` that cut it out at a rung.
    """
    configs = list(configs)
    for config in configs:
        config.validate()
    check_pack(configs)
    shared = configs[0]
    size = len(configs)
    device = resolve_device(shared.device)
    if shared.num_threads:
        torch.set_num_threads(shared.num_threads)
    data = make_dataset(shared.dataset, **shared.dataset_options)
    objectives = [make_run_objective(c, data) for c in configs]
    objective = objectives[0]
    if not objective.packable:
        raise ValueError(f"pack_size: variant {shared.variant!r} cannot be packed (it is not a single-pass objective)")

    def build() -> nn.Module:
        return objective.new_model(shared.latent_dim, data.observation_shape[0], shared.kernels)

    members = []
    seeds = [stream_seeds(c.seed) for c in configs]
    for member_seeds in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(member_seeds["init"])
            members.append(build())
    stacked = StackedVAE([m.to(device) for m in members])
    del members
    params = stacked.params
    optimizer = torch.optim.Adam(params.values(), lr=shared.lr, betas=(0.9, 0.999), eps=1e-8)
    data_rngs = [torch.Generator().manual_seed(s["data"]) for s in seeds]
    noise_rngs = [torch.Generator(device=device).manual_seed(s["noise"]) for s in seeds]
    failed: dict[int, TrainingDiverged] = {}
    stopped: dict[int, MemberStopped] = {}
    start = 0
    if resume is not None:
        start, failed, stopped = _restore(resume, configs, params, optimizer, data_rngs, noise_rngs)

    forward = pack_forward
    if shared.compile:
        forward = torch.compile(pack_forward, fullgraph=False, dynamic=False)
    latent = (shared.batch_size, shared.latent_dim)

    def next_batch(members: Sequence[int]) -> torch.Tensor:
        factors = [data.sample_factors(shared.batch_size, data_rngs[k]) for k in members]
        if data.deterministic_observations:
            # One render for the whole pack, on the device; the factor streams stay per member.
            x = data.observations(torch.cat(factors), device)
            return x.reshape(len(members), shared.batch_size, *x.shape[1:])
        return torch.stack([data.observations(f, device, data_rngs[k]) for f, k in zip(factors, members, strict=True)])

    precision = resolve_precision(shared.precision, device)
    accumulator = TermAccumulator(size)
    alive = torch.tensor([k not in failed for k in range(size)], device=device)
    # The members still trained: a member stopped at a rung is cut out of every step after it.
    active = [k for k in range(size) if k not in stopped]
    index = torch.tensor(active, device=device)  # rebuilt only on a cut: a host-to-device copy
    began = time.perf_counter()
    done = start
    for step in range(start, shared.steps):
        cut = len(active) < size
        # Cut members are left out of the batch, the noise, the network and the loss: the pack's
        # cost falls with them.  Their slices of the stacked tensors stay (zero gradients).
        run_params = {name: value.index_select(0, index) for name, value in params.items()} if cut else params
        x = next_batch(active)
        eps = torch.stack([torch.randn(latent, generator=noise_rngs[k], device=device) for k in active])
        step_weights = [objectives[k].weights_at(step) for k in active]
        weights = {
            name: torch.tensor([w[name] for w in step_weights], dtype=torch.float32, device=device)
            for name in step_weights[0]
        }
        terms = forward(stacked, objective, run_params, x, eps, weights, precision)
        running = alive.index_select(0, index) if cut else alive
        optimizer.zero_grad(set_to_none=True)
        torch.where(running, terms["loss"], torch.zeros_like(terms["loss"])).sum().backward()
        if failed:
            # A failed member's NaNs stay in its own slice; keep them out of Adam's arithmetic too.
            for p in params.values():
                p.grad = torch.where(alive.view(-1, *([1] * (p.dim() - 1))), p.grad, torch.zeros_like(p.grad))
        optimizer.step()
        if cut:  # the accumulator keeps every member's place; a cut member's terms are zeros
            zeros = torch.zeros(size, device=device)
            terms = {n: zeros.index_copy(0, index, v.detach().float()) for n, v in terms.items()}
        accumulator.add(step, terms)
        done = step + 1
        if done % shared.log_every == 0 or done == shared.steps:
            means, diverged = accumulator.pop_members()
            for member, error in diverged.items():
                if member not in failed and member not in stopped:
                    failed[member] = error
                    alive[member] = False
                    report.on_member_failed(member, error)
            report.on_terms(done, [None if k in failed or k in stopped else means[k] for k in range(size)])
        request = report.estimates_wanted(done) if done < shared.steps else None
        if request is not None:
            going = [k for k in active if k not in failed]
            estimates = {
                k: estimate(stacked.member(k, build), objectives[k], data, configs[k], device, request, done)
                for k in going
            }
            for k in sorted(report.on_estimates(done, estimates) & set(going)):
                stopped[k] = MemberStopped(done)
            active = [k for k in range(size) if k not in stopped]
            index = torch.tensor(active, device=device)
            if all(k in failed for k in active):
                break  # every member stopped or failed: nothing left to train
        if checkpoint_due(report, done, shared.checkpoint_every, shared.steps):
            state = pack_state(done, configs, params, optimizer, data_rngs, noise_rngs, failed, stopped)
            report.on_checkpoint(done, state)
    train_seconds = time.perf_counter() - began
    images = (done - start) * shared.batch_size

    outcomes: list[TrainResult | TrainingDiverged | MemberStopped] = []
    for k, config in enumerate(configs):
        if k in failed or k in stopped:
            outcomes.append(failed[k] if k in failed else stopped[k])
            continue
        # The pack's wall time is every member's: each member trained at the pack's step rate.
        out = output_dirs[k] if output_dirs is not None else None
        model = stacked.member(k, build)
        result = finish_member(k, model, objectives[k], data, config, device, report, train_seconds, images, out)
        outcomes.append(result)
    return outcomes


def pack_state(
    step: int,
    configs: Sequence[TrainConfig],
    params: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    data_rngs: Sequence[torch.Generator],
    noise_rngs: Sequence[torch.Generator],
    failed: Mapping[int, TrainingDiverged],
    stopped: Mapping[int, MemberStopped] | None = None,
) -> dict[str, Any]:
    """Every member's training state (``weights_only``-loadable; tensors copied), with the
    members that failed and those stopped at a rung (cut out of the pack)."""
    return {
        "step": step,
        "pack": json.dumps([c.to_dict() for c in configs], sort_keys=True),
        "params": {name: value.detach().clone() for name, value in params.items()},
        "optimizer": copy.deepcopy(optimizer.state_dict()),
        "data_rngs": [g.get_state() for g in data_rngs],
        "noise_rngs": [g.get_state() for g in noise_rngs],
        "failed": json.dumps({str(k): [e.step, e.term] for k, e in failed.items()}),
        "stopped": json.dumps({str(k): e.step for k, e in (stopped or {}).items()}),
    }


def _restore(
    state: Mapping[str, Any],
    configs: Sequence[TrainConfig],
    params: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    data_rngs: Sequence[torch.Generator],
    noise_rngs: Sequence[torch.Generator],
) -> tuple[int, dict[int, TrainingDiverged], dict[int, MemberStopped]]:
    """Load ``state`` (from :func:`pack_state`) into the pack; its step, failed and stopped members.  A
    state that does not fit (:func:`~trainers.checkpoint.check_fit`, member by member) raises
    :class:`CheckpointError`."""
    try:
        saved = json.loads(state["pack"])
        if len(saved) != len(configs):
            raise CheckpointError(f"checkpoint holds a pack of {len(saved)} members, this run has {len(configs)}")
        for index, (old, config) in enumerate(zip(saved, configs, strict=True)):
            check_fit(old, config, f"checkpoint member {index}")
        with torch.no_grad():
            for name, value in params.items():
                value.copy_(state["params"][name])
        optimizer.load_state_dict(state["optimizer"])
        for rng, saved_rng in zip(data_rngs, state["data_rngs"], strict=True):
            rng.set_state(saved_rng)
        for rng, saved_rng in zip(noise_rngs, state["noise_rngs"], strict=True):
            rng.set_state(saved_rng)
        failed = {int(k): TrainingDiverged(step, term) for k, (step, term) in json.loads(state["failed"]).items()}
        # Checkpoints written before Pareto stopping have no stopped members.
        stopped = {int(k): MemberStopped(step) for k, step in json.loads(state.get("stopped", "{}")).items()}
        return int(state["step"]), failed, stopped
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        if isinstance(error, CheckpointError):
            raise
        raise CheckpointError(f"checkpoint does not fit this pack: {type(error).__name__}: {error}") from None
