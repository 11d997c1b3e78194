"""The one YAML reader: every YAML file or value a user hands mentor_ray goes through :func:`load_yaml`.

PyYAML's ``safe_load`` constructs no objects, but it still accepts what a config never needs and a
hostile file uses: duplicate keys (the last silently wins, so a reviewed value is not the one used),
and aliases, which share one node many times (a few hundred bytes of ``&a [*b, *b, ...]`` expand to
billions of elements the moment anything walks, prints or hashes the result). :func:`load_yaml`
refuses a duplicate key, naming it and its line, and refuses a document whose expanded size passes
:data:`MAX_NODES` before anything is constructed, counting shared nodes once per use. Files above
:data:`MAX_BYTES` are refused unread. Errors are one :class:`~mentor_ray.common.errors.ConfigError`
line that names the file and never echoes more than 200 characters of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mentor_ray.common.errors import ConfigError, shown

MAX_BYTES = 1 << 20  # a config, space or dataset.yaml is a few KB; a MiB is far past any real one
MAX_NODES = 100_000  # scalars, lists and mappings after alias expansion


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (at any depth, merge keys aside)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    continue  # SafeLoader raises its own error for an unhashable key
                if key in seen:
                    raise _Duplicate(key, seen[key], key_node.start_mark.line + 1)
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


class _Duplicate(Exception):
    def __init__(self, key: Any, first: int, again: int):
        super().__init__(key, first, again)
        self.key, self.first, self.again = key, first, again


def _expanded_size(node: yaml.Node, limit: int) -> int:
    """How many nodes ``node`` stands for once every alias is expanded (stops counting past ``limit``).

    Aliases are the same node object reached again, so sizes are memoised per node: the count is exact
    and takes time linear in the composed (unexpanded) document."""
    memo: dict[int, int] = {}

    def size(n: yaml.Node) -> int:
        key = id(n)
        if key in memo:
            return memo[key]
        memo[key] = limit + 1  # a cycle (a recursive alias) counts as too large
        if isinstance(n, yaml.SequenceNode):
            total = 1 + sum(min(size(c), limit + 1) for c in n.value)
        elif isinstance(n, yaml.MappingNode):
            total = 1 + sum(min(size(k), limit + 1) + min(size(v), limit + 1) for k, v in n.value)
        else:
            total = 1
        memo[key] = min(total, limit + 1)
        return memo[key]

    return size(node)


def load_yaml(source: str | Path, *, what: str | None = None, text: str | None = None,
              mapping: bool = True) -> Any:
    """The parsed YAML of the file ``source`` (or of ``text``, named ``source`` in messages).

    ``what`` names it in errors (default: the path). With ``mapping``, the document must be a mapping
    (an empty one gives ``{}``). Raises a one-line :class:`ConfigError` for an unreadable or oversized
    file, a syntax error, a duplicate key, an alias expansion past :data:`MAX_NODES`, or a non-mapping.
    """
    what = what or str(source)
    if text is None:
        path = Path(source)
        try:
            if not path.is_file():
                raise ConfigError(f"{what}: not a regular file" if path.exists() else f"{what}: no such file")
            if path.stat().st_size > MAX_BYTES:
                raise ConfigError(f"{what}: {path.stat().st_size:,} bytes; a YAML file may have at most "
                                  f"{MAX_BYTES:,}")
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise ConfigError(f"{what}: unreadable ({reason})") from None
    elif len(text) > MAX_BYTES:
        raise ConfigError(f"{what}: {len(text):,} characters of YAML; at most {MAX_BYTES:,} are allowed")
    try:
        loader = _Loader(text)  # its Reader refuses characters YAML does not allow (a ReaderError)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what}: not valid YAML: {shown(str(exc).splitlines()[0], 200, quote=False)}") from None
    try:
        node = loader.get_single_node()
        if node is None:
            value = None
        else:
            if _expanded_size(node, MAX_NODES) > MAX_NODES:
                raise ConfigError(f"{what}: its aliases (*name) expand to more than {MAX_NODES:,} values; "
                                  f"write the values out, or use fewer aliases")
            value = loader.construct_document(node)
    except _Duplicate as dup:
        raise ConfigError(f"{what}: key {shown(dup.key, 80)} appears twice (lines {dup.first} and {dup.again}); "
                          f"keep one") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"{what}: not valid YAML{where}: {shown(problem, 200, quote=False)}") from None
    except RecursionError:
        raise ConfigError(f"{what}: nested too deeply to be a config") from None
    except (ConfigError, MemoryError):  # the size check's own error; the environment's
        raise
    except Exception as exc:  # noqa: BLE001 - a constructor's: a date that is no date (ValueError), an int of
        # 5,000 digits (ValueError), a bool that is none (`!!bool maybe`: KeyError), ...: PyYAML's constructors
        # raise whatever their parsing raises, and every one of them means the document holds a bad value
        detail = shown(str(exc), 200, quote=False) if str(exc).strip() else "no message"
        raise ConfigError(f"{what}: a value YAML cannot build ({type(exc).__name__}: {detail})") from None
    finally:
        loader.dispose()
    if mapping:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"{what}: must be a mapping of key: value lines; found a {type(value).__name__}")
    return value
