"""LATTICE (Zhang et al., ACM MM 2021): LightGCN plus item IDs propagated over a learned multimodal item graph."""

from mentor_ray.common.registry import ModelEntry, Setting

ENTRY = ModelEntry(
    name="lattice", display="LATTICE", group="multimodal", order=40, cls="mentor_ray.model.lattice:Lattice",
    citation="Zhang et al., ACM MM 2021",
    needs=("features",),  # builds its own graphs: a self-loop user-item graph and cosine-weighted kNN graphs
    reads=("embedding_dim", "n_layers", "reg_weight"),
    settings={
        # MMRec's configs/model/LATTICE.yaml: n_layers: 1 (item-graph layers), lambda_coeff: 0.9, knn_k: 10,
        # feat_embed_dim: 64 (knn_k is not the shared key: that one sizes the trainer's kNN graphs, which
        # LATTICE does not use)
        "item_layers": Setting(1, "item-item graph layers (MENTOR: Eq. 6; LATTICE: hops over its item graph)",
                               kind="whole", ge=0, le=64),
        "lattice_lambda": Setting(0.9, "LATTICE: weight of the frozen feature graph in the item graph "
                                  "(MMRec's lambda_coeff)", ge=0, le=1),
        "lattice_knn_k": Setting(10, "LATTICE: neighbours per item in its item graphs (capped at the item count)",
                                 kind="whole", ge=1, le=4096),
        "lattice_feat_dim": Setting(64, "LATTICE: width of the projected features its learned graph compares "
                                    "(MMRec's feat_embed_dim)", kind="whole", ge=1, le=4096),
    },
    # MMRec: weight_size [64, 64] (2 user-item layers), embedding 64, batch 2048, patience 20 (overall.yaml);
    # lr and reg_weight are grids in LATTICE.yaml ([1e-4, 5e-4, 1e-3, 5e-3], [0, 1e-5, 1e-4, 1e-3]) and MMRec
    # recommends no point (README, evaluation/README): the first listed of each.
    defaults={"n_layers": 2, "lr": 1e-4, "reg_weight": 0.0},
    hparams=("lr", "reg_weight"),
)
