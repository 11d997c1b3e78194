"""One typed configuration for training, with YAML presets and ``key=value`` overrides.

Layering, last wins: the defaults below (the paper's settings) < a preset (``--preset NAME`` from
``mentor_ray/presets/NAME.yaml``, or a path to a YAML file) < command-line flags < ``key=value``
overrides. Unknown keys and bad values fail with one line naming the key and what is allowed.

Types are strict where YAML's would surprise: a whole-number key takes whole numbers only (not ``true``,
``1.5`` or ``"64"``), a number key no ``true``/``false`` and no NaN or infinity; and every key whose value
sizes memory or lands in a fixed-width column has an upper bound (:data:`LIMITS`).

The model variant is one field, ``variant``; its switches (alignment levels, feature masking,
graph perturbation) are derived from it (:data:`VARIANTS`), so no combination can contradict it.
"""

from __future__ import annotations

import difflib
import logging
import numbers
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Sequence

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from mentor_ray.common import registry
from mentor_ray.common.errors import ConfigError, allowed_keys_text, shown
from mentor_ray.common.names import NAME_RULE, check_name
from mentor_ray.common.yamlio import load_yaml

PRESET_DIR = Path(__file__).resolve().parents[1] / "presets"

Variant = Literal[tuple(registry.VARIANT_MODELS)]  # every registered model and its variants


class VariantSpec(BaseModel):
    model_config = ConfigDict(frozen=True)
    model: str  # the registry name of the model
    align_levels: int = 0  # MENTOR: 0 none, 1 = L1, 2 = L1+L2, 3 = L1+L2+L3 (Eq. 9-16)
    feature_masking: bool = False  # MENTOR: Eq. 17
    graph_perturbation: bool = False  # MENTOR: Eq. 18-21

    @property
    def entry(self) -> registry.ModelEntry:
        return registry.MODELS[self.model]


VARIANTS: dict[str, VariantSpec] = {
    v: VariantSpec(model=entry.name, **switches) for v, (entry, switches) in registry.VARIANT_MODELS.items()
}
# Each variant's published settings where they differ from the defaults below (its registry entry's), applied
# whenever a config leaves the key out: under presets, flags and overrides, and in a config built from a dict.
VARIANT_DEFAULTS: dict[str, dict[str, Any]] = {
    v: registry.entry_of(v).all_defaults() for v in registry.VARIANT_MODELS
}
MENTOR_VARIANTS = [v for v, s in VARIANTS.items() if s.entry.group == "mentor"]
BASELINES = [v for v, s in VARIANTS.items() if s.entry.group != "mentor"]


def _role(role: str) -> dict[str, str]:
    return {"role": role}


def _is_bool(value: Any) -> bool:
    return type(value).__name__ in ("bool", "bool_")  # Python's and numpy's (not imported here)


def _whole(value: Any) -> Any:
    """A whole-number key takes whole numbers only: pydantic would read ``true`` as 1, ``2.0`` as 2 and
    ``"64"`` as 64, so a YAML slip (``batch_size: yes``) would silently train with batch size 1."""
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise ValueError(f"not a whole number ({type(value).__name__})")
    return int(value)


def _number(value: Any) -> Any:
    """A number key takes no ``true``/``false`` (pydantic reads them as 1.0 and 0.0); NaN and infinity are
    refused by the model's ``allow_inf_nan=False``. Text stays allowed: YAML 1.1 reads ``1e-3`` as a string."""
    if _is_bool(value):
        raise ValueError("not a number (bool)")
    return value


Whole = Annotated[int, BeforeValidator(_whole)]
Number = Annotated[float, BeforeValidator(_number)]

