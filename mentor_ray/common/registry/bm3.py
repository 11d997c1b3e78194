"""BM3 (Zhou et al., WWW 2023): bootstrapped latent views, no negative sampling (MMRec's version)."""

from mentor_ray.common.registry import ModelEntry, Setting

ENTRY = ModelEntry(
    name="bm3", display="BM3", group="multimodal", order=70, cls="mentor_ray.model.bm3:BM3",
    citation="Zhou et al., WWW 2023",
    needs=("features", "ui_graph"),
    reads=("embedding_dim", "n_layers", "reg_weight", "dropout"),
    settings={
        # MMRec's cl_weight (fixed in BM3.yaml): it weights the alignment and masked-feature terms
        "bm3_cl_weight": Setting(2.0, "BM3: weight of the modality alignment and masked-feature losses (MMRec "
                                 "cl_weight)", ge=0, le=1e30),
    },
    # MMRec's configs/model/BM3.yaml and configs/overall.yaml: embedding 64 (= feat_embed_dim), lr 1e-3,
    # batch 2048, stopping_step 20. The yaml lists grids for n_layers [1, 2], dropout [0.3, 0.5] and
    # reg_weight [0.1, 0.01]; MMRec recommends no point (README, evaluation/README), so the defaults are the
    # first listed. dropout: the target views' dropout ratio; reg_weight: the EmbLoss weight.
    defaults={"embedding_dim": 64, "n_layers": 1, "dropout": 0.3, "reg_weight": 0.1, "lr": 1e-3,
              "batch_size": 2048, "patience": 20},
    hparams=("n_layers", "dropout", "reg_weight"),
)
