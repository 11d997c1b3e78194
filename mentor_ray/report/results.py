"""The results store: every finished trial and final run as rows of one Parquet dataset.

One fixed pyarrow schema (:data:`SCHEMA`), long format: a row per (run, split, metric, K); one file
per run, ``<results>/<run_id>.parquet``, written atomically, so a resumed sweep never duplicates rows.
:func:`record` writes a run's summary, :func:`read_results` reads the store back (filtered by column
values), file by file: a corrupted file is skipped with a one-line warning naming it, and a run found
in several files (a copied file) is counted once. Statuses, columns and file handling:
``docs/architecture.md`` (*Results store*).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WrapValidator,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError

from mentor_ray.common import embeddings
from mentor_ray.common.config import legacy_result_settings, read_keys, result_settings, resume_settings
from mentor_ray.common.errors import MentorRayError, keys_at, shown
from mentor_ray.common.io import atomic_path, sha256_json
from mentor_ray.common.names import KS, METRIC_KINDS, METRICS, USER_METRICS
from mentor_ray.common.registry import hparams
from mentor_ray.common.runtime import code_version

log = logging.getLogger(__name__)

ROLES = ("search", "final", "ablation")
HPARAMS = hparams()  # every registered model's published grid axes, as columns (null where a model has none)
STATUSES = ("completed", "stopped_early", "failed")
# why a run ended, as recorded (column stop_reason): a completed run's own rule (the trainer's
# Trainer.stop_reason), the scheduler that stopped a search trial early (the sweep's, from ASHA's ledger and the
# budget's), or its failure; null in stores written before 0.5.1, whose reason mentor_ray.report.select infers
STOP_REASONS = {"completed": ("early_stopping", "max_epochs", "evaluation_only"), "stopped_early": ("asha", "budget"),
                "failed": ("failed",)}
# a file without these (a run's identity and its measurements, there since the first schema) is not a run file
REQUIRED = ("run_id", "dataset", "variant", "role", "config_hash", "seed", "split", "metric", "k", "value")
FIX = "delete it, then re-run the sweep with --resume to redo that run"

SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("sweep", pa.string()),
        ("dataset", pa.string()),
        ("synthetic", pa.bool_()),
        ("variant", pa.string()),
        ("role", pa.string()),
        ("config_hash", pa.string()),
        *[(h, pa.float64()) for h in HPARAMS],
        ("config_json", pa.string()),
        ("seed", pa.int64()),
        ("split", pa.string()),
        ("metric", pa.string()),
        ("k", pa.int32()),
        ("value", pa.float64()),
        ("best_epoch", pa.int32()),
        ("epochs_run", pa.int32()),
        ("seconds_per_epoch", pa.float64()),
        ("peak_memory_mb", pa.float64()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("valid_curve", pa.list_(pa.float64())),
        ("wall_seconds", pa.float64()),
        ("device", pa.string()),
        ("world_size", pa.int32()),
        ("code_version", pa.string()),
        ("started_at", pa.timestamp("us", tz="UTC")),
        ("finished_at", pa.timestamp("us", tz="UTC")),
        # the run's memory, split (peak_memory_mb above is the GPU peak on CUDA, else the process's peak RSS):
        # process peak RSS during the run, process RSS at its start (data loaded, no model yet), torch's GPU peak
        ("peak_rss_mb", pa.float64()),
        ("rss_start_mb", pa.float64()),
        ("peak_gpu_mb", pa.float64()),
        # what changes results besides the config and seed: CPU threads per process and the torch build
        ("threads", pa.int32()),
        ("torch_version", pa.string()),
        # a search trial's space (its searched axes and values, JSON) and the sweep's budget in trial-epochs:
        # the leaderboard's coverage and budget columns
        ("space_axes", pa.string()),
        ("budget_epochs", pa.int64()),
        # final and ablation runs, on their test rows of USER_METRICS: each test user's id and value at the
        # best epoch, in user order (the leaderboard's paired tests over users); null elsewhere
        ("user_ids", pa.list_(pa.int32())),
        ("user_values", pa.list_(pa.float32())),
        # final and ablation runs of a model with per-modality item embeddings (MENTOR's family), on the run's
        # first row only: a fixed item sample at the best epoch (mentor_ray.common.embeddings; Fig. 4)
        ("item_embeddings", pa.string()),
        # why the run ended (STOP_REASONS of its status; null where unknown: stores before 0.5.1)
        ("stop_reason", pa.string()),
    ]
)


def config_hash(config: dict[str, Any]) -> str:
    """Hash of the settings that decide results (not dataset, variant, seed, epoch budget or runtime keys):
    only the keys the run's model reads (:func:`~mentor_ray.common.config.result_settings`)."""
    return sha256_json(result_settings(config))[:12]


