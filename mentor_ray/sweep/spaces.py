"""Search spaces for Ray Tune sweeps: the YAML files in ``tune_spaces/``, parsed into one typed object.

:func:`load_space` takes a file, or the name of one in ``tune_spaces/``, and returns a :class:`SearchSpace`
(searched axes, fixed settings, optional per-dataset settings). Every key must be a key of
:class:`mentor_ray.common.config.TrainConfig` and every value one it accepts; a bad file stops with one
line naming the file, the key and what is allowed. The file format: ``docs/architecture.md`` (*Search spaces*).
"""

from __future__ import annotations

import difflib
import itertools
import math
from pathlib import Path
from typing import Any, Iterator

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from mentor_ray.common.config import check_keys, keys_with, validate
from mentor_ray.common.errors import ConfigError, pydantic_message, shown
from mentor_ray.common.names import NAME_RULE, check_name
from mentor_ray.common.yamlio import load_yaml

_PACKAGE = Path(__file__).resolve().parents[1]
# A wheel carries the spaces inside the package; a source checkout keeps them at the top level.
SPACE_DIR = _PACKAGE / "tune_spaces" if (_PACKAGE / "tune_spaces").is_dir() else _PACKAGE.parent / "tune_spaces"
SWEEP_KEYS = keys_with("run")  # set by the sweep (dataset, variant, seed, ...), never by a space


class SearchSpace(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    model: str = "mentor"  # a registered model (mentor_ray.common.registry)
    search: dict[str, list[Any]] = {}
    fixed: dict[str, Any] = {}
    datasets: dict[str, dict[str, Any]] = {}
    aliases: dict[str, str] = {}
    start_from: str | None = None  # a space whose best point (per dataset, from the results store) this one starts at
    # known-good points a TPE search evaluates first (after the model's published defaults): each a mapping of
    # some searched axes to values on their lists; an axis left out takes the model's default
    start_points: list[dict[str, Any]] = []
    path: str = ""

    @field_validator("model")
    @classmethod
    def _a_model(cls, value: str) -> str:
        from mentor_ray.common.registry import MODELS

        trained = [m for m, e in MODELS.items() if e.trained]
        if value not in trained:
            raise ValueError(f"one of {', '.join(trained)}")
        return value

    @field_validator("name", "start_from")
    @classmethod
    def _a_name(cls, value: str | None) -> str | None:
        """A space's name names its experiments under --storage and its rows in the results store, and
        start_from names another space: a name, never a path (``name: ../../x`` would write outside --storage)."""
        if value is None:
            return None
        try:
            return check_name(value, "name")
        except ConfigError:
            raise ValueError(NAME_RULE) from None  # pydantic_message turns it into the one-line key error

    @property
    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.search.values())

    def points(self) -> Iterator[dict[str, Any]]:
        """Every point of the grid, in file order (the last axis fastest)."""
        keys = list(self.search)
        for values in itertools.product(*(self.search[k] for k in keys)):
            yield dict(zip(keys, values))

    def default_point(self) -> tuple[dict[str, Any], list[str]]:
        """The model's published defaults (its registry entry: the paper's point for MENTOR) on the searched
        axes, and the axes whose default is not on the axis's list (then there is no default point)."""
        cfg = validate({"variant": self.model, **self.fixed})
        point = {k: getattr(cfg, k) for k in self.search}
        return point, [k for k, v in point.items() if not _on_axis(v, self.search[k])]

    def warm_points(self) -> list[tuple[str, dict[str, Any]]]:
        """(source, point) of every known point a TPE search evaluates first, in order, without repeats: the
        model's published defaults (when on the grid), then ``start_points`` (each completed from those
        defaults)."""
        default, off = self.default_point()
        out: list[tuple[str, dict[str, Any]]] = [] if off else [("the model's published defaults", default)]
        for i, given in enumerate(self.start_points):
            point = {k: given.get(k, default[k]) for k in self.search}
            out.append((f"start_points[{i}]", point))
        return dedupe_points(out)

    def settings_for(self, dataset: str) -> dict[str, Any]:
        """The fixed settings for ``dataset``: ``fixed``, then its own entry of ``datasets`` if any."""
        return {**self.fixed, **self.datasets.get(self.aliases.get(dataset, dataset), {})}


def _on_axis(value: Any, axis: list[Any]) -> bool:
    return any(value == v and type(value) is type(v) or (isinstance(value, float) and isinstance(v, (int, float))
               and not isinstance(v, bool) and math.isclose(value, v, rel_tol=1e-9)) for v in axis)


def snap(point: dict[str, Any], search: dict[str, list[Any]]) -> dict[str, Any]:
    """``point`` with each value replaced by the equal value of its axis's list (``1e-3`` read back from a
    store as ``0.001``, an int ``1`` as the list's ``1.0``): Optuna's categorical choices compare exactly."""
    out = {}
    for k, value in point.items():
        same = [v for v in search[k] if _on_axis(value, [v])]
        out[k] = same[0] if same else value
    return out


