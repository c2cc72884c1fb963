"""Load a recipe strictly: dataclass defaults, then the YAML file, then ``key.sub=value`` overrides.

1. The defaults of :class:`RecipeConfig` become a plain dict (the dataclasses are the only
   place defaults are written).
2. The YAML file is merged into it, mapping by mapping; a list replaces the list.
3. Each override is applied in order; its value is YAML (``3`` is an int, ``[1, 2]`` a list).
4. :func:`from_dict` turns the dict back into dataclasses, rejecting unknown keys (with a
   did-you-mean) and values of the wrong type, naming the full key.
5. :func:`rlhf.config.validate.validate` checks values and cross-field constraints.

YAML is read with a safe loader only (:mod:`rlhf.config.yaml_text`): a recipe is data and can
never run code. List items are addressed by index in dotted form, in messages and overrides
alike: ``reward.sources.0.weight``.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import math
import textwrap
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from rlhf.config.errors import ConfigError
from rlhf.config.schema import RecipeConfig, Seed
from rlhf.config.validate import is_python_file, validate
from rlhf.config.yaml_text import MAX_DEPTH, parse_yaml, plain_copy, read_yaml_file

__all__ = ["apply_override", "config_from_dict", "field_docs", "from_dict", "load_config",
           "load_recipe", "recipe_from_dict", "save_resolved", "to_dict"]

_SCALAR_NAMES = {int: "an integer", float: "a float", bool: "a boolean (true or false)",
                 str: "a string", Seed: "an integer"}
_PLURALS = {int: "integers", float: "floats", str: "strings", Seed: "integers"}
_INVALID = object()

INT_RANGE = (-(2**63), 2**63 - 1)
"""Integers a recipe may hold: what fits in 64 bits (torch tensors, C libraries)."""
SEED_RANGE = (0, 2**31 - 1)
"""Seeds a recipe may hold: numpy and vLLM take 0 to 2**32 - 1 (torch and `random` take more);
the rest of that range is room for the per-rank offsets added to a seed."""



def load_recipe(path: str | Path | None, overrides: Sequence[str] = ()) -> RecipeConfig:
    """Read the recipe at ``path`` (None: defaults only), apply ``overrides`` and validate it.

    A relative ``.py`` path of a reward function in the file is relative to the file's
    directory (a recipe and its reward file travel together).
    """
    data = {}
    if path is not None:
        data = read_yaml_file(Path(path))
        _anchor_function_paths(data, Path(path).resolve().parent)
    return recipe_from_dict(data, overrides)


def recipe_from_dict(data: Mapping[str, Any], overrides: Sequence[str] = ()) -> RecipeConfig:
    """Steps 1-5 of the module docstring for recipe data already in memory.

    Reward-function ``.py`` paths still relative here (from ``data`` without a file, or from an
    override) are made absolute against the current directory, so the resolved config saved in
    a run directory loads from anywhere.
    """
    cfg = config_from_dict(data, RecipeConfig, overrides)
    for i, source in enumerate(cfg.reward.sources):
        if source.type == "function" and is_python_file(source.path):
            source.path = _absolute(source.path, Path.cwd(), f"reward.sources.{i}.path")
    validate(cfg)
    return cfg


def load_config(path: str | Path | None, cls: type, overrides: Sequence[str] = ()) -> Any:
    """Steps 1-4 of the module docstring for any root dataclass ``cls`` whose fields all have
    defaults (another command's recipe, e.g. ``rlhf rm``); the caller validates values."""
    data = {} if path is None else read_yaml_file(Path(path))
    return config_from_dict(data, cls, overrides)


def config_from_dict(data: Mapping[str, Any], cls: type, overrides: Sequence[str] = ()) -> Any:
    """Steps 1-4 of the module docstring for data already in memory and root dataclass ``cls``."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"the recipe must be a mapping of keys, got {_show(data)}")
    merged = _merge(to_dict(cls()), plain_copy(dict(data), "the recipe"))
    for text in overrides:
        apply_override(merged, text)
    return from_dict(merged, cls)


def _anchor_function_paths(data: dict[str, Any], base: Path) -> None:
    """Rewrite relative ``.py`` paths of ``reward.sources`` in raw file data to sit in ``base``.

    The data is not checked yet, so anything of an unexpected shape is left for
    :func:`from_dict` to report.
    """
    reward = data.get("reward")
    sources = reward.get("sources") if isinstance(reward, dict) else None
    for i, source in enumerate(sources if isinstance(sources, list) else ()):
        path = source.get("path") if isinstance(source, dict) else None
        if isinstance(path, str) and is_python_file(path):
            source["path"] = _absolute(path, base, f"reward.sources.{i}.path")


def _absolute(path: str, base: Path, key: str) -> str:
    """``path`` resolved against ``base`` (an absolute path stays); one no OS can hold, a
    ConfigError naming ``key``."""
    try:
        return str((base / Path(path).expanduser()).resolve())
    except (ValueError, RuntimeError, OSError) as err:  # a NUL byte, ~unknown_user, ...
        raise ConfigError(f"{key}: {_show(path)} is not a usable file path ({err})") from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain dicts, lists and scalars (what a YAML recipe would hold)."""
    return dataclasses.asdict(cfg)


def save_resolved(cfg: RecipeConfig, path: str | Path) -> Path:
    """Write the complete config as YAML (``load_recipe`` of it gives back an equal config)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)
    path.write_text("# The resolved recipe of this run: every key, defaults included.\n" + text,
                    encoding="utf-8")
    return path


def _merge(base: Any, update: Any) -> Any:
    """``update`` merged into ``base``: mappings merge key by key, anything else replaces."""
    if not (isinstance(base, dict) and isinstance(update, dict)):
        return update
    merged = dict(base)
    for key, item in update.items():
        merged[key] = _merge(base[key], item) if key in base else item
    return merged


def apply_override(data: dict[str, Any], text: str) -> None:
    """Apply one ``key.sub=value`` override to plain recipe ``data`` in place.

    Missing keys are created (so an unknown key is reported by :func:`from_dict` with its
    did-you-mean); a list item is addressed by its index; a mapping value merges.
    """
    if not isinstance(text, str):
        raise ConfigError(f"override {text!r} must be a string like key.sub=value")
    key, sep, raw = text.partition("=")
    keys = key.strip().split(".")
    if not sep or "" in keys:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    if len(keys) > MAX_DEPTH:
        raise ConfigError(f"override {_show(text)}: the key has {len(keys)} parts, more than {MAX_DEPTH}")
    source = f"override {_show(text, 120)}"
    value = "" if not raw.strip() else plain_copy(parse_yaml(raw, source), source, depth=len(keys))
    node: Any = data
    for depth, name in enumerate(keys):
        where = ".".join(keys[:depth])
        if isinstance(node, list):
            name = _list_index(node, name, where, source)
        elif not isinstance(node, dict):
            raise ConfigError(f"{source}: {where} is {_show(node)}, which has no key {name!r}")
        present = isinstance(node, list) or name in node  # list indices are checked above
        if depth == len(keys) - 1:
            node[name] = _merge(node[name], value) if present else value
        else:
            node = node[name] if present else node.setdefault(name, {})


def _list_index(items: list, name: str, where: str, source: str) -> int:
    """The list index that override segment ``name`` stands for: 0 to len - 1 (no negative
    indices: ``-1`` would name another item once the list grows)."""
    try:
        index = int(name) if name.isascii() else None
    except ValueError:
        index = None
    if index is None:
        raise ConfigError(f"{source}: {where} is a list; address an item by its index, "
                          f"like {where}.0.{name}")
    if 0 <= index < len(items):
        return index
    problem = "negative indices are not supported" if index < 0 else f"there is no item {index}"
    valid = {0: "it is empty", 1: f"its only item is {where}.0"}.get(len(items), f"its items are {where}.0 to {where}.{len(items) - 1}")
    raise ConfigError(f"{source}: {where} is a list and {problem}: {valid} "
                      f"(or set the whole list with {where}=[...])")


def from_dict(data: Any, cls: type, where: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, strictly; ``where`` is its key path for messages.

    Keys missing from ``data`` take the dataclass defaults; an unknown key or a value of the
    wrong type is a ConfigError naming the full key.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'the recipe'}: expected a mapping, got {_show(data)}")
    hints = _type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in hints:
            raise ConfigError(_unknown_key_message(path, str(key), list(hints), where))
        kwargs[key] = _convert(value, hints[key], path)
    return cls(**kwargs)


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """Field name -> resolved type (the schema uses postponed annotations)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


REMOVED_KEYS = {
    "algorithm.norm_by_std": "Dr. GRPO is its own estimator now: set algorithm.advantage=drgrpo (and drop algorithm.norm_by_std)",
}
"""Keys that recipes used to have, and what to write instead."""


def _unknown_key_message(path: str, key: str, names: list[str], where: str) -> str:
    """'actor.lrr: unknown key; did you mean 'actor.lr'?', or the valid keys of the section;
    a key that was removed says what replaces it."""
    if path in REMOVED_KEYS:
        return f"{path}: this key was removed; {REMOVED_KEYS[path]}"
    close = difflib.get_close_matches(key, names, n=1)
    if close:
        suggestion = f"{where}.{close[0]}" if where else close[0]
        return f"{path}: unknown key; did you mean '{suggestion}'?"
    section = f"the keys of '{where}'" if where else "the top-level keys"
    return f"{path}: unknown key; {section} are: {', '.join(names)}"


def _convert(value: Any, tp: Any, path: str) -> Any:
    """``value`` checked against (and coerced to) schema type ``tp``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(tp):
            return None
        options = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        if len(options) > 1:
            return _convert_alternatives(value, options, path, tp)
        (inner,) = options
        if inner in _SCALAR_NAMES:
            return _scalar(value, inner, path, described=tp)
        return _convert(value, inner, path)
    if dataclasses.is_dataclass(tp):
        return from_dict(value, tp, path)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {_show(value)}")
        (item_tp,) = typing.get_args(tp)
        return [_convert(item, item_tp, f"{path}.{i}") for i, item in enumerate(value)]
    if origin is dict:
        return _convert_dict(value, tp, path)
    return _scalar(value, tp, path, described=tp)


def _convert_alternatives(value: Any, options: list, path: str, tp: Any) -> Any:
    """A field of several types (``int | list[int]``): a list value is read as the list type,
    any other as the first scalar type that takes it."""
    lists = [option for option in options if typing.get_origin(option) is list]
    if isinstance(value, list) and lists:
        return _convert(value, lists[0], path)
    for option in options:
        if option in _SCALAR_NAMES and _coerce(value, option) is not _INVALID:
            return _scalar(value, option, path, described=tp)
    raise ConfigError(f"{path}: expected {_describe(tp)}, got {_show(value)}")


def _convert_dict(value: Any, tp: Any, path: str) -> dict:
    """A ``dict[K, V]`` field: any mapping, with keys of type K and values converted to V."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}: expected a mapping, got {_show(value)}")
    key_tp, item_tp = typing.get_args(tp)
    for key in value:
        if key_tp is str and not isinstance(key, str):
            raise ConfigError(f"{path}: keys must be strings, got {_show(key)}")
    return {key: _convert(item, item_tp, f"{path}.{key}") for key, item in value.items()}