def legacy_config_hash(config: dict[str, Any]) -> str:
    """:func:`config_hash` as 0.2/0.3 wrote it (every model key, whichever model read it). Files of those
    versions are read under today's hash (:func:`_current_identity`) and found by :func:`is_recorded`."""
    return sha256_json(legacy_result_settings(config))[:12]


def selection_key(valid_recall20: float, valid_ndcg20: float, best_epoch: int, chash: str) -> tuple:
    """How a search's best point is chosen (``max`` of this key): validation only — Recall@20, then
    NDCG@20, then the earlier best epoch, then the config hash, so that ties (common on small data)
    are broken the same way whatever order the trials finished in. The sweep and the leaderboard share it."""
    return (valid_recall20, valid_ndcg20, -best_epoch, chash)


def run_id(role: str, dataset: str, variant: str, chash: str, seed: int, sweep: str = "") -> str:
    """A search trial's id names its sweep (the space): the same point searched by two spaces is two
    trials (one may be stopped early by ASHA, the other not), and neither may replace the other. A final
    or ablation run is the same run whichever sweep asks for it (run to its own end, same result)."""
    if role == "search":
        return f"{role}-{_safe(dataset)}-{_safe(sweep)}-{variant}-{chash}-s{seed}"
    return f"{role}-{_safe(dataset)}-{variant}-{chash}-s{seed}"


def summary_run_id(summary: dict[str, Any], role: str, sweep: str) -> str:
    """The :func:`run_id` of a run summary."""
    return run_id(role, summary["dataset"], summary["variant"], config_hash(summary["config"]), summary["seed"], sweep)