# Upper bounds of the keys that size memory, a thread pool or a fixed-width column. Generous (each is far
# past any setting the paper or this repository uses) but finite, so that a typo (1e8, 2**64) is one line at
# start-up rather than an out-of-memory kill, an overflow or a hang minutes into a run.
LIMITS = {
    "embedding_dim": 4096,  # every user and item row is this wide (paper: 64); 4096 x 1M nodes = 16 GB
    "n_layers": 64,  # each layer keeps a copy of all embeddings (paper: 2; LightGCN: 3)
    "item_layers": 64,  # as n_layers, over the item-item graph (paper: 1)
    "knn_k": 4096,  # the kNN graphs hold items x k edges per modality (paper: 40)
    "batch_size": 1 << 20,  # BPR triples per step, times embedding_dim per layer (paper: 2048)
    "eval_batch_size": 1 << 18,  # users scored at once: a users x items score matrix (default 4096)
    "infonce_chunk": 1 << 16,  # rows per InfoNCE block: a chunk x all-nodes similarity matrix (0: by device)
    "infonce_threads": 256,  # threads; no machine here has more cores
    "patience": 1_000_000,  # epochs; the results store keeps epoch counts as int32
    "max_epochs": 1_000_000,  # as patience
    "seed": 2**32 - 1,  # numpy's seeds (np.random.default_rng, RandomState) must fit 32 bits
}
# Rates, weights, temperatures and noise scales (the paper's are at most 1.5, lr 1e-4) meet float32 tensors,
# whose largest value is 3.4e38, after torch scales them (Adam's first step divides lr by 1 - beta1 = 0.1):
# lr=1e38 already stops Adam with a RuntimeError rather than a divergence. Up to this bound a silly value is
# allowed to diverge, which the trainer reports in one line (the divergence tests use lr=1e30).
MAX_WEIGHT = 1e30


class _Range(ValueError):
    """A bound the field's Field() constraints cannot say; its message is the key's whole allowed range."""


def _invertible(value: float) -> float:
    """A temperature: Eq. 21 divides by it in float32, so ``1 / tau`` must stay finite there (``tau=1e-300``
    overflowed inside torch, an internal error, rather than a config error naming the key)."""
    if value < 1 / MAX_WEIGHT:
        raise _Range(f"a finite number at least {1 / MAX_WEIGHT:g} and at most {MAX_WEIGHT:g} (InfoNCE divides by it "
                     "in float32)")
    return value


Temperature = Annotated[float, BeforeValidator(_number), AfterValidator(_invertible)]


