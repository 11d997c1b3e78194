"""mentor_ray: a distributed, scale-out trainer for MENTOR (Xu et al., AAAI 2025).

Modules (each runnable as ``python -m mentor_ray.<name>`` where it has a command line):

- ``data``       MMRec-layout datasets: validation, Parquet cache, ``info`` and ``convert-diffmm``.
- ``synthetic``  ``synth-*`` stand-ins with planted structure, in the MMRec layout.
- ``graphs``     DGL graph stage: user-item graph and per-modality item kNN graphs, cached on disk.
- ``bench``      benchmarks written to ``docs/benchmarks.md``.
"""

import os as _os
import warnings as _warnings

# DGL picks its tensor backend at import time and prints a warning unless told.
_os.environ.setdefault("DGLBACKEND", "pytorch")

__version__ = "0.1.0"
# torch 2.2 warns on every CSR construction; CSR matmul is what we rely on, and it is tested.
_warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
# torch >= 2.12 deprecates DDP's broadcast_buffers; its replacement still syncs at init, and the
# models have no buffers to sync. broadcast_buffers=False is kept for torch 2.2.
_warnings.filterwarnings("ignore", message="`broadcast_buffers` is deprecated", category=FutureWarning)