def _safe(name: str) -> str:
    """``name`` as a file-name component."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def rows_from_summary(summary: dict[str, Any], role: str, sweep: str, version: str | None = None) -> pa.Table:
    """The rows of one run (a :meth:`mentor_ray.training.trainer.Trainer.summary`, or :func:`failure_summary`)."""
    if role not in ROLES:
        raise MentorRayError(f"results: role '{role}' is not one of {', '.join(ROLES)}")
    status = summary.get("status", "completed")
    if status not in STATUSES:
        raise MentorRayError(f"results: status '{status}' is not one of {', '.join(STATUSES)}")
    cfg = summary["config"]
    chash = config_hash(cfg)
    peak = summary.get("peak_gpu_mb") or summary.get("peak_rss_mb")
    now = dt.datetime.now(dt.timezone.utc)
    started = summary.get("started_at")
    run = {
        "run_id": summary_run_id(summary, role, sweep),
        "sweep": sweep, "dataset": summary["dataset"], "synthetic": bool(summary.get("synthetic", False)),
        "variant": summary["variant"], "role": role, "config_hash": chash,
        **{h: float(cfg[h]) if h in cfg and h in read_keys(summary["variant"]) else None for h in HPARAMS},
        "config_json": json.dumps(cfg, sort_keys=True), "seed": int(summary["seed"]),
        "best_epoch": _int_or_none(summary.get("best_epoch")), "epochs_run": int(summary.get("epochs_run") or 0),
        "seconds_per_epoch": float(summary.get("seconds_per_epoch") or 0.0),
        "peak_memory_mb": float(peak) if peak is not None else None,
        "status": status, "error": summary.get("error"),
        "valid_curve": [float(v) for v in summary.get("valid_curve") or []],
        "wall_seconds": float(summary.get("wall_seconds") or 0.0), "device": summary.get("device"),
        "world_size": int(summary.get("world_size") or 1),
        # a run taken back from the store (stored_summary) keeps the code that trained it
        "code_version": version or summary.get("code_version") or code_version(),
        "started_at": dt.datetime.fromtimestamp(started, dt.timezone.utc) if started else None,
        # the run's own end when its start and duration are known (a sweep records a phase's runs together)
        "finished_at": (dt.datetime.fromtimestamp(started + summary["wall_seconds"], dt.timezone.utc)
                        if started and summary.get("wall_seconds") else now),
        **{m: _float_or_none(summary.get(m)) for m in ("peak_rss_mb", "rss_start_mb", "peak_gpu_mb")},
        "threads": _int_or_none(summary.get("threads")), "torch_version": summary.get("torch_version"),
        "space_axes": json.dumps(summary["space_axes"], sort_keys=True) if summary.get("space_axes") else None,
        "budget_epochs": _int_or_none(summary.get("budget_epochs")),
        "stop_reason": stop_reason(summary, status),
    }
    users = summary.get("test_users") if role != "search" else None  # a search's trials would only bloat the store

    def per_user(split: str, name: str) -> dict[str, Any]:
        if split != "test" or not users or name not in users:
            return {"user_ids": None, "user_values": None}
        return {"user_ids": users["user"], "user_values": users[name]}

    if summary.get("valid") is None:  # failed before its first evaluation: one row, no metric
        rows = [{**run, "split": None, "metric": None, "k": None, "value": None, **per_user("", "")}]
    else:
        rows = [{**run, "split": split, "metric": metric, "k": k, "value": float(summary[split][f"{metric}@{k}"]),
                 **per_user(split, f"{metric}@{k}")}
                for split in ("valid", "test") for metric in METRIC_KINDS for k in KS]
    kept = summary.get("item_embeddings") if role != "search" else None
    rows = [{**r, "item_embeddings": kept if i == 0 else None} for i, r in enumerate(rows)]
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def stop_reason(summary: dict[str, Any], status: str) -> str | None:
    """The ``stop_reason`` column of a run (:data:`STOP_REASONS`): a completed run's ``stop_reason`` (the
    trainer's), a stopped one's ``stopped_by`` (the sweep's), ``failed``; None where the summary does not say."""
    found = "failed" if status == "failed" else summary.get("stop_reason" if status == "completed" else "stopped_by")
    return found if found in STOP_REASONS[status] else None


def failure_summary(config: dict[str, Any], error: str, synthetic: bool = False) -> dict[str, Any]:
    """A summary for a run that failed before any evaluation (recorded so that no trial goes missing)."""
    return {"dataset": config["dataset"], "synthetic": synthetic, "variant": config["variant"],
            "seed": config["seed"], "best_epoch": None, "epochs_run": 0, "valid": None, "test": None,
            "config": config, "status": "failed", "error": error.strip().splitlines()[-1][:500] if error else None}


def _int_or_none(value: Any) -> int | None:
    return None if value is None or value < 0 else int(value)


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


# --------------------------------------------------------------------------- a run summary, as the store takes it
# One typed description of what the store keeps of a summary (rows_from_summary): results add checks every file
# by it before writing any, and read_results checks a run file's blobs by the same types, so that what the store
# holds each of its readers can read. A failed check is one line: where (the key path), what was found, and the
# whole rule it broke (pydantic's own words name one constraint at a time: "Input should be a finite number").

# a float's last bit: a mean of NDCGs that are all 1 may come out just above 1 (summed in another order than the
# ideal DCG), and the trainer writes the mean as it is
ROUNDING = 1e-9
INT32_MAX = 2**31 - 1  # counts and user ids are int32 columns
LAST_TIME = 253_402_300_799.0  # unix seconds of 9999-12-31 23:59:59 UTC: the last time datetime (started_at) holds
_OWN = ("allowed", "missing", "extra_forbidden")  # errors that already say their rule, at their own place


def _rule(allowed: str) -> WrapValidator:
    """Any failure of the check it wraps (a wrong type, NaN, a bound, a bad element of a list) reads as ``allowed``,
    at the place it happened; a part's own :func:`_rule` (or a missing or unknown key) is left as it said it."""

    def check(value: Any, handler: Any) -> Any:
        try:
            return handler(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            if first["type"] in _OWN:
                raise
            place = {"at": first["loc"], "found": first["input"]} if first["loc"] else {}
            raise PydanticCustomError("allowed", "{allowed}", {"allowed": allowed, **place}) from None

    return WrapValidator(check)


def _problem(at: str | tuple, found: Any, allowed: str, said: str | None = None) -> PydanticCustomError:
    """A cross-field rule's error in :func:`summary_problem`'s form: ``at`` the key (or key path) it names,
    ``said`` what was found, in words, where the value itself would not say it."""
    place = at if isinstance(at, tuple) else (at,)
    return PydanticCustomError("allowed", "{allowed}", {"allowed": allowed, "at": place, "found": found,
                                                        **({"said": said} if said else {})})


_FRACTION = Field(strict=True, ge=0, le=1 + ROUNDING, allow_inf_nan=False)  # in Rust: no call per element
Fraction = Annotated[float, _FRACTION, _rule("a number in [0, 1]")]
Count = Annotated[int, Field(strict=True, ge=0, le=INT32_MAX), _rule(f"a whole number from 0 to {INT32_MAX:,}")]
Amount = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False), _rule("a finite number, at least 0")]
Text = Annotated[str, Field(strict=True), _rule("a string")]


