"""MMGCN (Wei et al., ACM MM 2019): one graph network per modality over the user-item graph, averaged."""

from mentor_ray.common.registry import ModelEntry

ENTRY = ModelEntry(
    name="mmgcn", display="MMGCN", group="multimodal", order=20, cls="mentor_ray.model.mmgcn:MMGCN",
    citation="Wei et al., ACM MM 2019",
    needs=("features",),  # builds its own mean-aggregation graph from the training pairs
    reads=("embedding_dim", "reg_weight"),  # three layers always, as MMRec's code (its n_layers is unused)
    # MMRec's configs/model/MMGCN.yaml lists grids for reg_weight [0, 1e-5, ..., 0.1] and learning_rate
    # [1e-4, 5e-4, 1e-3, 5e-3, 1e-2] and MMRec recommends no point (README, evaluation/README): the first
    # listed of each. Embedding 64, batch 2048: configs/overall.yaml (the config's already).
    defaults={"lr": 1e-4, "reg_weight": 0.0},
    hparams=("lr", "reg_weight"),
)
