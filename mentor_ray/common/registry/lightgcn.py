"""LightGCN (He et al., SIGIR 2020): ID embeddings propagated over the user-item graph, layers averaged."""

from mentor_ray.common.registry import ModelEntry

ENTRY = ModelEntry(
    name="lightgcn", display="LightGCN", group="general", order=20, cls="mentor_ray.model.baselines:LightGCN",
    citation="He et al., SIGIR 2020",
    needs=("ui_graph",),
    reads=("embedding_dim", "n_layers", "reg_weight"),
    defaults={"lr": 1e-3, "n_layers": 3},  # the paper's 3 layers, MMRec's learning rate
    hparams=("lr", "n_layers", "reg_weight"),
)
