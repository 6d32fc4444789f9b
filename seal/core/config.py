"""Layered configuration: dataclass defaults <- YAML files (in order) <- dotted overrides.

``load_config(Config, ["base.yaml", "tiny.yaml"], ["search.max_nodes=32"])`` returns a validated
``Config``. Unknown keys and ill-typed values are errors naming the dotted field and the file they
came from; nothing is silently ignored.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Iterable, TypeVar

import yaml

from seal.core.errors import ConfigError

T = TypeVar("T")
_YAML11_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
"""Exponent notation PyYAML (YAML 1.1) reads as a string: no dot, or no sign in the exponent."""


def load_config(cls: type[T], files: Iterable[str | Path] = (), overrides: Iterable[str] = (),
                base: dict[str, Any] | None = None) -> T:
    """Build ``cls`` from its defaults, then ``base`` (a nested mapping, e.g. a checkpoint's search
    defaults), then each YAML file, then ``key.path=value`` overrides.

    An invalid value is a :class:`ConfigError` naming the dotted field and, when a YAML file set
    it, that file (the last one that did).
    """
    merged: dict[str, Any] = copy.deepcopy(dict(base or {}))
    sources: dict[str, str | None] = {}  # dotted key -> the file that set it last (None: an override)
    for f in files:
        data = read_yaml(f)
        merged = _deep_merge(merged, data, source=str(f))
        sources.update((key, str(f)) for key in _leaf_keys(data))
    for item in overrides:
        key, value = parse_override(item)
        _set_dotted(merged, key, value)
        sources.update({k: None for k in sources if k.startswith(key + ".")} | {key: None})
    try:
        return from_dict(cls, merged)
    except ConfigError as exc:
        source = None if exc.path is not None else _source_of(str(exc), sources)
        if source is None:
            raise
        raise ConfigError(str(exc), source) from None


def read_yaml(path: str | Path, _including: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The mapping of the YAML file ``path``. A top-level ``include: [a.yaml, ...]`` (paths relative
    to ``path``'s folder) stands for those files' mappings, merged in order, under ``path``'s own keys
    (a named stack of recipes); a file that includes itself, directly or through another, is a
    :class:`ConfigError` naming it."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError("config file not found", p)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"malformed YAML ({first})", p) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping at the top level, found {type(data).__name__}", p)
    includes = data.pop("include", None)
    if includes is None:
        return data
    if not isinstance(includes, list) or not all(isinstance(name, str) for name in includes):
        raise ConfigError(f"include: expected a list of YAML files, found {includes!r}", p)
    chain = (*_including, p.resolve())
    merged: dict[str, Any] = {}
    for name in includes:
        child = p.parent / name
        if child.resolve() in chain:
            cycle = " -> ".join(f.name for f in (*chain, child.resolve()))
            raise ConfigError(f"include cycle ({cycle})", child)
        merged = _deep_merge(merged, read_yaml(child, chain), source=str(child))
    return _deep_merge(merged, data, source=str(p))


def parse_override(item: str) -> tuple[str, Any]:
    """``"search.max_nodes=32"`` -> ``("search.max_nodes", 32)`` (value parsed as YAML)."""
    text = item[2:] if item.startswith("--") else item
    if "=" not in text:
        raise ConfigError(f"override {item!r} must look like section.field=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Strictly build dataclass ``cls`` from a nested mapping (unknown keys are errors)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, found {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown config key {prefix + unknown[0]!r}; known keys under "
            f"{prefix.rstrip('.') or 'the top level'}: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, prefix + name)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: {exc}") from None


def to_dict(obj: Any) -> dict[str, Any]:
    """Dataclass -> plain nested dict (YAML/JSON-ready)."""
    return dataclasses.asdict(obj)


def dump_yaml(obj: Any) -> str:
    return yaml.safe_dump(to_dict(obj), sort_keys=False)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value if value is not None else {}, prefix=key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: {value!r} does not fit {tp}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {list(args)}, found {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, found {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(inner, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, found {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, found {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected an integer, found {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _YAML11_EXPONENT.fullmatch(value.strip()):
            return float(value)  # "1e-06": a float everywhere but in YAML 1.1, which wants "1.0e-06"
        raise ConfigError(f"{key}: expected a number, found {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, found {value!r}")
    return value


def _deep_merge(base: dict[str, Any], new: dict[str, Any], source: str) -> dict[str, Any]:
    out = dict(base)
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v, source)
        else:
            out[k] = v
    return out


def _leaf_keys(data: dict[str, Any], prefix: str = "") -> Iterable[str]:
    """Dotted keys of the non-mapping (or empty mapping) values in ``data``."""
    for k, v in data.items():
        if isinstance(v, dict) and v:
            yield from _leaf_keys(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}"


_ERROR_KEY = re.compile(r"unknown config key '([^']+)'|([A-Za-z_][\w-]*(?:\.[\w-]+|\[\d+\])*):")


def _source_of(message: str, sources: dict[str, str | None]) -> str | None:
    """The file that set the field a :func:`from_dict` error names: the field itself, the mapping it
    lies in, or (a section-level error) the one file that set fields under it; None when no file
    (or an override) did."""
    m = _ERROR_KEY.match(message)
    if not m:
        return None
    parts = re.sub(r"\[\d+\]", "", m.group(1) or m.group(2)).split(".")
    for i in range(len(parts), 0, -1):
        key = ".".join(parts[:i])
        if key in sources:
            return sources[key]
    key = ".".join(parts)
    under = {v for k, v in sources.items() if k.startswith(key + ".")}
    return under.pop() if len(under) == 1 else None


def _set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(f"override key {key!r} is malformed")
    cur = d
    for p in parts[:-1]:
        nxt = cur.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[p] = nxt
        cur = nxt
    cur[parts[-1]] = value
