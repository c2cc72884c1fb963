"""Recipe lookup for the command line: a recipe given by path or by shipped name, which command
a recipe file is for, and the grouped listing of `rlhf recipes`.

There are two kinds of recipe: RL recipes (:class:`rlhf.config.schema.RecipeConfig`, run by
`rlhf train`, `sft`, `plan`, `doctor`, `eval`) and reward-model recipes
(:class:`reward_models.config.RMRecipeConfig`, run by `rlhf rm`). A recipe given to a command
of the other kind fails with one message naming the command it is for, instead of a list of
unknown keys. Importing this module imports neither torch nor yaml (`rlhf --help` stays instant).
"""

from __future__ import annotations

from pathlib import Path

from rlhf.config.errors import ConfigError

RECIPES_DIR = Path(__file__).resolve().parents[2] / "recipes"
"""Shipped recipes (a source checkout or editable install)."""

RL, RM = "rl", "rm"
"""The two kinds of recipe."""

RUN_WITH = {RL: "rlhf train", RM: "rlhf rm"}
"""The command that runs a recipe of each kind."""

TITLES = {RL: "RL recipes (rlhf train RECIPE; also sft, plan, validate, doctor, eval)",
          RM: "Reward-model recipes (rlhf rm RECIPE; also validate)"}
"""Headings of `rlhf recipes`."""


def resolve_recipe(name: str) -> Path:
    """A recipe path as given, or the shipped recipe of that name (`quickstart`)."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = RECIPES_DIR / f"{name.removesuffix('.yaml')}.yaml"
    if shipped.is_file():
        return shipped
    raise ConfigError(f"recipe {name!r} is neither a file nor a shipped recipe (see `rlhf recipes`)")


def resolve_recipe_for(name: str, kind: str, command: str) -> Path:
    """:func:`resolve_recipe` for `command` (e.g. 'rlhf sft'), which runs recipes of `kind` (RL or
    RM): a recipe of the other kind is refused with the command that runs it."""
    path = resolve_recipe(name)
    found = recipe_kind(path)
    if found is not None and found != kind:
        what = "a reward-model recipe" if found == RM else "an RL recipe"
        runs = "RL recipes" if kind == RL else "reward-model recipes"
        raise ConfigError(f"{path} is {what}: run it with `{RUN_WITH[found]} {name}` "
                          f"(`{command}` runs {runs}; `rlhf recipes` lists both kinds)")
    return path


def recipe_kind(path: Path) -> str | None:
    """RM for a reward-model recipe (see :func:`reward_models.config.is_rm_recipe_data`), RL for
    a file whose top level has a section only RL recipes have (`trainer`, `rollout`, ...); None
    when the file says neither (empty, unreadable, not a mapping: the loader then says what is
    wrong)."""
    from reward_models.config import is_rm_recipe_data, rl_only_keys

    data = _read_yaml(path)
    if is_rm_recipe_data(data):
        return RM
    return RL if isinstance(data, dict) and {str(key) for key in data} & rl_only_keys() else None


def _read_yaml(path: Path) -> object:
    """The YAML data at `path`, or None when it cannot be read or parsed."""
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


def shipped_recipes() -> dict[str, list[tuple[str, str]]]:
    """RL and RM -> [(name as `rlhf` takes it, description)] of every shipped recipe."""
    groups: dict[str, list[tuple[str, str]]] = {RL: [], RM: []}
    for path in sorted(RECIPES_DIR.rglob("*.yaml")):
        data = _read_yaml(path)
        description = str(data.get("description") or "") if isinstance(data, dict) else ""
        name = str(path.relative_to(RECIPES_DIR).with_suffix(""))
        groups[recipe_kind(path) or RL].append((name, description))
    return groups


def print_recipes() -> None:
    """`rlhf recipes`: the shipped recipes grouped by the command that runs them."""
    for kind, recipes in shipped_recipes().items():
        print(TITLES[kind] + ":")
        for name, description in recipes:
            print(f"  {name:<32} {description}")
