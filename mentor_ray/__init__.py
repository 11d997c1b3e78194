"""mentor_ray: a distributed, scale-out trainer for MENTOR (Xu et al., AAAI 2025).

The library is in subpackages (``common``, ``datasets``, ``model``, ``training``, ``sweep``, ``report``,
``benchmarks``); each command of the ``mentor-ray`` console script is a module at the top of the package
(``mentor-ray <command>`` or ``python -m mentor_ray.<command>``; the list: ``mentor-ray --help``).
How the parts fit together: ``docs/architecture.md``.
"""

import os as _os
import warnings as _warnings

# DGL picks its tensor backend at import time and prints a warning unless told.
_os.environ.setdefault("DGLBACKEND", "pytorch")

__version__ = "0.5.3"
# torch 2.2 warns on every CSR construction; CSR matmul is what we rely on, and it is tested.
_warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
# torch >= 2.12 deprecates DDP's broadcast_buffers; its replacement still syncs at init, and the
# models have no buffers to sync. broadcast_buffers=False is kept for torch 2.2.
_warnings.filterwarnings("ignore", message="`broadcast_buffers` is deprecated", category=FutureWarning)
