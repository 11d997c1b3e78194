"""Fault injection for tests: hooks that kill a Ray Train worker the way a crash would."""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from pathlib import Path

import ray.cloudpickle

# Workers unpickle the hook; by value, so that they need not import this test package.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@dataclasses.dataclass
class KillOnce:
    """A ``batch_hook`` that SIGKILLs rank ``rank``'s process at (epoch, batch), once (``marker`` records it)."""

    epoch: int
    batch: int
    rank: int
    marker: str
    # Ray Train's controller collects reports (and so registers checkpoints) on a 2 s poll; a crash
    # right after a report can lose that report. Waiting past a few polls makes the restart begin
    # from the previous epoch's checkpoint deterministically.
    settle_s: float = 8.0

    def __call__(self, rank: int, epoch: int, batch: int) -> None:
        if (epoch, batch, rank) == (self.epoch, self.batch, self.rank) and not Path(self.marker).exists():
            time.sleep(self.settle_s)
            Path(self.marker).write_text(f"killed rank {rank} at epoch {epoch} batch {batch}\n")
            os.kill(os.getpid(), signal.SIGKILL)