class _SharedModelConfig(BaseModel):
    """The model keys that several models read (:data:`mentor_ray.common.registry.SHARED_MODEL_KEYS`);
    each model's own keys are added from its registry entry (:data:`ModelConfig`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    variant: Variant = Field("mentor", json_schema_extra=_role("run"))
    embedding_dim: Whole = Field(64, ge=1, le=LIMITS["embedding_dim"])
    n_layers: Whole = Field(2, ge=0, le=LIMITS["n_layers"], description="user-item graph layers L (Eq. 1-3)")
    reg_weight: Number = Field(1e-4, ge=0, le=MAX_WEIGHT,
                               description="lambda_E, L2 on the batch's layer-0 embeddings (Eq. 24)")
    dropout: Number = Field(0.5, ge=0, lt=1, description="MENTOR: feature-masking ratio p (Eq. 17); "
                            "LayerGCN, FREEDOM: the share of edges dropped each epoch")

    @model_validator(mode="before")
    @classmethod
    def _variant_defaults(cls, values: Any) -> Any:
        """A key the config leaves out takes its variant's published value (its registry entry's)."""
        if isinstance(values, dict):
            variant = values.get("variant", "mentor")
            if isinstance(variant, str) and variant in VARIANT_DEFAULTS:
                own = {k: v for k, v in VARIANT_DEFAULTS[variant].items() if k in cls.model_fields}
                return {**own, **values}
        return values

    @property
    def spec(self) -> VariantSpec:
        return VARIANTS[self.variant]

    @property
    def entry(self) -> registry.ModelEntry:
        return VARIANTS[self.variant].entry


_KINDS = {"number": Number, "whole": Whole, "temperature": Temperature, "bool": bool}


def _field(setting: registry.Setting) -> tuple[Any, Any]:
    """A registry :class:`~mentor_ray.common.registry.Setting` as a pydantic field (annotation, FieldInfo)."""
    kind = Literal[setting.choices] if setting.kind == "choice" else _KINDS[setting.kind]
    bounds = {b: getattr(setting, b) for b in ("ge", "gt", "le", "lt") if getattr(setting, b) is not None}
    return kind, Field(setting.default, description=setting.doc, **bounds)


# What defines the model and its loss: the shared keys plus every registered model's own (frozen: a model holds
# its own copy, which nothing can change under it).
ModelConfig = create_model("ModelConfig", __base__=_SharedModelConfig,
                           **{k: _field(s) for k, s in registry.own_settings().items()})


class TrainConfig(ModelConfig):
    """Every setting of a training run, flat (``key=value`` names any of them). Defaults are the paper's.

    Each key has one role (:func:`role_of`): the :class:`ModelConfig` keys are ``model``; the others
    say so in their field. ``run`` keys name the run; ``graph`` keys choose the graphs the model is
    given; ``optim`` keys change what is learned; ``budget`` is the epoch limit (a longer budget
    continues a run); ``runtime`` keys change speed and memory only, never results, so they are left
    out of run names, config hashes and resume checks.
    """

    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=True, allow_inf_nan=False)

    dataset: str = Field("synth-small", json_schema_extra=_role("run"))
    data_root: str | None = Field(None, json_schema_extra=_role("run"))
    seed: Whole = Field(0, ge=0, le=LIMITS["seed"], json_schema_extra=_role("run"))
    knn_k: Whole = Field(40, ge=1, le=LIMITS["knn_k"],
                         description="neighbours per item in each modality's kNN graph (Eq. 5)",
                         json_schema_extra=_role("graph"))
    knn_norm: Literal["row", "sym", "none"] = Field("row", json_schema_extra=_role("graph"))
    lr: Number = Field(1e-4, gt=0, le=MAX_WEIGHT, json_schema_extra=_role("optim"))
    batch_size: Whole = Field(2048, ge=1, le=LIMITS["batch_size"], json_schema_extra=_role("optim"))
    patience: Whole = Field(20, ge=1, le=LIMITS["patience"],
                            description="epochs without better validation Recall@20 before stopping",
                            json_schema_extra=_role("optim"))
    max_epochs: Whole = Field(1000, ge=0, le=LIMITS["max_epochs"], json_schema_extra=_role("budget"))
    infonce_chunk: Whole = Field(0, ge=0, le=LIMITS["infonce_chunk"],
                                 description="rows per chunk of the chunked InfoNCE (speed and memory only); 0: "
                                             "128 on the CPU, 512 on a GPU",
                                 json_schema_extra=_role("runtime"))
    infonce_threads: Whole = Field(2, ge=1, le=LIMITS["infonce_threads"],
                                   description="CPU threads running the InfoNCE blocks side by side",
                                   json_schema_extra=_role("runtime"))
    eval_batch_size: Whole = Field(4096, ge=1, le=LIMITS["eval_batch_size"], json_schema_extra=_role("runtime"))
    device: Literal["auto", "cpu", "cuda"] = Field("auto", json_schema_extra=_role("runtime"))

    @field_validator("dataset")
    @classmethod
    def _dataset_is_a_name(cls, value: str) -> str:
        try:
            return check_name(value, "dataset")
        except ConfigError:
            raise ValueError(NAME_RULE) from None  # pydantic turns it into the one-line key error

    def model_part(self) -> ModelConfig:
        """The frozen model config of this run."""
        return ModelConfig.model_validate(self.model_dump(include=set(ModelConfig.model_fields)))


ROLES = ("run", "model", "graph", "optim", "budget", "runtime")


def role_of(key: str) -> str:
    """The role of a config key (see :class:`TrainConfig`): ``variant`` names the run; every other key of
    :data:`ModelConfig` is a model key."""
    extra = TrainConfig.model_fields[key].json_schema_extra
    return extra["role"] if extra else "model"


def keys_with(*roles: str) -> tuple[str, ...]:
    """The config keys of the given roles, in field order."""
    return tuple(k for k in TrainConfig.model_fields if role_of(k) in roles)


def read_keys(variant: str) -> tuple[str, ...]:
    """The model, graph and optimisation keys a run of ``variant`` depends on (its registry entry's
    :meth:`~mentor_ray.common.registry.ModelEntry.read_keys`); an unknown variant: every such key."""
    if variant in registry.VARIANT_MODELS:
        return registry.entry_of(variant).read_keys()
    return tuple(k for k in TrainConfig.model_fields if role_of(k) in ("model", "graph", "optim"))


def result_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The settings that decide a run's results besides its dataset, variant and seed: the model, graph
    and optimisation keys its model reads (:func:`read_keys`). LightGCN's runs do not change identity when a
    MENTOR-only default does. Epoch budget and runtime keys are never among them."""
    keys = read_keys(config.get("variant", "mentor"))
    return {k: config[k] for k in keys if k in config}


