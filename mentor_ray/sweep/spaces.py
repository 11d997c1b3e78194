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

    def settings_for(self, dataset: str) -> dict[str, Any]:
        """The fixed settings for ``dataset``: ``fixed``, then its own entry of ``datasets`` if any."""
        return {**self.fixed, **self.datasets.get(self.aliases.get(dataset, dataset), {})}


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
    for alias, target in space.aliases.items():
        if target not in space.datasets:
            raise ConfigError(f"{path}: aliases.{shown(alias, 80, quote=False)}: {shown(target, 80)} is not under "
                              f"datasets ({shown(', '.join(space.datasets) or 'none', quote=False)})")
