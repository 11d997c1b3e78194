"""MF-BPR (Rendle et al., UAI 2009): matrix factorisation trained with BPR."""

from mentor_ray.common.registry import ModelEntry

ENTRY = ModelEntry(
    name="mf_bpr", display="MF-BPR", group="general", order=10, cls="mentor_ray.model.baselines:MFBPR",
    citation="Rendle et al., UAI 2009",
    reads=("embedding_dim", "reg_weight"),
    defaults={"lr": 1e-3},  # MMRec's learning rate
    hparams=("lr", "reg_weight"),
)
