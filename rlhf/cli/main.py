"""`rlhf train | sft | validate | recipes`: run recipes from the command line.

Exit status: 0 success, 2 a usage or config error (one-paragraph message, no traceback),
1 a runtime failure (traceback only with --debug). Importing this module imports neither torch
nor any backend, so `rlhf --help` is instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from rlhf.config.errors import ConfigError

RECIPES_DIR = Path(__file__).resolve().parents[2] / "recipes"
"""Shipped recipes (a source checkout or editable install)."""


def resolve_recipe(name: str) -> Path:
    """A recipe path as given, or the shipped recipe of that name (`quickstart`)."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = RECIPES_DIR / f"{name.removesuffix('.yaml')}.yaml"
    if shipped.is_file():
        return shipped
    raise ConfigError(f"recipe {name!r} is neither a file nor a shipped recipe (see `rlhf recipes`)")


def load(args: argparse.Namespace):
    from rlhf.config.loader import load_recipe

    path = resolve_recipe(args.recipe)
    return path, load_recipe(path, args.overrides)


def cmd_train(args: argparse.Namespace) -> int:
    path, config = load(args)
    from rlhf.controller.train import train

    train(config, path.stem)
    return 0


def cmd_sft(args: argparse.Namespace) -> int:
    path, config = load(args)
    from rlhf.controller.train import sft

    sft(config, path.stem)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    path, config = load(args)
    print(f"{path}: valid ({config.description or 'no description'})")
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    import yaml

    for path in sorted(RECIPES_DIR.rglob("*.yaml")):
        with path.open() as handle:
            description = (yaml.safe_load(handle) or {}).get("description", "")
        print(f"{str(path.relative_to(RECIPES_DIR).with_suffix('')):<32} {description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlhf", description="Reinforcement learning for open LLMs: run a recipe YAML, override keys with key.sub=value.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, handler, text in (
        ("train", cmd_train, "run a recipe: optional SFT warm start, then RL"),
        ("sft", cmd_sft, "run only the supervised warm start of a recipe"),
        ("validate", cmd_validate, "check a recipe and overrides without running anything"),
    ):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("recipe", help="a recipe YAML path or the name of a shipped recipe")
        sub.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. trainer.total_steps=50")
        sub.set_defaults(handler=handler)
    commands.add_parser("recipes", help="list the shipped recipes").set_defaults(handler=cmd_recipes)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as error:
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a runtime failure: one line unless --debug
        if args.debug:
            raise
        print(f"error: {type(error).__name__}: {error} (run with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