def _keyed(name: str, keys: tuple[str, ...], kind: Any, base: type[BaseModel] | None = None,
           required: bool = True) -> type[BaseModel]:
    """A model of a JSON object with exactly ``keys`` (names such as ``recall@20``, no Python names), each a
    ``kind``."""
    fields = {f"k{i}": (kind, Field(... if required else None, alias=key)) for i, key in enumerate(keys)}
    config = None if base else ConfigDict(extra="forbid")
    return create_model(name, __base__=base, __config__=config, **fields)


Metrics = Annotated[_keyed("Metrics", METRICS, Fraction),
                    _rule(f"a JSON object of the {len(METRICS)} metrics {', '.join(METRICS)}, each in [0, 1]")]
PerUser = Annotated[list[Annotated[float, _FRACTION]], _rule("a list of numbers in [0, 1], one per user")]


class _Users(BaseModel):
    """The per-user test values of a run (a summary's ``test_users``; a run file's ``user_ids`` and
    ``user_values``): the paired tests over users look a user up by its id (sorted, once each) and take the
    value at its place."""

    model_config = ConfigDict(extra="forbid")
    user: Annotated[list[Annotated[int, Field(strict=True, ge=0, le=INT32_MAX)]],
                    _rule(f"a list of user ids (whole numbers from 0 to {INT32_MAX:,}), ascending")]

    @model_validator(mode="after")
    def _one_value_per_user(self) -> _Users:
        users = self.user
        at = next((i for i in range(1, len(users)) if users[i] <= users[i - 1]), None)
        if at is not None:
            raise _problem(("user", at), users[at], f"user ids in ascending order, each once (after {users[at - 1]})")
        for name, field in type(self).model_fields.items():
            values = getattr(self, name) if field.alias else None  # the metrics' fields: k0... alias recall@10...
            if values is not None and len(values) != len(users):
                raise _problem(field.alias, values, f"one value per user ({len(users):,} users)",
                               said=f"{len(values):,} values")
        return self


TestUsers = _keyed("TestUsers", USER_METRICS, PerUser, base=_Users, required=False)


def _drawable(text: str) -> str:
    """``text`` if :func:`mentor_ray.common.embeddings.decode` reads it (Fig. 4 draws what it returns)."""
    try:
        embeddings.decode(text)
    except ValueError as exc:
        raise PydanticCustomError("allowed", "{allowed}", {
            "allowed": "what mentor_ray.common.embeddings.encode writes", "said": str(exc)}) from None
    return text


Embeddings = Annotated[Text, AfterValidator(_drawable)]


class RunSummary(BaseModel):
    """A finished run's summary (``train --summary``: :meth:`mentor_ray.training.trainer.Trainer.summary`) as
    ``results add`` takes it: every value the store keeps of it (:func:`rows_from_summary`) of the type and in
    the range the trainer writes. Keys the store does not keep (rank_profile, step_parts, ...) are not checked;
    the config is checked by :func:`mentor_ray.common.config.validate`."""

    model_config = ConfigDict(extra="ignore")
    dataset: Text
    variant: Text
    seed: Annotated[int, Field(strict=True), _rule("a whole number")]
    config: Annotated[dict[str, Any], _rule("a JSON object of settings")]
    status: Annotated[Literal["completed"], _rule("completed (only finished runs are added)")] = "completed"
    valid: Metrics
    test: Metrics
    synthetic: Annotated[bool, Field(strict=True), _rule("true or false")] = False
    best_epoch: Count | None = None
    epochs_run: Count = 0
    valid_curve: Annotated[list[Fraction], _rule("a list of numbers in [0, 1]")] | None = None
    seconds_per_epoch: Amount | None = None
    wall_seconds: Amount | None = None
    started_at: Annotated[float, Field(strict=True, ge=0, le=LAST_TIME, allow_inf_nan=False),
                          _rule("unix seconds before the year 10000")] | None = None
    peak_rss_mb: Amount | None = None
    rss_start_mb: Amount | None = None
    peak_gpu_mb: Amount | None = None
    device: Text | None = None
    world_size: Annotated[int, Field(strict=True, ge=1, le=INT32_MAX),
                          _rule(f"a whole number from 1 to {INT32_MAX:,}")] | None = None
    threads: Count | None = None
    torch_version: Text | None = None
    code_version: Text | None = None
    error: Text | None = None
    stop_reason: Text | None = None
    space_axes: Annotated[dict[str, Annotated[list[Any], Field(min_length=1)]],
                          _rule("a JSON object of non-empty lists")] | None = None
    budget_epochs: Annotated[int, Field(strict=True, ge=0, le=2**63 - 1),
                             _rule("a whole number, at least 0")] | None = None
    test_users: Annotated[TestUsers, _rule(f"a JSON object: user (the test users' ids), then a list of one value "
                                           f"per user of any of {', '.join(USER_METRICS)}")] | None = None
    item_embeddings: Embeddings | None = None

    @model_validator(mode="after")
    def _consistent(self) -> RunSummary:
        for key in ("dataset", "variant", "seed"):  # the run id is made of these and the config's hash
            found, config = getattr(self, key), self.config.get(key)
            if found != config or type(found) is not type(config):
                raise _problem(key, found, f"the config's {key} ({shown(config)}): a summary train wrote has the "
                                           "same in both")
        if self.best_epoch is not None and self.best_epoch >= max(self.epochs_run, 1):
            raise _problem("best_epoch", self.best_epoch, f"an epoch the run ran: 0 to {max(self.epochs_run - 1, 0)} "
                                                          f"(epochs_run {self.epochs_run})")
        if self.valid_curve and len(self.valid_curve) != self.epochs_run:
            raise _problem("valid_curve", self.valid_curve, f"one validation Recall@20 per epoch run "
                                                            f"({self.epochs_run}), or none",
                           said=f"{len(self.valid_curve)} values")
        if self.started_at and self.wall_seconds and self.started_at + self.wall_seconds > LAST_TIME:
            raise _problem("wall_seconds", self.wall_seconds, "a run ending before the year 10000 (started_at + "
                                                              "wall_seconds)")
        return self