def _scalar(value: Any, tp: type, path: str, described: Any) -> Any:
    """A scalar field's value; a mismatch is reported as 'expected <described>', an integer
    out of range (:data:`INT_RANGE`, :data:`SEED_RANGE`) with the range."""
    converted = _coerce(value, int if tp is Seed else tp)
    if converted is _INVALID:
        hint = " (YAML reads yes/no/on/off as booleans: quote it)" if tp is str and (
            isinstance(value, bool)) else ""
        raise ConfigError(f"{path}: expected {_describe(described)}, got {_show(value)}{hint}")
    if tp in (int, Seed):
        _check_range(converted, tp, path)
    return converted


def _check_range(number: int, tp: type, path: str) -> None:
    """An integer field's value within :data:`INT_RANGE` (a seed: :data:`SEED_RANGE`)."""
    low, high = SEED_RANGE if tp is Seed else INT_RANGE
    if low <= number <= high:
        return
    if tp is Seed:
        raise ConfigError(f"{path}: {_show(number)} is not a usable seed; a seed is a whole number from {low} to {high} "
                          "(numpy and vLLM take seeds below 2**32, and per-rank offsets are added to it)")
    raise ConfigError(f"{path}: {_show(number)} does not fit in a 64-bit integer ({low} to {high})")


