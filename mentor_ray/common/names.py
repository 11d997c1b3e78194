"""Names shared across layers: the metrics, the selection metric, and the files of a checkpoint."""

from __future__ import annotations

import re

from mentor_ray.common.errors import ConfigError

KS = (5, 10, 20, 50)  # the cut-offs of Recall@K and NDCG@K (the paper reports 10 and 20)
METRIC_KINDS = ("recall", "ndcg")
METRICS = tuple(f"{m}@{k}" for m in METRIC_KINDS for k in KS)  # "recall@5", ..., "ndcg@50"
# the metrics whose per-user test values a run keeps, for the paired tests over users (the leaderboard's columns)
USER_METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
VALID_METRIC = "recall@20"  # selects the epoch, the point and the configuration; test never selects
REPORTED_METRIC = f"best_valid_{VALID_METRIC}"  # what a run reports to Tune: the best validation so far
STATE_FILE = "trainer_state.pt"  # in a checkpoint: the trainer's state, to resume
SUMMARY_FILE = "summary.json"  # in a checkpoint: the run's summary so far
CHECKSUM_FILE = "checksums.json"  # in a checkpoint: sha256 of the state file, written after it

# Run, sweep and dataset names become folder and file names under --storage, --results and the data
# root: no path separators, no leading dot (so no "..").
NAME_RULE = "letters, digits and . _ + = - (not first), at most 128 characters, no / and no leading dot"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]{0,127}")


def check_name(value: str, what: str) -> str:
    """``value`` if it is safe as one path component, else a :class:`ConfigError` naming ``what``."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ConfigError(f"{what} {value!r}: not allowed as a name; allowed: {NAME_RULE}")
    return value
