"""Experiment configs: loading, command-line overrides, saving.

An experiment config is a Python file defining ``get_config(arg=None)`` that
returns an ``ml_collections.ConfigDict``; ``arg`` selects a variant (e.g.
``mini``). It may also define ``sweep(arg=None)`` yielding dicts of dotted
overrides (see ``fdx.grid``). A config spec is ``path/to/file.py`` or
``path/to/file.py:arg``.
"""

from __future__ import annotations

import ast
import copy
import difflib
import hashlib
import importlib.util
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import ml_collections

from fdx import storage

ConfigDict = ml_collections.ConfigDict

_PREFIXES = ("--config.", "config.")


class UnknownKeyError(KeyError):
    """An unknown config key; prints as its message, not quoted as a KeyError's."""

    def __str__(self) -> str:
        return str(self.args[0])


def split_spec(spec: str) -> tuple[Path, str | None]:
    """Splits ``file.py[:arg]`` into the file path and the arg (None if absent)."""
    path, sep, arg = spec.partition(".py:")
    if sep:
        return Path(path + ".py"), arg or None
    return Path(spec), None


def import_config_file(spec: str) -> tuple[ModuleType, str | None]:
    """Imports the config file named by ``spec``; returns (module, arg)."""
    path, arg = split_spec(spec)
    if not path.is_file():
        nearby = [p.name for p in path.parent.glob("*.py")] if path.parent.is_dir() else []
        close = difflib.get_close_matches(path.name, nearby, n=1)
        hint = f"did you mean {path.with_name(close[0])}?" if close else f"paths are relative to {Path.cwd()}"
        raise FileNotFoundError(f"config file not found: {path} (from spec {spec!r}); {hint}")
    path = path.resolve()
    name = "fdx_config_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # lets dataclasses/pickle in the file resolve it
    module_spec.loader.exec_module(module)
    return module, arg


def load_config(spec: str) -> ConfigDict:
    """Returns ``get_config(arg)`` of the config file named by ``spec``."""
    return config_from_module(*import_config_file(spec))


def config_from_module(module: ModuleType, arg: str | None) -> ConfigDict:
    """Returns ``module.get_config(arg)``, checking that it exists and returns a ConfigDict."""
    if not hasattr(module, "get_config"):
        raise ValueError(f"config file {module.__file__} defines no get_config(arg=None)")
    config = module.get_config(arg)
    if not isinstance(config, ConfigDict):
        raise ValueError(
            f"get_config({arg!r}) in {module.__file__} returned "
            f"{type(config).__name__}, expected ml_collections.ConfigDict"
        )
    return config


def parse_options(arg: str | None, allowed: Sequence[str], where: str) -> dict[str, Any]:
    """A config file's ``arg``: ``'mini,variant=cbam'`` → ``{'mini': True, 'variant': 'cbam'}``; keys must be in
    ``allowed`` (the error names ``where``, the config file)."""
    options = {}
    for item in filter(None, (arg or "").split(",")):
        key, has_value, value = item.partition("=")
        if key not in allowed:
            raise ValueError(
                f"{where}: unknown option {key!r} in {arg!r}; options are {', '.join(allowed)}, "
                "each given as option or option=value, comma-separated"
            )
        options[key] = value if has_value else True
    return options


def option_choice(options: Mapping[str, Any], key: str, choices: Sequence[str], default: str, where: str) -> str:
    """``options[key]`` (or ``default``), which must be one of ``choices``."""
    value = options.get(key, default)
    if value not in choices:
        raise ValueError(f"{where}: unknown {key} {value!r}; choose from {', '.join(choices)}")
    return value


def table_sweep(
    get_config,
    arg: str | None,
    allowed: Sequence[str],
    tables: Mapping[str, Sequence[Mapping[str, Any]]],
    default_table: str,
    where: str,
) -> Iterator[dict[str, Any]]:
    """A config file's ``sweep(arg)``: the points of ``tables[table]`` (option ``table=T`` of ``arg``, default
    ``default_table``), each point's options on top of the rest of ``arg``, become ``get_config`` configs; each point
    yields every dotted key that differs between the points or from ``get_config(arg)``, at its value in the point."""
    from flax import traverse_util

    options = parse_options(arg, allowed, where)
    points = tables[option_choice(options, "table", tuple(tables), default_table, where)]

    def flat(config: ConfigDict) -> dict[str, Any]:
        return traverse_util.flatten_dict(config.to_dict(), sep=".")

    base = flat(get_config(arg))
    configs = [
        flat(get_config(",".join(k if v is True else f"{k}={v}" for k, v in {**options, **point}.items())))
        for point in points
    ]
    keys = [
        key
        for key in base
        if any(c.get(key) != base[key] for c in configs) or len({repr(c.get(key)) for c in configs}) > 1
    ]
    for config in configs:
        yield {key: config[key] for key in keys if key in config}


def _dotted_keys(config: ConfigDict, prefix: str = "") -> Iterator[str]:
    """Yields every dotted key of ``config``, nested ConfigDicts included."""
    for key, value in config.items():
        yield prefix + key
        if isinstance(value, ConfigDict):
            yield from _dotted_keys(value, f"{prefix}{key}.")


