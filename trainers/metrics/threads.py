"""The metrics' share of the CPU: torch's intra-op threads sized to the trial's.

Several metrics fit with torch (the logistic regressions of the BetaVAE score and of
explicitness, the linear SVMs of SAP) or size their own thread pools from torch's
(DCI fits its factors in ``torch.get_num_threads()`` threads). torch's default is one
thread per core of the machine; trials training beside a metric already use those
cores, and the metric's threads then wait on each other (oversubscription: a small
L-BFGS fit runs several times slower). :func:`metric_threads` runs the metrics on
the trial's share, ``TrainConfig.num_threads`` (the study sets it from
``resources.cpus``), and gives the caller back its own setting afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def metric_threads(num_threads: int) -> Iterator[None]:
    """Run the block on ``num_threads`` torch threads (0: leave torch's setting), then restore it."""
    if num_threads <= 0:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        # Restored even when the metric raises: the caller's threads are the caller's.
        torch.set_num_threads(previous)