def resume_settings(config: dict[str, Any]) -> dict[str, Any]:
    """What must match for a run to continue another: its run keys (dataset, variant, seed, ...) and
    :func:`result_settings`; not the epoch budget or runtime keys."""
    return {**{k: v for k, v in config.items() if k in TrainConfig.model_fields and role_of(k) == "run"},
            **result_settings(config)}


# 0.2 and 0.3 hashed every model, graph and optimisation key whichever model read them: these. Stores and run
# folders written then are found through :func:`legacy_result_settings` (results.py, ray_train.py).
LEGACY_RESULT_KEYS = (
    "embedding_dim", "n_layers", "item_layers", "layer_combine", "normalize_input", "reg_weight", "lambda_align",
    "align_stats", "dropout", "lambda_f", "lambda_g", "tau", "infonce_scope", "perturb_noise", "perturb_eps",
    "knn_k", "knn_norm", "lr", "batch_size", "patience",
)


def legacy_result_settings(config: dict[str, Any]) -> dict[str, Any]:
    """:func:`result_settings` as 0.2/0.3 computed it (every key of :data:`LEGACY_RESULT_KEYS`)."""
    return {k: config[k] for k in LEGACY_RESULT_KEYS if k in config}


def legacy_resume_settings(config: dict[str, Any]) -> dict[str, Any]:
    """:func:`resume_settings` as 0.2/0.3 computed it (run names of ``train --storage`` folders)."""
    run = ("dataset", "data_root", "seed", "variant")
    return {**{k: config[k] for k in run if k in config}, **legacy_result_settings(config)}




def _takes_text(annotation: Any) -> bool:
    """Whether a key's value is text: a ``str``, an optional one, or a ``Literal`` of strings."""
    if annotation is str:
        return True
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is Literal:
        return all(isinstance(a, str) for a in args)
    given = [a for a in args if a is not type(None)]
    return bool(given) and all(_takes_text(a) for a in given)


def parse_value(text: str, key: str | None = None) -> Any:
    """A command-line value of ``key``. A text key (a name, a path, one of a list of choices) takes the text
    as typed: YAML would read ``dataset=yes`` as true and ``data_root=~`` as null. Any other key's value is
    read as YAML (through :func:`~mentor_ray.common.yamlio.load_yaml`, so one line naming the override on a
    syntax error): 1e-3 -> float, true -> bool, 5 -> int."""
    field = TrainConfig.model_fields.get(key) if key else None
    if field is not None and _takes_text(field.annotation):
        return text if text or field.default is not None else None  # data_root= : unset, not "." (cwd)
    value = load_yaml("override", what=f"override {key or ''}={shown(text, 80, quote=False)}", text=text,
                      mapping=False)
    # YAML 1.1 reads "1e-3" as a string; accept it as the float a user means.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def check_keys(keys: Sequence[str], source: str) -> None:
    allowed = list(TrainConfig.model_fields)
    for key in keys:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError(f"{source}: unknown key {shown(key, 80)}; {hint}{allowed_keys_text(allowed, key)}")


