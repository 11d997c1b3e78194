"""One typed configuration for training, with YAML presets and ``key=value`` overrides.

Layering, last wins: the defaults below (the paper's settings) < a preset (``--preset NAME`` from
``mentor_ray/presets/NAME.yaml``, or a path to a YAML file) < command-line flags < ``key=value``
overrides. Unknown keys and bad values fail with one line naming the key and what is allowed.

The model variant is one field, ``variant``; its switches (alignment levels, feature masking,
graph perturbation) are derived from it (:data:`VARIANTS`), so no combination can contradict it.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mentor_ray.common.errors import ConfigError
from mentor_ray.common.names import NAME_RULE, check_name

PRESET_DIR = Path(__file__).resolve().parents[1] / "presets"

Variant = Literal[
    "mentor", "mentor_f", "mentor_g", "mentor_fg", "mentor_base", "mentor_l1", "mentor_l2",
    "lightgcn", "mf_bpr", "most_pop",
]


class VariantSpec(BaseModel):
    model_config = ConfigDict(frozen=True)
    model: Literal["mentor", "lightgcn", "mf_bpr", "most_pop"]
    align_levels: int = 0  # 0 none, 1 = L1, 2 = L1+L2, 3 = L1+L2+L3 (Eq. 9-16)
    feature_masking: bool = False  # Eq. 17
    graph_perturbation: bool = False  # Eq. 18-21


VARIANTS: dict[str, VariantSpec] = {
    "mentor": VariantSpec(model="mentor", align_levels=3, feature_masking=True, graph_perturbation=True),
    "mentor_f": VariantSpec(model="mentor", align_levels=3, feature_masking=False, graph_perturbation=True),
    "mentor_g": VariantSpec(model="mentor", align_levels=3, feature_masking=True, graph_perturbation=False),
    "mentor_fg": VariantSpec(model="mentor", align_levels=3),
    "mentor_base": VariantSpec(model="mentor", align_levels=0, feature_masking=True, graph_perturbation=True),
    "mentor_l1": VariantSpec(model="mentor", align_levels=1, feature_masking=True, graph_perturbation=True),
    "mentor_l2": VariantSpec(model="mentor", align_levels=2, feature_masking=True, graph_perturbation=True),
    "lightgcn": VariantSpec(model="lightgcn"),
    "mf_bpr": VariantSpec(model="mf_bpr"),
    "most_pop": VariantSpec(model="most_pop"),
}
# Baselines' own published defaults where they differ from MENTOR's (applied under presets,
# flags and overrides): LightGCN (He et al. 2020) and MF-BPR train with lr 1e-3; LightGCN uses 3 layers.
VARIANT_DEFAULTS: dict[str, dict[str, Any]] = {
    "lightgcn": {"lr": 1e-3, "n_layers": 3},
    "mf_bpr": {"lr": 1e-3},
}
MENTOR_VARIANTS = [v for v, s in VARIANTS.items() if s.model == "mentor"]
BASELINES = [v for v, s in VARIANTS.items() if s.model != "mentor"]


def _role(role: str) -> dict[str, str]:
    return {"role": role}


class ModelConfig(BaseModel):
    """What defines the model and its loss: everything :func:`mentor_ray.model.build_model` reads.

    Frozen: a model holds its own copy, which nothing can change under it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    variant: Variant = "mentor"
    embedding_dim: int = Field(64, ge=1)
    n_layers: int = Field(2, ge=0, description="user-item graph layers L (Eq. 1-3)")
    item_layers: int = Field(1, ge=0, description="item-item graph layers (Eq. 6)")
    layer_combine: Literal["sum", "mean"] = Field(
        "sum", description="Eq. 3 sums layers 0..L (paper); mean divides by L + 1 (LightGCN)"
    )
    normalize_input: bool = Field(True, description="L2-normalise layer-0 embeddings (authors' code)")
    reg_weight: float = Field(1e-4, ge=0, description="lambda_E, L2 on the batch's layer-0 embeddings (Eq. 24)")
    lambda_align: float = Field(0.1, ge=0, description="Eq. 9-16")
    align_stats: Literal["node", "matrix"] = Field("node", description="Eq. 8 per node (paper) or whole matrix")
    dropout: float = Field(0.5, ge=0, lt=1, description="feature-masking ratio p (Eq. 17)")
    lambda_f: float = Field(1.5, ge=0, description="feature masking weight (Eq. 22)")
    lambda_g: float = Field(1e-3, ge=0, description="graph perturbation weight (Eq. 22)")
    tau: float = Field(0.2, gt=0, description="InfoNCE temperature (Eq. 21)")
    infonce_scope: Literal["all", "batch"] = Field(
        "all", description="Eq. 21 over all users and items, or the batch's users and positive items (SimGCL)"
    )
    perturb_noise: Literal["uniform", "simgcl"] = Field("uniform", description="Eq. 18-19 noise")
    perturb_eps: float = Field(1.0, ge=0, description="noise scale (uniform: U(0,1)*eps; simgcl: eps)")

    @property
    def spec(self) -> VariantSpec:
        return VARIANTS[self.variant]