def summary_problem(exc: ValidationError, model: type[BaseModel] = RunSummary) -> str:
    """The first problem of a :class:`RunSummary` (or ``model``) check, on one line: the key path, what was
    found and what is allowed (the keys allowed, for an unknown key); how many more there are."""
    errors = exc.errors()
    first = errors[0]
    ctx = first.get("ctx") or {}
    parts = (*first["loc"], *ctx.get("at", ()))
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".") or "summary"
    if first["type"] == "missing":
        line = f"no {where} (train --summary writes it)"
    elif first["type"] == "extra_forbidden":
        line = f"{where}: unknown key; allowed keys: {', '.join(keys_at(model, first['loc'][:-1]))}"
    else:
        found = ctx["said"] if "said" in ctx else shown(ctx.get("found", first["input"]), 120)
        line = f"{where} = {found}; allowed: {ctx.get('allowed', first['msg'])}"
    more = len(errors) - 1
    return line + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


def check_summary(summary: dict[str, Any], source: str) -> None:
    """A one-line :class:`MentorRayError` naming ``source`` unless ``summary`` is a :class:`RunSummary`."""
    try:
        RunSummary.model_validate(summary)
    except ValidationError as exc:
        raise MentorRayError(f"{source}: {summary_problem(exc)}") from None


_KEPT = _keyed("Kept", ("item_embeddings",), Embeddings | None)  # a run file's column (null but on the first row)


