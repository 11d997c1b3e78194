"""MMSSL (Wei et al., WWW 2023): adversarial modality user-item graphs and cross-modal contrast (authors' code)."""

from mentor_ray.common.registry import ModelEntry, Setting

# Defaults: the authors' code (github.com/HKUDS/MMSSL, MMSSL/utility/parser.py). Its README runs every dataset
# (Amazon-Baby, Amazon-Sports, TikTok, Allrecipes) with `python main.py --dataset {DATASET}`, i.e. the
# parser's defaults, so they are the defaults for every dataset here: embed_size 64 (embedding_dim),
# weight_size [64, 64] (n_layers 2: one propagation layer per entry), drop_rate 0.2 (dropout), regs[0] 1e-5
# (reg_weight), lr 0.00055, batch_size 1024; early_stopping_patience is 7 there, but the harness's protocol
# (and the grid) uses 20. Their other keys read by the computation are the mmssl_* settings and tau.
_RATE = dict(ge=0, le=1e30)
_DROP = dict(ge=0, lt=1)
ENTRY = ModelEntry(
    name="mmssl", display="MMSSL", group="multimodal", order=80, cls="mentor_ray.model.mmssl:MMSSL",
    citation="Wei et al., WWW 2023",
    needs=("features",),  # builds its own graphs (row-normalised bipartite ones and the generated ones)
    reads=("embedding_dim", "n_layers", "reg_weight", "dropout"),
    settings={
        # the contrastive temperature (the authors' tau); MENTOR's key, same kind and bounds
        "tau": Setting(0.5, "InfoNCE temperature (Eq. 21)", kind="temperature", gt=0, le=1e30),
        "mmssl_cl_weight": Setting(0.03, "MMSSL: weight of the cross-modal contrastive loss (cl_rate)", **_RATE),
        "mmssl_adv_weight": Setting(1e-4, "MMSSL: weight of the generator's adversarial term (G_rate)", **_RATE),
        "mmssl_feat_reg": Setting(1e-5, "MMSSL: L2 weight on the aggregated feature tables (feat_reg_decay)",
                                  **_RATE),
        "mmssl_model_cat": Setting(0.55, "MMSSL: weight of the normalised feature aggregates added to the "
                                   "representations (model_cat_rate)", **_RATE),
        "mmssl_id_cat": Setting(0.36, "MMSSL: weight of the fused modality ID views added to the ID embeddings "
                                "(id_cat_rate)", **_RATE),
        "mmssl_heads": Setting(4, "MMSSL: attention heads (head_num; only W_cat's height)", kind="whole", ge=1,
                               le=64),
        "mmssl_d_lr": Setting(3e-4, "MMSSL: the critic's Adam learning rate (D_lr; betas 0.5, 0.9)", gt=0, le=1e30),
        "mmssl_d_dropout1": Setting(0.31, "MMSSL: the critic's first dropout ratio (G_drop1)", **_DROP),
        "mmssl_d_dropout2": Setting(0.5, "MMSSL: the critic's second dropout ratio (G_drop2)", **_DROP),
        "mmssl_gp_weight": Setting(1.0, "MMSSL: gradient-penalty weight (gp_rate; times the code's 0.3)", **_RATE),
        "mmssl_gumbel_scale": Setting(0.002, "MMSSL: Gumbel noise scale on the real rows (log_log_scale / "
                                      "real_data_tau = 1e-5 / 0.005)", **_RATE),
        "mmssl_ui_pre_scale": Setting(100.0, "MMSSL: weight of the score rows in the real rows (ui_pre_scale)",
                                      **_RATE),
        "mmssl_rebuild_every": Setting(1, "MMSSL: batches between rebuilds of the generated graphs (T)",
                                       kind="whole", ge=1, le=1 << 20),
        "mmssl_topk_rate": Setting(1e-4, "MMSSL: items gathered per user and batch for the generated graphs, as "
                                   "a fraction of the items, rounded down (m_topk_rate)", ge=0, le=1),
    },
    defaults={"embedding_dim": 64, "n_layers": 2, "dropout": 0.2, "reg_weight": 1e-5, "lr": 5.5e-4,
              "batch_size": 1024, "patience": 20},
    hparams=("lr", "mmssl_adv_weight"),
)