def resolve_key(config: ConfigDict, key: str) -> tuple[ConfigDict, str]:
    """Resolves a dotted key to (containing ConfigDict, last component)."""
    *path, leaf = key.split(".")
    parent = config
    for part in path:
        parent = parent.get(part) if isinstance(parent, ConfigDict) else None
    if not isinstance(parent, ConfigDict) or leaf not in parent:
        keys = list(_dotted_keys(config))
        close = difflib.get_close_matches(key, keys, n=3) or [k for k in keys if k.rsplit(".", 1)[-1] == leaf][:3]
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise UnknownKeyError(f"unknown config key {key!r}{hint}")
    return parent, leaf


def _literal_or_str(text: str) -> Any:
    """``ast.literal_eval(text)``, or ``text`` itself if it is not a literal."""
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError):
        return text


def _parse(text: str, field_type: type) -> Any:
    """Parses a command-line value for a field of type ``field_type``."""
    if field_type is bool:
        lowered = text.strip().lower()
        if lowered not in ("true", "false", "1", "0"):
            raise ValueError("expected true/false/1/0")
        return lowered in ("true", "1")
    if field_type in (int, float):
        return field_type(text)
    if field_type is str:
        # A quoted Python string literal is unquoted ('3' -> "3"); see render_value.
        value = _literal_or_str(text)
        return value if isinstance(value, str) else text
    if field_type in (tuple, list):
        value = _literal_or_str(text)
        if isinstance(value, str):  # comma-separated: a,b or 1,x
            value = [_literal_or_str(item.strip()) for item in text.split(",") if item.strip()]
        return field_type(value if isinstance(value, (tuple, list)) else [value])
    return _literal_or_str(text)  # None-valued fields and any other type


def render_value(value: Any) -> str:
    """Renders a value as command-line text that ``apply_overrides`` parses back to it."""
    if isinstance(value, str) and _literal_or_str(value) == value:
        return value
    return repr(value)


def _normalize(overrides: Mapping[str, Any] | Sequence[str]) -> list[tuple[str, Any, bool]]:
    """Returns [(dotted key, value, value_is_command_line_text)]."""
    if isinstance(overrides, Mapping):
        return [(key, value, False) for key, value in overrides.items()]
    items = []
    for arg in overrides:
        key, sep, text = arg.partition("=")
        if not sep:
            raise ValueError(f"override {arg!r} is not of the form [--config.]key=value")
        for prefix in _PREFIXES:
            key = key.removeprefix(prefix)
        items.append((key, text, True))
    return items


def apply_overrides(config: ConfigDict, overrides: Mapping[str, Any] | Sequence[str]) -> ConfigDict:
    """Returns a locked copy of ``config`` with ``overrides`` applied.

    ``overrides`` is a list of ``[--config.|config.]dotted.key=value`` strings,
    whose values are parsed according to the existing field's type, or a dict
    ``{dotted_key: value}`` of Python values. Unknown keys raise KeyError with
    suggestions; unparsable or ill-typed values raise ValueError.
    """
    config = copy.deepcopy(config)
    for key, value, from_text in _normalize(overrides):
        parent, leaf = resolve_key(config, key)
        field_type = parent.get_type(leaf)
        try:
            if field_type is ConfigDict:
                raise TypeError(f"it is a nested ConfigDict; override its fields ({key}.<field>)")
            parent[leaf] = _parse(value, field_type) if from_text else value
        except (ValueError, TypeError) as e:
            raise ValueError(f"bad value {value!r} for config key {key!r} (expected {field_type.__name__}): {e}") from e
    config.lock()
    return config


def save_config(config: ConfigDict, workdir: str | os.PathLike) -> None:
    """Writes ``workdir/config.json`` and the human-readable ``workdir/config.txt``."""
    workdir = storage.path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(config.to_json_best_effort(sort_keys=True, indent=2))
    (workdir / "config.txt").write_text(str(config))


def load_saved_config(workdir: str | os.PathLike) -> ConfigDict:
    """Reads back ``workdir/config.json`` as a locked ConfigDict (tuples come back as lists)."""
    path = storage.path(workdir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no {path.name} in {workdir}: no run was started in this workdir "
            "(`fdx train --config FILE.py --workdir DIR` starts one)"
        )
    config = ConfigDict(json.loads(path.read_text()))
    config.lock()
    return config


def parse_cli(argv: Sequence[str]) -> tuple[str | None, list[str], list[str]]:
    """Splits ``argv`` into (config spec, ``--config.k=v`` overrides, remaining args).

    Accepts ``--config SPEC``, ``--config=SPEC``, ``--config.k=v`` and
    ``--config.k v``; the remaining args are left for argparse.
    """
    spec, overrides, rest = None, [], []
    args = iter(argv)
    for arg in args:
        flag, has_value, value = arg.partition("=")
        if flag == "--config" or flag.startswith("--config."):
            if not has_value:
                value = next(args, None)
                if value is None:
                    raise ValueError(f"{flag} needs a value")
            if flag != "--config":
                overrides.append(f"{flag}={value}")
            elif spec is not None:
                raise ValueError(f"--config given twice: {spec!r} and {value!r}")
            else:
                spec = value
        else:
            rest.append(arg)
    return spec, overrides, rest
