"""The model registry: every model mentor_ray trains is one entry here plus one module in ``mentor_ray/model``.

An entry (:class:`ModelEntry`) is a module of this package that defines ``ENTRY``; it is found by name,
without a list to edit (as timm's ``register_model``). It declares the model's name and Table 2 display
name, its row group, the class that implements it (imported only when a model is built, so nothing here
needs torch), what it needs from the data (:data:`NEEDS`), the shared keys it reads, its own settings
with their published defaults, and the axes of its published grid.

The config (:mod:`mentor_ray.common.config`) is built from the entries: its ``variant`` choices, its
model keys (the shared ones plus every entry's own) and each model's defaults. A run's identity (config
hash, run name, "is it recorded") covers only what its model reads (:func:`read_keys`).

Adding a model: ``mentor_ray/model/<name>.py`` (the class), ``mentor_ray/common/registry/<name>.py``
(``ENTRY``), ``tune_spaces/<name>_grid.yaml`` (its published grid); nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Literal

GROUPS = ("general", "multimodal", "mentor")  # Table 2's row groups, in the paper's order
NEEDS = {
    "features": "item feature files (at least one modality)",
    "ui_graph": "the normalised user-item adjacency (graph('ui'))",
    "item_knn": "one frozen item kNN graph per modality (graph('knn.<m>'); knn_k, knn_norm)",
}
# Keys every model may read, defined once in ModelConfig: a model lists those it reads in ``reads``.
SHARED_MODEL_KEYS = ("embedding_dim", "n_layers", "reg_weight", "dropout")
OPTIM_KEYS = ("lr", "batch_size", "patience")  # read by every trained model (the trainer applies them)
GRAPH_KEYS = ("knn_k", "knn_norm")  # read by a model that needs item_knn


@dataclass(frozen=True)
class Setting:
    """One key of a model's own settings: its published default, its type and its allowed values.

    ``kind``: ``number`` (a finite float), ``whole`` (an int), ``temperature`` (a float whose inverse must
    stay finite in float32), ``bool``, or ``choice`` (one of ``choices``). Bounds as pydantic's Field.
    Two entries may declare the same key only with the same kind, bounds and choices (their defaults may
    differ: each model's applies to its own runs)."""

    default: Any
    doc: str
    kind: Literal["number", "whole", "temperature", "bool", "choice"] = "number"
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[str, ...] = ()

    def shape(self) -> tuple:
        """What must agree between two entries declaring this key."""
        return (self.kind, self.ge, self.gt, self.le, self.lt, self.choices)


@dataclass(frozen=True)
class ModelEntry:
    """One model of the registry.

    Attributes:
        name: the model's ``variant`` name (lower case), e.g. ``freedom``.
        display: its name in tables, e.g. ``FREEDOM``.
        group: its Table 2 row group (:data:`GROUPS`).
        order: its position among all models in tables (the paper's row order; lower first).
        cls: ``"module:Class"`` of its :class:`~mentor_ray.model.base.Recommender`.
        citation: its paper, e.g. ``Zhou et al., ACM MM 2023``.
        needs: what it needs from the data (keys of :data:`NEEDS`).
        reads: the keys of :data:`SHARED_MODEL_KEYS` it reads.
        settings: its own keys (role ``model``), with its published defaults.
        defaults: its published values of shared, graph or optim keys, where they differ from the config's.
        hparams: the axes of its published grid (``tune_spaces/<name>_grid.yaml``).
        variants: the variant names of this model, in table order, each with its switches
            (:class:`~mentor_ray.common.config.VariantSpec` fields); empty: its own name only. When
            given, it must include the model's own name (the full model).
        trained: False for a model with nothing to train (MostPop): no optimiser, no negatives.
    """

    name: str
    display: str
    group: Literal["general", "multimodal", "mentor"]
    order: int
    cls: str
    citation: str = ""
    needs: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    settings: dict[str, Setting] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    hparams: tuple[str, ...] = ()
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    variant_display: dict[str, str] = field(default_factory=dict)
    trained: bool = True

    def __post_init__(self) -> None:
        where = f"model registry entry {self.name!r}"
        if self.group not in GROUPS:
            raise ValueError(f"{where}: group {self.group!r} is not one of {', '.join(GROUPS)}")
        if unknown := [n for n in self.needs if n not in NEEDS]:
            raise ValueError(f"{where}: needs {unknown[0]!r} is not one of {', '.join(NEEDS)}")
        if unknown := [k for k in self.reads if k not in SHARED_MODEL_KEYS]:
            raise ValueError(f"{where}: reads {unknown[0]!r}, not a shared key ({', '.join(SHARED_MODEL_KEYS)}); "
                             f"declare it under settings")

    @property
    def needs_graphs(self) -> bool:
        """Whether the trainer builds graphs for it (the user-item adjacency and the item kNN graphs)."""
        return "ui_graph" in self.needs or "item_knn" in self.needs

    def unmet(self, variant: str, dataset: str, modalities: list[str]) -> str | None:
        """Why ``dataset`` cannot train ``variant`` of this model (one line), or None."""
        if "features" in self.needs and not modalities:
            plain = ", ".join(e.name for e in MODELS.values() if "features" not in e.needs)
            return (f"variant {variant} ({self.display}) needs item feature files; dataset {dataset} has none "
                    f"(models that need none: {plain})")
        return None

    def read_keys(self) -> tuple[str, ...]:
        """Every config key the model's runs depend on besides dataset, variant and seed: the shared keys
        it reads, its own settings, the graph keys if it needs item kNN graphs, and the optim keys if trained."""
        return (*self.reads, *self.settings, *(GRAPH_KEYS if "item_knn" in self.needs else ()),
                *(OPTIM_KEYS if self.trained else ()))

    def all_defaults(self) -> dict[str, Any]:
        """Its published value of every key it sets: its settings' defaults and ``defaults``."""
        return {**{k: s.default for k, s in self.settings.items()}, **self.defaults}

    def load(self):
        """The model class (imports its module, and with it torch)."""
        module, _, name = self.cls.partition(":")
        return getattr(importlib.import_module(module), name)


def _discover() -> dict[str, ModelEntry]:
    entries = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        entry = getattr(importlib.import_module(f"{__name__}.{info.name}"), "ENTRY", None)
        if not isinstance(entry, ModelEntry):
            raise ValueError(f"{__name__}.{info.name}: defines no ENTRY (a ModelEntry)")
        entries.append(entry)
    entries.sort(key=lambda e: (GROUPS.index(e.group), e.order, e.name))
    out: dict[str, ModelEntry] = {}
    for e in entries:
        if e.name in out:
            raise ValueError(f"model registry: two entries named {e.name!r}")
        out[e.name] = e
    return out


MODELS: dict[str, ModelEntry] = _discover()  # name -> entry, in the paper's row order


def variants() -> dict[str, tuple[ModelEntry, dict[str, Any]]]:
    """Every variant name -> (its model's entry, its switches), in row order (a model, then its variants)."""
    out: dict[str, tuple[ModelEntry, dict[str, Any]]] = {}
    for e in MODELS.values():
        for v, switches in (e.variants or {e.name: {}}).items():  # in the entry's order
            if v in out:
                raise ValueError(f"model registry: variant {v!r} is declared twice")
            out[v] = (e, switches)
        if e.name not in out:
            raise ValueError(f"model registry entry {e.name!r}: its variants must include its own name")
    return out


VARIANT_MODELS = variants()


def entry_of(variant: str) -> ModelEntry:
    """The registry entry of ``variant`` (a model name or one of its variants)."""
    try:
        return VARIANT_MODELS[variant][0]
    except KeyError:
        raise KeyError(f"unknown variant {variant!r}; known: {', '.join(VARIANT_MODELS)}") from None


def display_name(variant: str) -> str:
    entry = entry_of(variant)
    return entry.variant_display.get(variant, entry.display if variant == entry.name else variant)


def own_settings() -> dict[str, Setting]:
    """Every entry's own settings, once per key, checked for agreement between entries."""
    out: dict[str, Setting] = {}
    owner: dict[str, str] = {}
    for e in MODELS.values():
        for key, s in e.settings.items():
            if key in SHARED_MODEL_KEYS or key in OPTIM_KEYS or key in GRAPH_KEYS:
                raise ValueError(f"model registry entry {e.name!r}: setting {key!r} is a shared key; list it "
                                 f"under reads (and its default under defaults)")
            if key in out and out[key].shape() != s.shape():
                raise ValueError(f"model registry: {e.name!r} declares {key!r} as {s.shape()}, but "
                                 f"{owner[key]!r} as {out[key].shape()}; rename one (e.g. {e.name}_{key})")
            out.setdefault(key, s)
            owner.setdefault(key, e.name)
    return out


def hparams() -> tuple[str, ...]:
    """The union of every model's published grid axes that are numbers, in row order (the results store's
    float columns; a choice axis such as DualGNN's aggregation is in each run's config only)."""
    numeric = [h for e in MODELS.values() for h in e.hparams
               if h not in e.settings or e.settings[h].kind in ("number", "whole", "temperature")]
    return tuple(dict.fromkeys(numeric))