def _coerce(value: Any, tp: type) -> Any:
    """``value`` as ``tp`` by the loader's coercion rules, or ``_INVALID``.

    Bools are never numbers. Floats also accept numeric strings, because YAML 1.1 reads
    ``1e-6`` (no dot) as a string. Strings also accept numbers (a name like ``7`` or ``1.0``).
    """
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is bool:
        return value if isinstance(value, bool) else _INVALID
    if tp is int:
        return value if is_number and isinstance(value, int) else _INVALID
    if tp is str:
        return value if isinstance(value, str) else str(value) if is_number else _INVALID
    if tp is float:
        if not (is_number or isinstance(value, str)):
            return _INVALID
        try:
            number = float(value)
        except (ValueError, OverflowError):
            return _INVALID
        return number if math.isfinite(number) else _INVALID
    raise TypeError(f"the config schema uses unsupported type {tp!r}")


def _describe(tp: Any) -> str:
    """'a float', 'an integer or null', ... for type error messages."""
    if tp in _SCALAR_NAMES:
        return _SCALAR_NAMES[tp]
    args = [arg for arg in typing.get_args(tp) if arg is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        optional = type(None) in typing.get_args(tp)
        return " or ".join([_describe(arg) for arg in args] + (["null"] if optional else []))
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp) or (Any,)
        return f"a list of {_PLURALS[item]}" if item in _PLURALS else "a list"
    return "a mapping"


def _show(value: Any, limit: int = 60) -> str:
    """A short repr of a user's value for messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> the docstring literal written right after the field ('' if none)."""
    return dict(_field_docs(cls))


@functools.cache
def _field_docs(cls: type) -> dict[str, str]:
    """Cached work of :func:`field_docs` (parses the class source once)."""
    docs = {}
    for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):  # a subclass's doc wins
        docs.update(_own_field_docs(klass))
    return {f.name: docs.get(f.name, "") for f in dataclasses.fields(cls)}


def _own_field_docs(cls: type) -> dict[str, str]:
    """Docstrings of the fields written in `cls`'s own body."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    docs = {}
    for stmt, after in zip(body, body[1:]):
        if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            docs[stmt.target.id] = inspect.cleandoc(after.value.value)
    return docs