def write_run(results_dir: str | Path, table: pa.Table) -> Path:
    """Write one run's rows atomically to ``<results_dir>/<run_id>.parquet`` (replacing an earlier copy)."""
    ids = table.column("run_id").unique().to_pylist()
    if len(ids) != 1:
        raise MentorRayError(f"results: one run per file; got run ids {ids}")
    if table.schema != SCHEMA:
        raise MentorRayError("results: rows do not have the results schema (use rows_from_summary)")
    out_dir = Path(results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{ids[0]}.parquet"
    with atomic_path(target) as tmp:  # hidden temporary name: never read as part of the dataset
        pq.write_table(table, tmp)
    return target


def record(results_dir: str | Path, summary: dict[str, Any], role: str, sweep: str) -> Path:
    """Write (or rewrite) the rows of one run."""
    return write_run(results_dir, rows_from_summary(summary, role, sweep))


def is_recorded(results_dir: str | Path, summary: dict[str, Any], role: str, sweep: str) -> bool:
    """Whether the store holds this run's file already: under its run id, or under the id 0.2/0.3 gave it."""
    rid = summary_run_id(summary, role, sweep)
    legacy = run_id(role, summary["dataset"], summary["variant"], legacy_config_hash(summary["config"]),
                    summary["seed"], sweep)
    return any((Path(results_dir) / f"{r}.parquet").is_file() for r in (rid, legacy))


def stored_summary(results_dir: str | Path, role: str, config: dict[str, Any]) -> dict[str, Any] | None:
    """The run ``config`` (a final or ablation run's full config) as the store holds it, as a summary that
    :func:`rows_from_summary` turns back into the same rows; None unless the store holds it completed, with
    the same run keys, result settings and epoch budget (``max_epochs``). A sweep that asks for a run the
    store already has (more seeds after fewer, another space reaching the same point) takes it from here
    instead of training it again. An unreadable file is None too: the run is trained again and replaces it."""
    if role == "search":
        raise MentorRayError("results: stored_summary is for final and ablation runs (a search trial's id names "
                             "its sweep)")
    chash = config_hash(config)
    path = Path(results_dir) / f"{run_id(role, config['dataset'], config['variant'], chash, config['seed'])}.parquet"
    if not path.is_file():
        return None
    try:
        rows = _read_run_file(path).to_pylist()
        stored = json.loads(rows[0]["config_json"] or "null")
    except (OSError, pa.ArrowException, ValueError, KeyError, TypeError, RecursionError):
        return None
    first = rows[0]
    # resume_settings holds the result settings, so equal ones imply the same config hash
    if (not isinstance(stored, dict) or first["status"] != "completed"
            or resume_settings(stored) != resume_settings(config)
            or stored.get("max_epochs") != config.get("max_epochs")):
        return None
    metrics = {(r["split"], f"{r['metric']}@{r['k']}"): r for r in rows if r["split"] is not None}
    splits = {split: {name: r["value"] for (s, name), r in metrics.items() if s == split} or None
              for split in ("valid", "test")}
    users = {name: r for (s, name), r in metrics.items() if s == "test" and r["user_ids"] is not None}
    started = first["started_at"]
    summary: dict[str, Any] = {
        "dataset": first["dataset"], "synthetic": bool(first["synthetic"]), "variant": first["variant"],
        "seed": first["seed"], "config": stored, "status": "completed", "error": first["error"],
        "best_epoch": first["best_epoch"], "epochs_run": first["epochs_run"],
        "stop_reason": first["stop_reason"], **splits,
        "seconds_per_epoch": first["seconds_per_epoch"], "wall_seconds": first["wall_seconds"],
        "started_at": started.timestamp() if started is not None else None,
        "device": first["device"], "world_size": first["world_size"],
        "valid_curve": list(first["valid_curve"] or []),
        **{m: first[m] for m in ("peak_rss_mb", "rss_start_mb", "peak_gpu_mb", "threads", "torch_version")},
        "item_embeddings": first["item_embeddings"],
        "code_version": first["code_version"],  # the code that trained it (rows_from_summary's ``version``)
    }
    if first["space_axes"] is not None:
        summary["space_axes"] = json.loads(first["space_axes"])
    if first["budget_epochs"] is not None:
        summary["budget_epochs"] = first["budget_epochs"]
    if users:
        ids = next(iter(users.values()))["user_ids"]
        summary["test_users"] = {"user": ids, **{name: r["user_values"] for name, r in users.items()}}
    return summary


def best_search_run(results_dir: str | Path, dataset: str, sweep: str) -> dict[str, Any] | None:
    """The best search trial of ``sweep`` on ``dataset`` by :func:`selection_key` (validation only):
    ``{"config": ..., "valid_recall@20": ..., "run_id": ...}``, or None when the store has none."""
    rows = read_results(results_dir, role="search", dataset=dataset, sweep=sweep, split="valid", k=20).to_pandas()
    rows = rows[rows.status != "failed"]
    if rows.empty:
        return None
    runs = rows.pivot_table(index=["run_id", "config_hash", "best_epoch", "config_json"], columns="metric",
                            values="value").reset_index()
    best = max(runs.itertuples(), key=lambda r: selection_key(r.recall, r.ndcg, r.best_epoch, r.config_hash))
    return {"config": json.loads(best.config_json), "valid_recall@20": float(best.recall), "run_id": best.run_id}


def read_results(results_dir: str | Path, **equal: Any) -> pa.Table:
    """All rows of ``results_dir`` (empty table if none), filtered on columns equal to values.

    Only the run files directly in it are read (not hidden temporaries, not subdirectories such as a
    leaderboard written there); files from before a column was added read it as null. Each file is
    read on its own: one that is unreadable (truncated, empty, not Parquet), lacks a column of
    :data:`REQUIRED`, has a column of the wrong type or holds no rows is skipped with a one-line warning
    naming it (so is one with a column name twice, a value outside its column's vocabulary, or a
    ``config_json``/``space_axes`` that is not the JSON its readers parse). A run (``run_id``) found in
    several files (a copied file) is counted once, with a warning naming the files; its rows are those
    of the newest file (by modification time, then name), also when the files' metrics differ (the
    warning then says they conflict). Duplicates and corrupted files are found before the filter
    applies, so a filtered read keeps the same copy as an unfiltered one.
    """
    expr = None
    for column, value in equal.items():
        if column not in SCHEMA.names:
            raise MentorRayError(f"results: no column '{column}'; columns: {', '.join(SCHEMA.names)}")
        term = pc.field(column) == value
        expr = term if expr is None else expr & term
    path = Path(results_dir)
    files = sorted(p for p in path.glob("*.parquet") if not p.name.startswith(".") and p.is_file())
    runs: list[tuple[Path, int, pa.Table]] = []
    for file in files:
        try:
            mtime = file.stat().st_mtime_ns
            table = _read_run_file(file)
        # pyarrow and json raise ValueError, KeyError, TypeError or RecursionError on some malformed files
        except (OSError, pa.ArrowException, ValueError, KeyError, TypeError, RecursionError) as exc:
            reason = shown((str(exc).strip().splitlines() or [type(exc).__name__])[0], quote=False)
            log.warning("results: skipped %s, a corrupted run file (%s); %s", file, reason, FIX)
            continue
        runs.append((file, mtime, table))
    tables = _once_per_run(runs)
    if not tables:
        return SCHEMA.empty_table()
    table = pa.concat_tables(tables)
    return table if expr is None else table.filter(expr)


def _read_run_file(path: Path) -> pa.Table:
    """One run file's rows under :data:`SCHEMA` (null for a column it predates); raises if it is not one:
    a column of :data:`REQUIRED` missing, a column name twice, a column of a type that does not cast, a
    value outside its column's vocabulary (:data:`_VOCABULARY`), or a JSON column (``config_json``,
    ``space_axes``) that does not hold what readers of the store parse it as."""
    with pq.ParquetFile(path) as f:
        table = f.read()
    names = set(table.column_names)
    if len(names) != table.num_columns:
        twice = next(c for c in table.column_names if table.column_names.count(c) > 1)
        raise pa.ArrowInvalid(f"column {shown(twice, 60)} appears {table.column_names.count(twice)} times")
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise pa.ArrowInvalid(f"not a results file: no column {', '.join(missing)}")
    if table.num_rows == 0 or table.column("run_id").null_count:
        raise pa.ArrowInvalid("no rows" if table.num_rows == 0 else "rows without a run_id")
    if table.schema.equals(SCHEMA):  # written by this version
        return _current_identity(_checked_values(table))
    columns = []
    for field in SCHEMA:
        if field.name not in names:
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        try:
            columns.append(table.column(field.name).cast(field.type))
        except pa.ArrowException as exc:
            raise pa.ArrowInvalid(f"column {field.name} is {table.schema.field(field.name).type}, "
                                  f"not {field.type}") from exc
    return _current_identity(_checked_values(pa.Table.from_arrays(columns, schema=SCHEMA)))


def _current_identity(table: pa.Table) -> pa.Table:
    """Rows with the config hash (and run id) of today's rule, computed from their ``config_json``: a run that
    0.2/0.3 recorded under a hash over every model key groups, pairs and de-duplicates with the same run
    recorded now (a read-time mapping; the file is not rewritten)."""
    hashes, ids = table.column("config_hash").to_pylist(), table.column("run_id").to_pylist()
    configs = table.column("config_json").to_pylist()
    memo: dict[str, str] = {}
    changed = False
    for i, (old, text) in enumerate(zip(hashes, configs)):
        if text is None:
            continue
        new = memo.get(text) or memo.setdefault(text, config_hash(json.loads(text)))
        if new != old:
            changed = True
            hashes[i] = new
            if old and f"-{old}-s" in ids[i]:
                ids[i] = ids[i].replace(f"-{old}-s", f"-{new}-s")
    if not changed:
        return table
    table = table.set_column(table.schema.get_field_index("config_hash"), "config_hash", pa.array(hashes, pa.string()))
    return table.set_column(table.schema.get_field_index("run_id"), "run_id", pa.array(ids, pa.string()))


# what each value of these columns may be (null aside): what rows_from_summary writes
_VOCABULARY = {"role": ROLES, "status": STATUSES, "split": ("valid", "test"), "metric": METRIC_KINDS, "k": KS}


def _checked_values(table: pa.Table) -> pa.Table:
    """``table`` if its values are what the store's readers expect, else :class:`pa.ArrowInvalid` saying which."""
    for column, allowed in _VOCABULARY.items():
        bad = [v for v in pc.unique(table.column(column)).to_pylist() if v is not None and v not in allowed]
        if bad:
            raise pa.ArrowInvalid(f"column {column} holds {shown(bad[0], 60)}; allowed: "
                                  f"{', '.join(map(str, allowed))}")
    # a row measures something (split, metric and k all set) or is a failed run's one row (all three null)
    nulls = [pc.is_null(table.column(c)) for c in ("split", "metric", "k")]
    mixed = pc.or_(pc.xor(nulls[0], nulls[1]), pc.xor(nulls[1], nulls[2]))
    if pc.any(mixed).as_py():
        raise pa.ArrowInvalid("a row with some of split, metric and k null but not all")
    for rid in pc.unique(table.column("run_id")).to_pylist():
        if not rid or len(rid) > 512 or any(ch.isspace() or not ch.isprintable() for ch in rid):
            raise pa.ArrowInvalid(f"run_id {shown(rid, 60)} is not a run id (printable, no spaces, 1-512 characters)")
    for column, what in (("config_json", "a JSON object"), ("space_axes", "a JSON object of non-empty lists")):
        for text in pc.unique(table.column(column)).to_pylist():
            if text is None:
                continue
            try:
                value = json.loads(text)
            except (ValueError, RecursionError):
                value = None
            ok = isinstance(value, dict) and (column != "space_axes" or all(
                isinstance(v, list) and v for v in value.values()))
            if not ok:
                raise pa.ArrowInvalid(f"column {column} holds {shown(text, 60)}, not {what}")
    return _checked_blobs(table)


def _checked_blobs(table: pa.Table) -> pa.Table:
    """``table`` if its per-user values and item embeddings pass the rules ``results add`` checks a summary's
    by (:data:`TestUsers`, :data:`Embeddings`: what the paired tests and Fig. 4 read), else
    :class:`pa.ArrowInvalid` naming the run and the column."""
    blobs = ("user_ids", "user_values", "item_embeddings")
    held = pc.or_(pc.or_(pc.is_valid(table.column(blobs[0])), pc.is_valid(table.column(blobs[1]))),
                  pc.is_valid(table.column(blobs[2])))
    for row in table.filter(held).select(["run_id", "metric", "k", *blobs]).to_pylist():
        name = f"{row['metric']}@{row['k']}"
        checks = [("", _KEPT, {"item_embeddings": row["item_embeddings"]})]
        if row["user_ids"] is not None or row["user_values"] is not None:
            checks.append((f" (columns user_ids, user_values of test {name})", TestUsers,
                           {"user": row["user_ids"], name: row["user_values"]}))
        for what, model, value in checks:
            try:
                model.model_validate(value)
            except ValidationError as exc:
                reason = summary_problem(exc, model)
                raise pa.ArrowInvalid(f"run {shown(row['run_id'], 60)}{what}: {reason}") from None
    return table


def _once_per_run(runs: list[tuple[Path, int, pa.Table]]) -> list[pa.Table]:
    """The tables of ``runs`` (path, mtime, rows) with each run id's rows from one file only: the newest."""
    holders: dict[str, list[int]] = {}
    for i, (_, _, table) in enumerate(runs):
        for rid in pc.unique(table.column("run_id")).to_pylist():
            holders.setdefault(rid, []).append(i)
    dropped: dict[int, list[str]] = {}
    for rid, held in holders.items():
        if len(held) < 2:
            continue
        newest = max(held, key=lambda i: (runs[i][1], runs[i][0].name))
        names = ", ".join(str(runs[i][0]) for i in held)
        if len({_metrics(runs[i][2], rid) for i in held}) > 1:
            log.warning("results: run %s is in %d files with conflicting metrics (%s); kept the newest, %s; "
                        "delete all but the one to keep (a sweep writes %s.parquet)",
                        rid, len(held), names, runs[newest][0], rid)
        else:  # the same run twice: the copies are the files a sweep did not write (or all but the newest)
            own = [i for i in held if runs[i][0].name == f"{rid}.parquet"]
            extra = ", ".join(str(runs[i][0]) for i in held if i not in (own or [newest]))
            log.warning("results: run %s is in %d files (%s); counted once; delete the extra copies: %s",
                        rid, len(held), names, extra)
        for i in held:
            if i != newest:
                dropped.setdefault(i, []).append(rid)
    out = []
    for i, (_, _, table) in enumerate(runs):
        if i in dropped:
            table = table.filter(pc.invert(pc.is_in(table.column("run_id"), pa.array(dropped[i], pa.string()))))
        if table.num_rows:
            out.append(table)
    return out


def _metrics(table: pa.Table, rid: str) -> tuple:
    """A run's measurements in one file, comparable between files (row order aside)."""
    rows = table.filter(pc.equal(table.column("run_id"), rid)).select(["split", "metric", "k", "value"]).to_pylist()
    return tuple(sorted(tuple(repr(v) for v in r.values()) for r in rows))
