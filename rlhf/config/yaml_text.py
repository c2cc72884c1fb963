"""Recipe YAML as plain data, safely: the reading half of :mod:`rlhf.config.loader`.

A recipe is data and can never run code: it is read with a ``yaml.SafeLoader`` subclass, so a
tag such as ``!!python/object/apply`` is refused, never constructed. On top of YAML's own rules
a recipe may not write the same key twice in one mapping (YAML keeps the last silently, so the
first setting would vanish without a word), dates stay strings (``output_dir: 2024-05-01`` is a
name), and nesting deeper than :data:`MAX_DEPTH` or more than :data:`MAX_NODES` values (a
recursive or exploding alias) is refused. Every failure is a ConfigError naming the file or
the override, with the line and column where YAML gives them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from rlhf.config.errors import ConfigError

MAX_DEPTH = 64
"""Deepest nesting accepted in recipe data, counted from the top-level mapping (deeper is a
recursive alias or a mistake)."""
MAX_NODES = 100_000
"""Most values accepted in YAML data (guards against exponential alias expansion)."""


class RecipeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that keeps dates as strings and refuses a key written twice in one mapping."""

    def compose_mapping_node(self, anchor: Any) -> yaml.MappingNode:
        node = super().compose_mapping_node(anchor)
        seen: dict[tuple[str, str], int] = {}
        for key, _ in node.value:  # as written: before `<<` merges, which may repeat keys
            if not isinstance(key, yaml.ScalarNode) or key.tag.endswith(":merge"):
                continue
            if (key.tag, key.value) in seen:
                raise yaml.composer.ComposerError(None, None, f"duplicate key {key.value!r} (also on line "
                                                  f"{seen[key.tag, key.value]}); YAML would keep only the last", key.start_mark)
            seen[key.tag, key.value] = key.start_mark.line + 1
        return node


RecipeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if not tag.endswith(":timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
# an explicit `!!timestamp 2024-05-01` stays a string too: a date would not survive the saved
# config.yaml (read back without the tag, it is a string)
RecipeLoader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_scalar)


def read_yaml_file(path: Path) -> dict[str, Any]:
    """The top-level mapping of a recipe file (an empty file is an empty mapping), as a plain copy."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"recipe file not found: {path}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    except OSError as err:
        raise ConfigError(f"cannot read recipe file {path}: {err.strerror or err}") from None
    data = parse_yaml(text, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        shown = repr(data) if len(repr(data)) <= 60 else repr(data)[:57] + "..."
        raise ConfigError(f"{path}: the top level must be a mapping of recipe keys "
                          f"(like 'actor: {{lr: 1.0e-6}}'), got {shown}")
    return plain_copy(data, str(path))


def parse_yaml(text: str, source: str) -> Any:
    """YAML ``text`` as plain data; any parse failure is a ConfigError naming ``source``."""
    try:
        return yaml.load(text, Loader=RecipeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f"{source}, line {mark.line + 1}, column {mark.column + 1}" if mark else source
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{where}: invalid YAML ({problem})") from None
    except (ValueError, TypeError, AttributeError, KeyError, IndexError, OverflowError, RecursionError) as err:
        # SafeLoader's constructors raise these on malformed explicit tags ('!!float abc',
        # '!!bool maybe'), its composer on very deep nesting
        raise ConfigError(f"{source}: invalid YAML ({type(err).__name__}: {err})") from None


def plain_copy(value: Any, source: str, depth: int = 0) -> Any:
    """A fresh copy of YAML data found ``depth`` levels below the top of a recipe: an override
    then edits one place even where the file used a YAML alias, and recursive or exploding
    alias structures are refused."""
    count = 0

    def copy(node: Any, depth: int) -> Any:
        nonlocal count
        count += 1
        if depth > MAX_DEPTH or count > MAX_NODES:
            raise ConfigError(f"{source}: data nested too deeply (over {MAX_DEPTH} levels) or too large "
                              f"(over {MAX_NODES} values; a recursive YAML alias?)")
        if isinstance(node, dict):
            return {key: copy(item, depth + 1) for key, item in node.items()}
        if isinstance(node, list):
            return [copy(item, depth + 1) for item in node]
        return node

    return copy(value, depth)
