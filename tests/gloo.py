"""A test's function run as one gloo rank of a spawned process group (``torch.multiprocessing.spawn``)."""

from __future__ import annotations

import os
import sys
import traceback
from typing import Callable, NoReturn


def as_rank(body: Callable[[], None], rank: int, world: int, init_file: str) -> NoReturn:
    """Join the group of ``world`` ranks at ``file://init_file`` as ``rank``, run ``body``, wait for every rank,
    and exit the process: 0 when ``body`` returned, 1 (its traceback printed) when it raised."""
    import torch.distributed as dist

    # Loopback: gloo otherwise binds to the address of the machine's hostname, and where that does not
    # resolve (as on some CI machines) creating the process group hangs.
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    code = 1
    try:
        body()
        dist.barrier()
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        # Exit without tearing the process group down: ~ProcessGroupGloo can deadlock with its worker thread
        # over the GIL when DDP's reducer is freed at interpreter exit (pytorch #56297, #75097; seen here).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
