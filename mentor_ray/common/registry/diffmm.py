"""DiffMM (Jiang et al., ACM MM 2024): per-modality diffusion-generated user-item graphs, cross-modal contrast."""

from mentor_ray.common.registry import ModelEntry, Setting

# Defaults: the authors' published TikTok command (github.com/HKUDS/DiffMM README: ``--data tiktok --reg 1e-4
# --ssl_reg 1e-2 --epoch 50 --trans 1 --e_loss 0.1 --cl_method 1``), the rest Params.py's parser defaults
# (lr 1e-3, batch 1024, latdim 64, gnn_layer 1, temp 0.5, keepRate 0.5, dims [1000], d_emb_size 10, steps 5,
# noise_scale 0.1, noise_min 1e-4, noise_max 0.02, sampling_steps 0, sampling_noise False, rebuild_k 1,
# ris_lambda 0.5, ris_adj_lambda 0.2, norm False). TikTok's, because TikTok is the real dataset the lead runs
# (the Baby and Sports commands are in docs/baselines/diffmm.md). The authors' code trains 50 epochs and has
# no early stopping; patience 20 is the harness's (the other baselines' MMRec stopping_step).
ENTRY = ModelEntry(
    name="diffmm", display="DiffMM", group="multimodal", order=100, cls="mentor_ray.model.diffmm:DiffMM",
    citation="Jiang et al., ACM MM 2024",
    needs=("features",),  # builds its own (self-looped) user-item graph and generates its modality graphs
    reads=("embedding_dim", "n_layers", "reg_weight", "dropout"),
    settings={
        "diffmm_ssl_reg": Setting(1e-2, "DiffMM: weight of the cross-modal contrastive loss (ssl_reg)",
                                  ge=0, le=1e30),
        # the authors' temp; MENTOR's key (same kind and bounds)
        "tau": Setting(0.5, "InfoNCE temperature (Eq. 21)", kind="temperature", gt=0, le=1e30),
        "diffmm_cl_method": Setting("main", "DiffMM: contrast each modality view with the main view ('main', "
                                    "cl_method 1) or the modality views pairwise ('modal', cl_method 0)",
                                    kind="choice", choices=("main", "modal")),
        "diffmm_trans": Setting("linear", "DiffMM: feature projection, Linear ('linear', trans 1) or "
                                "LeakyReLU(X W) ('matrix', trans 0)", kind="choice", choices=("linear", "matrix")),
        "diffmm_e_loss": Setting(0.1, "DiffMM: weight of the denoisers' modality-aware signal injection loss "
                                 "(e_loss)", ge=0, le=1e30),
        "diffmm_ris_lambda": Setting(0.5, "DiffMM: weight of the normalised modality mix added to the output "
                                     "(ris_lambda)", ge=0, le=1e30),
        "diffmm_ris_adj_lambda": Setting(0.2, "DiffMM: weight of the generated-graph propagation in each "
                                         "modality's embedding (ris_adj_lambda)", ge=0, le=1e30),
        "diffmm_rebuild_k": Setting(1, "DiffMM: items kept per user in each generated graph (rebuild_k)",
                                    kind="whole", ge=1, le=4096),
        "diffmm_steps": Setting(5, "DiffMM: diffusion steps (steps)", kind="whole", ge=2, le=1000),
        "diffmm_noise_scale": Setting(0.1, "DiffMM: noise scale of the beta schedule (noise_scale)",
                                      gt=0, le=1),
        "diffmm_noise_min": Setting(1e-4, "DiffMM: lower noise bound of the beta schedule (noise_min)",
                                    ge=0, lt=1),
        "diffmm_noise_max": Setting(0.02, "DiffMM: upper noise bound of the beta schedule (noise_max)",
                                    ge=0, lt=1),
        "diffmm_sampling_steps": Setting(0, "DiffMM: noising steps applied before generating (sampling_steps; "
                                         "at most diffmm_steps)", kind="whole", ge=0, le=1000),
        "diffmm_sampling_noise": Setting(False, "DiffMM: draw noise in each reverse step while generating "
                                         "(sampling_noise)", kind="bool"),
        "diffmm_hidden": Setting(1000, "DiffMM: width of the denoisers' hidden layer (dims [1000])",
                                 kind="whole", ge=1, le=65536),
        "diffmm_time_dim": Setting(10, "DiffMM: width of the denoisers' timestep embedding (d_emb_size)",
                                   kind="whole", ge=1, le=4096),
        "diffmm_norm": Setting(False, "DiffMM: L2-normalise the denoisers' input rows (norm)", kind="bool"),
    },
    # reg_weight: reg (squared Frobenius norms of the ID tables); dropout: the generated graphs' edge dropout,
    # 1 - keepRate; n_layers: gnn_layer. lr also drives the denoisers' Adam (the authors' one lr).
    defaults={"embedding_dim": 64, "n_layers": 1, "reg_weight": 1e-4, "dropout": 0.5, "lr": 1e-3,
              "batch_size": 1024, "patience": 20},
    hparams=("reg_weight", "diffmm_ssl_reg", "tau"),
)