def dedupe_points(points: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """``points`` without a point seen earlier in the list (the first source names it)."""
    seen, out = set(), []
    for source, point in points:
        key = tuple(sorted((k, repr(v)) for k, v in point.items()))
        if key not in seen:
            seen.add(key)
            out.append((source, point))
    return out


def space_dirs() -> list[Path]:
    """Where spaces are found by name: the checkout's (or the wheel's) ``tune_spaces/``, then ``./tune_spaces``
    (a ``ray job submit --working-dir``, the image's WORKDIR)."""
    return list(dict.fromkeys(d for d in (SPACE_DIR, Path.cwd() / "tune_spaces") if d.is_dir()))


def space_files() -> list[Path]:
    """Every space file found by name, one per name (the first directory wins), sorted by name."""
    found: dict[str, Path] = {}
    for d in space_dirs():
        for p in sorted(d.glob("*.yaml")):
            found.setdefault(p.stem, p)
    return [found[n] for n in sorted(found)]


def resolve(name_or_path: str | Path) -> Path:
    """A path, or the name of a file in ``tune_spaces/`` (``paper_grid`` or ``paper_grid.yaml``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    dirs = space_dirs()
    for d in dirs:
        for candidate in (d / path.name, d / f"{path.name}.yaml"):
            if candidate.is_file():
                return candidate
    stems = sorted({p.stem for d in dirs for p in d.glob("*.yaml")})
    names = ", ".join(stems) or "none found"
    if len(names) > 360:  # one error line: the closest names, and where the rest are listed
        close = difflib.get_close_matches(path.stem, stems, n=6, cutoff=0.0)
        names = f"closest: {', '.join(close)}; all {len(stems)}: `mentor-ray spaces list`"
    raise ConfigError(f"--space {shown(str(name_or_path), 120, quote=False)}: no such file, nor a space in "
                      f"tune_spaces/ ({names})")


def load_space(name_or_path: str | Path) -> SearchSpace:
    path = resolve(name_or_path)
    raw = load_yaml(path, mapping=False)  # the mapping check below says which keys a space has
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with name, search, fixed; found {type(raw).__name__}")
    try:
        space = SearchSpace.model_validate({**raw, "path": str(path)})
    except ValidationError as exc:
        raise ConfigError(pydantic_message(str(path), exc, SearchSpace)) from exc
    _check(space, path)
    return space


def _check(space: SearchSpace, path: Path) -> None:
    sections = [("search", {k: v for k, v in space.search.items()}), ("fixed", space.fixed)]
    sections += [(f"datasets.{d}", s) for d, s in space.datasets.items()]
    for section, values in sections:
        check_keys(list(values), f"{path}: {section}")
        for key in values:
            if key in SWEEP_KEYS:
                raise ConfigError(f"{path}: {section}.{key}: set by the sweep (its flags), not by a space; "
                                  f"remove it (a space may set any other config key)")
    # a key both searched and set would be decided by merge order, silently: the space must say which it is
    for section, values in sections[1:]:
        both = [k for k in values if k in space.search]
        if both:
            raise ConfigError(f"{path}: {section}.{both[0]}: also under search; a key is either searched or set, "
                              f"not both (remove one)")
    for key, axis in space.search.items():
        if not axis:
            raise ConfigError(f"{path}: search.{key}: empty list; give at least one value")
        if len(set(map(repr, axis))) != len(axis):
            raise ConfigError(f"{path}: search.{key}: repeated values in {shown(axis)}")
        for value in axis:
            validate({key: value}, source=f"{path}: search")
    validate(dict(space.fixed), source=f"{path}: fixed")
    for d, values in space.datasets.items():
        validate({**space.fixed, **values}, source=f"{path}: datasets.{d}")
    if space.start_from is not None:
        if space.start_from == space.name:
            raise ConfigError(f"{path}: start_from: {space.start_from} is this space; name an earlier stage")
        try:
            resolve(space.start_from)
        except ConfigError as exc:
            raise ConfigError(f"{path}: start_from: {exc}") from None
    if space.start_points and not space.search:
        raise ConfigError(f"{path}: start_points: the space searches nothing; remove them or add search axes")
    default, _ = space.default_point() if space.search else ({}, [])
    for i, given in enumerate(space.start_points):
        if not isinstance(given, dict):
            raise ConfigError(f"{path}: start_points[{i}]: expected a mapping of searched axes to values, found "
                              f"{type(given).__name__}")
        for key, value in given.items():
            if key not in space.search:
                raise ConfigError(f"{path}: start_points[{i}].{shown(str(key), 60, quote=False)}: not a searched "
                                  f"axis; allowed: {', '.join(space.search)}")
            if not _on_axis(value, space.search[key]):
                raise ConfigError(f"{path}: start_points[{i}].{key}: {shown(value, 60)} is not on the axis; "
                                  f"allowed: {shown(space.search[key], 200, quote=False)}")
        left = [k for k in space.search if k not in given and not _on_axis(default[k], space.search[k])]
        if left:
            raise ConfigError(f"{path}: start_points[{i}]: give {', '.join(left)} (the model's default "
                              f"{', '.join(f'{k}={default[k]!r}' for k in left)} is not on the axis)")
    for alias, target in space.aliases.items():
        if target not in space.datasets:
            raise ConfigError(f"{path}: aliases.{shown(alias, 80, quote=False)}: {shown(target, 80)} is not under "
                              f"datasets ({shown(', '.join(space.datasets) or 'none', quote=False)})")
