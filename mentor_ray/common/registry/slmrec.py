"""SLMRec (Tao et al., IEEE TMM 2022): per-modality LightGCN, fused, with in-batch InfoNCE and FAC contrast."""

from mentor_ray.common.registry import ModelEntry, Setting

# Defaults: MMRec's configs/model/SLMRec.yaml, then configs/overall.yaml (batch 2048, stopping_step 20). The
# yaml's fixed values: recdim 64 (embedding_dim), layer_num 3 (n_layers), temp 0.2 (tau), weight_decay 1e-4
# (slmrec_weight_decay), ssl_task FAC; init xavier, adj_type pre, mm_fusion_mode concat are what the model
# does (the alternatives fail in MMRec: docs/baselines/slmrec.md); dropout_rate 0.3 serves only the FD/FM
# tasks, not implemented, so nothing reads it. Its grid lists learning_rate, ssl_temp, ssl_alpha and reg;
# MMRec recommends no point (README, evaluation/README), so those defaults are the first values listed.
ENTRY = ModelEntry(
    name="slmrec", display="SLMRec", group="multimodal", order=60, cls="mentor_ray.model.slmrec:SLMRec",
    citation="Tao et al., IEEE TMM 2022",
    needs=("features", "ui_graph"),
    reads=("embedding_dim", "n_layers"),
    settings={
        # MMRec's temp: the main in-batch InfoNCE's temperature; MENTOR's key (same kind and bounds)
        "tau": Setting(0.2, "InfoNCE temperature (Eq. 21)", kind="temperature", gt=0, le=1e30),
        "slmrec_ssl_temp": Setting(0.1, "SLMRec: temperature of the FAC contrastive terms (MMRec ssl_temp)",
                                   kind="temperature", gt=0, le=1e30),
        "slmrec_ssl_alpha": Setting(0.01, "SLMRec: weight of the FAC loss (MMRec ssl_alpha)", ge=0, le=1e30),
        # MMRec's reg (a grid axis of SLMRec.yaml) is read by its SLMRec nowhere (no L2 term): no setting
        "slmrec_weight_decay": Setting(1e-4, "SLMRec: MMRec's Adam weight_decay on every parameter, as a loss "
                                       "term (w/2)|theta|^2", ge=0, le=1e30),
        "slmrec_ssl_task": Setting("FAC", "SLMRec: the self-supervised task (MMRec ssl_task; FAC only)",
                                   kind="choice", choices=("FAC",)),
    },
    defaults={"embedding_dim": 64, "n_layers": 3, "lr": 1e-4, "batch_size": 2048, "patience": 20},
    hparams=("lr", "slmrec_ssl_temp", "slmrec_ssl_alpha"),
)
