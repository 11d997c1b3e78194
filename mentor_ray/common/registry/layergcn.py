"""LayerGCN (Zhou et al., ICDE 2023): layer-refined graph convolution over a degree-pruned user-item graph."""

from mentor_ray.common.registry import ModelEntry

ENTRY = ModelEntry(
    name="layergcn", display="LayerGCN", group="general", order=30, cls="mentor_ray.model.layergcn:LayerGCN",
    citation="Zhou et al., ICDE 2023",
    needs=("ui_graph",),
    reads=("embedding_dim", "n_layers", "reg_weight", "dropout"),
    # MMRec's configs/model/LayerGCN.yaml and configs/overall.yaml: embedding 64, n_layers [4] (one value),
    # lr 1e-3, batch 2048. The yaml lists grids for reg_weight [1e-2, 1e-3, 1e-4, 1e-5] and dropout
    # [0.0, 0.1, 0.2]; MMRec recommends no point (README, evaluation/README), so the defaults are the first listed.
    defaults={"lr": 1e-3, "n_layers": 4, "reg_weight": 1e-2, "dropout": 0.0},
    hparams=("dropout", "reg_weight"),
)