def load_preset(name_or_path: str) -> dict[str, Any]:
    """The settings of ``--preset``: a YAML file, or (no suffix, no such file) the name of one in
    ``mentor_ray/presets/``; a name must be a name (``--preset ../x`` is never looked up outside it)."""
    path = Path(name_or_path)
    if path.is_dir():
        raise ConfigError(f"--preset {shown(name_or_path, quote=False)}: is a directory; give a YAML file of settings "
                          f"or a preset's name")
    if not path.is_file() and not path.suffix:
        path = PRESET_DIR / f"{check_name(name_or_path, '--preset')}.yaml"
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))
        raise ConfigError(f"--preset {shown(name_or_path, quote=False)}: no such preset or file (presets: {names})")
    raw = load_yaml(path)
    check_keys(list(raw), str(path))
    return raw


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {shown(item, 80)}: expected key=value, e.g. lambda_g=1e-3")
        check_keys([key], "override")
        out[key] = parse_value(value, key)
    return out


def make_config(
    preset: str | None = None, flags: dict[str, Any] | None = None, overrides: Sequence[str] = ()
) -> TrainConfig:
    """Defaults < the variant's defaults (its registry entry's) < preset < flags (None values ignored) <
    ``key=value``."""
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    layers = [(preset or "config", load_preset(preset) if preset else {}),
              *((f"--{k.replace('_', '-')}", {k: v}) for k, v in given.items()),
              ("override", parse_overrides(overrides))]
    for key, value in layers[-1][1].items():  # documented (overrides come last), but said: a flag was given in vain
        if key in given and given[key] != value:
            logging.getLogger(__name__).warning("%s=%s overrides --%s %s", key, shown(value, 60, quote=False),
                                                key.replace("_", "-"), shown(given[key], 60, quote=False))
    values: dict[str, Any] = {}
    for i, (source, layer) in enumerate(layers):
        later = {k for _, above in layers[i + 1:] for k in above}
        for key in layer.keys() & later:  # a value a later layer replaces is still checked, and named by its source
            validate({key: layer[key]}, source=source)
        values.update(layer)
    try:  # every layer's keys are known (load_preset, parse_overrides, the flags): the values are left to check
        return TrainConfig.model_validate(values)
    except ValidationError as exc:
        # the merged settings broke a rule: name the layer that set the key (the file, the flag or the override)
        key = ".".join(str(p) for p in exc.errors()[0]["loc"])
        source = next((src for src, layer in reversed(layers) if key in layer), "config")
        raise ConfigError(_value_message(exc, source)) from exc


def validate(values: dict[str, Any], source: str = "config") -> TrainConfig:
    check_keys(list(values), source)
    try:
        return TrainConfig.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_value_message(exc, source)) from exc


def _value_message(exc: ValidationError, source: str) -> str:
    """Name the key, the bad value (:func:`shown`) and what is allowed: the choices of a Literal, or the whole
    range of a number key (its type and every bound), whichever bound or type the value broke."""
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"])
    ctx = err.get("ctx") or {}
    field = TrainConfig.model_fields.get(key)
    numeric = _numeric_range(field) if field is not None else None
    if "expected" in ctx:
        allowed = ctx["expected"].replace("'", "")
    elif isinstance(ctx.get("error"), _Range):
        allowed = str(ctx["error"])
    elif numeric:
        allowed = numeric
    elif err["type"] == "value_error":  # a validator's own rule
        allowed = str(ctx.get("error", err["msg"]))
    else:
        allowed = err["msg"].lower()
    kind = getattr(field.annotation, "__name__", str(field.annotation)) if field else "?"
    return f"{source}: {key} = {shown(err.get('input'))} is not allowed ({kind}); allowed: {allowed}"


def _numeric_range(field: Any) -> str | None:
    """``a whole number at least 1 and at most 4096`` for an int or float key (None for any other)."""
    kind = {int: "a whole number", float: "a finite number"}.get(field.annotation)
    if kind is None:
        return None
    words = {"gt": "greater than", "ge": "at least", "lt": "less than", "le": "at most"}
    bounds = [f"{words[name]} {_plain(getattr(m, name))}" for m in field.metadata for name in words
              if getattr(m, name, None) is not None]
    return f"{kind} {' and '.join(bounds)}" if bounds else kind


def _plain(value: float) -> str:
    """A bound as typed: 4294967295, 1000000, 0.5 (not 4.29497e+09 or 1e+06)."""
    whole = isinstance(value, int) or (float(value).is_integer() and abs(value) < 1e16)
    return str(int(value)) if whole else f"{value:g}"
