"""VBPR (He and McAuley, AAAI 2016): matrix factorisation with item factors extended by projected features."""

from mentor_ray.common.registry import ModelEntry

ENTRY = ModelEntry(
    name="vbpr", display="VBPR", group="multimodal", order=10, cls="mentor_ray.model.vbpr:VBPR",
    citation="He and McAuley, AAAI 2016",
    needs=("features",),
    reads=("embedding_dim", "reg_weight"),
    # MMRec's configs/overall.yaml: embedding 64, lr 1e-3, batch 2048 (the last two the config's already).
    # reg_weight: configs/model/VBPR.yaml lists the grid [2.0, 1.0, 0.1, ..., 1e-5] and MMRec recommends
    # no value (README, evaluation/README): the first listed.
    defaults={"lr": 1e-3, "reg_weight": 2.0},
    hparams=("reg_weight",),
)
