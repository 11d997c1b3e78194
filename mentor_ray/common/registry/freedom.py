"""FREEDOM (Zhou and Shen, ACM MM 2023): a frozen multimodal item graph, a degree-pruned user-item graph."""

from mentor_ray.common.registry import ModelEntry, Setting

ENTRY = ModelEntry(
    name="freedom", display="FREEDOM", group="multimodal", order=50, cls="mentor_ray.model.freedom:Freedom",
    citation="Zhou and Shen, ACM MM 2023",
    needs=("features", "ui_graph", "item_knn"),
    reads=("embedding_dim", "n_layers", "dropout"),
    settings={
        # MMRec's n_mm_layers; the same key, kind and bounds as MENTOR's item_layers.
        "item_layers": Setting(1, "item-item graph layers (Eq. 6)", kind="whole", ge=0, le=64),
        # MMRec's reg_weight: it weights the modalities' BPR terms, not an L2 penalty, so not the shared key.
        "modal_bpr_weight": Setting(0.0, "FREEDOM: weight of the per-modality feature BPR terms (MMRec's "
                                    "reg_weight)", ge=0, le=1e30),
        "mm_image_weight": Setting(0.1, "FREEDOM: the first modality's share of the frozen item graph (the "
                                   "others share the rest equally)", ge=0, le=1),
    },
    # MMRec's configs/model/FREEDOM.yaml and configs/overall.yaml: embedding 64, lr 1e-3, batch 2048,
    # n_ui_layers 2, n_mm_layers 1, knn_k 10 (its kNN normalisation gives 1/k per edge: knn_norm row),
    # mm_image_weight 0.1. The yaml lists grids for dropout [0.8, 0.9] and reg_weight [0, 1e-5, 1e-4, 1e-3];
    # MMRec recommends no point (README, evaluation/README), so the defaults are the first listed.
    defaults={"lr": 1e-3, "n_layers": 2, "dropout": 0.8, "knn_k": 10, "knn_norm": "row"},
    hparams=("dropout", "modal_bpr_weight"),
)