class TrainConfig(ModelConfig):
    """Every setting of a training run, flat (``key=value`` names any of them). Defaults are the paper's.

    Each key has one role (:func:`role_of`): the :class:`ModelConfig` keys are ``model``; the others
    say so in their field. ``run`` keys name the run; ``graph`` keys choose the graphs the model is
    given; ``optim`` keys change what is learned; ``budget`` is the epoch limit (a longer budget
    continues a run); ``runtime`` keys change speed and memory only, never results, so they are left
    out of run names, config hashes and resume checks.
    """

    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=True)

    dataset: str = Field("synth-small", json_schema_extra=_role("run"))
    data_root: str | None = Field(None, json_schema_extra=_role("run"))
    seed: int = Field(0, ge=0, json_schema_extra=_role("run"))
    knn_k: int = Field(40, ge=1, description="neighbours per item in each modality's kNN graph (Eq. 5)",
                       json_schema_extra=_role("graph"))
    knn_norm: Literal["row", "sym", "none"] = Field("row", json_schema_extra=_role("graph"))
    lr: float = Field(1e-4, gt=0, json_schema_extra=_role("optim"))
    batch_size: int = Field(2048, ge=1, json_schema_extra=_role("optim"))
    patience: int = Field(20, ge=1, description="epochs without better validation Recall@20 before stopping",
                          json_schema_extra=_role("optim"))
    max_epochs: int = Field(1000, ge=0, json_schema_extra=_role("budget"))
    infonce_chunk: int = Field(512, ge=1, description="rows per chunk of the chunked InfoNCE (memory only)",
                               json_schema_extra=_role("runtime"))
    infonce_threads: int = Field(2, ge=1, description="CPU threads running the InfoNCE blocks side by side",
                                 json_schema_extra=_role("runtime"))
    eval_batch_size: int = Field(4096, ge=1, json_schema_extra=_role("runtime"))
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
    """The role of a config key (see :class:`TrainConfig`)."""
    if key in ModelConfig.model_fields:
        return "model"
    return TrainConfig.model_fields[key].json_schema_extra["role"]


def keys_with(*roles: str) -> tuple[str, ...]:
    """The config keys of the given roles, in field order."""
    return tuple(k for k in TrainConfig.model_fields if role_of(k) in roles)


def result_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The settings that decide a run's results besides its dataset, variant and seed: model, graph
    and optimisation keys. Epoch budget and runtime keys are not among them."""
    return {k: v for k, v in config.items() if k in TrainConfig.model_fields
            and role_of(k) in ("model", "graph", "optim") and k != "variant"}


def resume_settings(config: dict[str, Any]) -> dict[str, Any]:
    """What must match for a run to continue another: all but the epoch budget and runtime keys."""
    return {k: v for k, v in config.items() if k in TrainConfig.model_fields
            and role_of(k) not in ("budget", "runtime")}




def parse_value(text: str) -> Any:
    """A command-line value as YAML would read it: 1e-3 -> float, true -> bool, abc -> str."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
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
            raise ConfigError(f"{source}: unknown key '{key}'; {hint}allowed keys: {', '.join(allowed)}")


def load_preset(name_or_path: str) -> dict[str, Any]:
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESET_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))
        raise ConfigError(f"--preset {name_or_path}: no such preset or file (presets: {names})")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, found {type(raw).__name__}")
    check_keys(list(raw), str(path))
    return raw


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override '{item}': expected key=value, e.g. lambda_g=1e-3")
        check_keys([key], "override")
        out[key] = parse_value(value)
    return out


def make_config(
    preset: str | None = None, flags: dict[str, Any] | None = None, overrides: Sequence[str] = ()
) -> TrainConfig:
    """Defaults < the variant's defaults < preset < flags (None values ignored) < ``key=value``."""
    values: dict[str, Any] = {}
    if preset:
        values.update(load_preset(preset))
    values.update({k: v for k, v in (flags or {}).items() if v is not None})
    values.update(parse_overrides(overrides))
    variant = values.get("variant", TrainConfig.model_fields["variant"].default)
    values = {**VARIANT_DEFAULTS.get(variant, {}), **values}
    return validate(values, source="override" if overrides else (preset or "config"))


def validate(values: dict[str, Any], source: str = "config") -> TrainConfig:
    check_keys(list(values), source)
    try:
        return TrainConfig.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_value_message(exc, source)) from exc


def _value_message(exc: ValidationError, source: str) -> str:
    """Name the key, the bad value and what is allowed (the choices of a Literal, or the bound)."""
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"])
    ctx = err.get("ctx") or {}
    if "expected" in ctx:
        allowed = ctx["expected"].replace("'", "")
    elif err["type"] == "value_error":  # a validator's own rule
        allowed = str(ctx.get("error", err["msg"]))
    elif ctx:
        words = {"gt": "greater than", "ge": "at least", "lt": "less than", "le": "at most"}
        allowed = ", ".join(f"{words.get(k, k.replace('_', ' '))} {v:g}" if isinstance(v, (int, float))
                            else f"{words.get(k, k)} {v}" for k, v in ctx.items())
    else:
        allowed = err["msg"].lower()
    field = TrainConfig.model_fields.get(key)
    kind = getattr(field.annotation, "__name__", str(field.annotation)) if field else "?"
    return f"{source}: {key} = {err.get('input')!r} is not allowed ({kind}); allowed: {allowed}"
