"""LGMRec (Guo et al., AAAI 2024): local graph embeddings plus global hypergraph embeddings (MMRec's version)."""

from mentor_ray.common.registry import ModelEntry, Setting

# Defaults: MMRec's configs/model/LGMRec.yaml, whose lists hold one value each (its uncommented "baby"
# block; the yaml keeps sports and clothing values as comments: docs/baselines/lgmrec.md), then
# configs/overall.yaml (lr 1e-3, batch 2048, stopping_step 20, embedding 64).
ENTRY = ModelEntry(
    name="lgmrec", display="LGMRec", group="multimodal", order=90, cls="mentor_ray.model.lgmrec:LGMRec",
    citation="Guo et al., AAAI 2024",
    needs=("features", "ui_graph"),
    reads=("embedding_dim", "n_layers", "reg_weight", "dropout"),
    settings={
        "lgmrec_mm_layers": Setting(2, "LGMRec: user-item layers of the modality embeddings (MMRec n_mm_layers)",
                                    kind="whole", ge=0, le=64),
        "lgmrec_hyper_layers": Setting(1, "LGMRec: hypergraph layers (MMRec n_hyper_layer)", kind="whole",
                                       ge=1, le=64),
        "lgmrec_hyper_num": Setting(4, "LGMRec: number of hyperedges (MMRec hyper_num)", kind="whole",
                                    ge=1, le=4096),
        "lgmrec_alpha": Setting(0.3, "LGMRec: weight of the global (hypergraph) embeddings (MMRec alpha)",
                                ge=0, le=1e30),
        "lgmrec_cl_weight": Setting(1e-4, "LGMRec: weight of the hypergraph contrastive loss (MMRec cl_weight)",
                                    ge=0, le=1e30),
        # MMRec hard-codes 0.2 (self.tau) for the Gumbel softmax and the contrastive loss; MENTOR's key
        "tau": Setting(0.2, "InfoNCE temperature (Eq. 21)", kind="temperature", gt=0, le=1e30),
    },
    # dropout: the hyperedge dropout ratio, MMRec's 1 - keep_rate (keep_rate 0.5); n_layers: n_ui_layers
    defaults={"embedding_dim": 64, "n_layers": 2, "reg_weight": 1e-6, "dropout": 0.5, "lr": 1e-3,
              "batch_size": 2048, "patience": 20},
    hparams=("n_layers", "lgmrec_mm_layers", "lgmrec_hyper_layers", "lgmrec_hyper_num", "dropout",
             "lgmrec_alpha", "lgmrec_cl_weight", "reg_weight"),
)
