"""Every trained model of the registry in mentor_ray's harness: two epochs on ``synth-tiny`` (finite losses,
valid metrics, the same seed giving the same run) and, for a model that reads item features, training with one
and with three modalities. A model's own tests are in ``test_model_<name>.py``."""

from __future__ import annotations

import math

import pytest

from mentor_ray.common import config, registry
from mentor_ray.training import trainer as train
from tests.model_checks import with_modalities

TINY = ["embedding_dim=8", "batch_size=64", "eval_batch_size=16", "max_epochs=2"]
TRAINED = [m for m, e in registry.MODELS.items() if e.trained]
# A model's own overrides of every tiny run
OWN = {"dualgnn": ["lr=1e-3"], "lattice": ["lattice_feat_dim=8"]}
# The two-epoch runs of a model other than one at its defaults: (overrides, loss terms every epoch reports, > 0)
RUNS = {
    "freedom": [(["modal_bpr_weight=1e-3"], {"modal_bpr"})],  # its default weight is 0 (MMRec's first grid value)
    "layergcn": [([f"dropout={p}"], set()) for p in (0.0, 0.2)],  # both kinds of dropout epoch
    "lgmrec": [([], {"bpr", "cl", "reg", "loss"})],
}
TWO_EPOCHS = [pytest.param(m, extra, terms, id="-".join([m, *extra]))
              for m in TRAINED for extra, terms in RUNS.get(m, [([], set())])]


def _fit(ds, variant: str, extra=()):
    cfg = config.make_config(flags={"variant": variant, "dataset": "synth-tiny"},
                             overrides=[*TINY, *OWN.get(variant, []), *extra])
    t = train.Trainer(cfg, ds=ds)
    assert isinstance(t.model, registry.MODELS[variant].load())
    return t, t.fit()


@pytest.mark.parametrize("variant, extra, terms", TWO_EPOCHS)
def test_two_epochs_on_synth_tiny_are_finite_and_repeatable(ds, variant, extra, terms):
    t, a = _fit(ds, variant, extra)
    assert a["epochs_run"] == 2
    for h in t.history:
        assert all(math.isfinite(v) for v in h["train"].values())
        assert all(h["train"].get(k, 0) > 0 for k in terms), h["train"]
    for split in ("valid", "test"):
        assert all(0.0 <= v <= 1.0 for v in a[split].values())
    _, b = _fit(ds, variant, extra)
    assert a["valid"] == b["valid"] and a["test"] == b["test"]


@pytest.mark.parametrize("n_mod", [1, 3])
@pytest.mark.parametrize("variant", [m for m in TRAINED if "features" in registry.MODELS[m].needs])
def test_trains_with_one_and_three_modalities(ds, variant, n_mod):
    t, s = _fit(with_modalities(ds, n_mod), variant, ["max_epochs=1"])
    assert all(math.isfinite(v) for v in t.history[0]["train"].values())
    assert all(0.0 <= v <= 1.0 for v in s["valid"].values())
