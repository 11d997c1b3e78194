"""Names shared across layers: the metrics, the selection metric, and the files of a checkpoint."""

KS = (5, 10, 20, 50)  # the cut-offs of Recall@K and NDCG@K (the paper reports 10 and 20)
METRIC_KINDS = ("recall", "ndcg")
METRICS = tuple(f"{m}@{k}" for m in METRIC_KINDS for k in KS)  # "recall@5", ..., "ndcg@50"
VALID_METRIC = "recall@20"  # selects the epoch, the point and the configuration; test never selects
REPORTED_METRIC = f"best_valid_{VALID_METRIC}"  # what a run reports to Tune: the best validation so far
STATE_FILE = "trainer_state.pt"  # in a checkpoint: the trainer's state, to resume
SUMMARY_FILE = "summary.json"  # in a checkpoint: the run's summary so far
