"""DualGNN (Wang et al., IEEE TMM 2021): per-modality GCNs fused per user, smoothed over a user co-occurrence graph."""

from mentor_ray.common.registry import ModelEntry, Setting

ENTRY = ModelEntry(
    name="dualgnn", display="DualGNN", group="multimodal", order=30, cls="mentor_ray.model.dualgnn:DualGNN",
    citation="Wang et al., IEEE TMM 2021",
    needs=("features", "ui_graph"),  # the user co-occurrence graph it builds itself from the training pairs
    reads=("embedding_dim", "n_layers", "reg_weight"),
    settings={
        # MMRec's models/dualgnn.py hard-codes self.k = 40 (and its preprocessing keeps 200 per user)
        "dualgnn_user_k": Setting(40, "DualGNN: co-occurring users each user aggregates (lists shorter than "
                                  "this are padded by resampling; at most 200 distinct)", kind="whole", ge=1, le=4096),
    },
    # MMRec: embedding 64 (and dim_latent = 64 hard-coded), two GCN hops (n_layers: 2 in DualGNN.yaml; the
    # model's GCN always runs two), batch 2048, patience 20 (overall.yaml). lr and reg_weight are grids in
    # DualGNN.yaml ([0.1, 0.01, 0.001, 1e-4, 1e-5] each) and MMRec recommends no point (README,
    # evaluation/README). reg_weight: the first listed; lr: overall.yaml's 1e-3 (also on the grid), since the
    # first listed, 0.1, is unstable on synth-tiny. aggr_mode's grid is ['add'] only: fixed.
    defaults={"n_layers": 2, "lr": 1e-3, "reg_weight": 0.1},
    hparams=("lr", "reg_weight"),
)
