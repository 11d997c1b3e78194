"""MENTOR (Xu et al., AAAI 2025) and its ablations (the paper's Fig. 3 and Table 4 variants)."""

from mentor_ray.common.registry import ModelEntry, Setting

_ON = {"align_levels": 3, "feature_masking": True, "graph_perturbation": True}

ENTRY = ModelEntry(
    name="mentor", display="MENTOR", group="mentor", order=0, cls="mentor_ray.model.mentor:Mentor",
    citation="Xu et al., AAAI 2025",
    needs=("features", "ui_graph", "item_knn"),
    reads=("embedding_dim", "n_layers", "reg_weight", "dropout"),
    settings={
        "item_layers": Setting(1, "item-item graph layers (Eq. 6)", kind="whole", ge=0, le=64),
        "layer_combine": Setting("sum", "Eq. 3 sums layers 0..L (paper); mean divides by L + 1 (LightGCN)",
                                 kind="choice", choices=("sum", "mean")),
        "normalize_input": Setting(True, "L2-normalise layer-0 embeddings (authors' code)", kind="bool"),
        "lambda_align": Setting(0.1, "Eq. 9-16", ge=0, le=1e30),
        "align_stats": Setting("node", "Eq. 8 per node (paper) or whole matrix", kind="choice",
                               choices=("node", "matrix")),
        "lambda_f": Setting(1.5, "feature masking weight (Eq. 22)", ge=0, le=1e30),
        "lambda_g": Setting(1e-3, "graph perturbation weight (Eq. 22)", ge=0, le=1e30),
        "tau": Setting(0.2, "InfoNCE temperature (Eq. 21)", kind="temperature", gt=0, le=1e30),
        "infonce_scope": Setting("all", "Eq. 21 over all users and items, or the batch's users and positive "
                                 "items (SimGCL)", kind="choice", choices=("all", "batch")),
        "perturb_noise": Setting("uniform", "Eq. 18-19 noise", kind="choice", choices=("uniform", "simgcl")),
        "perturb_eps": Setting(1.0, "noise scale (uniform: U(0,1)*eps; simgcl: eps)", ge=0, le=1e30),
    },
    hparams=("dropout", "lambda_f", "lambda_g", "tau", "lambda_align"),  # the paper's grid
    variants={  # table order: the ablations, then the full model
        "mentor_fg": {"align_levels": 3},
        "mentor_f": {**_ON, "feature_masking": False},
        "mentor_g": {**_ON, "graph_perturbation": False},
        "mentor_base": {**_ON, "align_levels": 0},
        "mentor_l1": {**_ON, "align_levels": 1},
        "mentor_l2": {**_ON, "align_levels": 2},
        "mentor": _ON,
    },
    variant_display={"mentor_fg": "MENTOR_fg", "mentor_f": "MENTOR_f", "mentor_g": "MENTOR_g",
                     "mentor_base": "MENTOR_base", "mentor_l1": "MENTOR_L1", "mentor_l2": "MENTOR_L2"},
)
