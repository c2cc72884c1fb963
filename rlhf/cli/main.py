"""`rlhf train | sft | rm | validate | plan | export | eval | report | doctor | recipes`: run recipes from the command line.

After the command's name, options, `key.sub=value` overrides and `--debug` go in any order.
Exit status: 0 success, 2 a usage or config error (one-paragraph message, no traceback),
1 a runtime failure (one paragraph naming what failed; tracebacks, a failing reward function's
included, only with --debug); a very long message is cut in the middle. Importing this module
imports neither torch nor any backend, so `rlhf --help` is instant.
"""

from __future__ import annotations

import argparse
import functools
import sys
from typing import TYPE_CHECKING, Sequence

from rlhf.cli import eval_cmd
from rlhf.cli import report_cmd
from rlhf.cli.recipes import RECIPES_DIR, RL, RM, print_recipes, resolve_recipe, resolve_recipe_for
from rlhf.config.errors import ConfigError
from rlhf.logging.quiet import quiet_libraries, set_verbose

if TYPE_CHECKING:
    from rlhf.config.schema import RecipeConfig

__all__ = ["RECIPES_DIR", "build_parser", "main", "resolve_recipe", "shorten"]

VERBOSE_FLAG = "--verbose"
"""Show third-party log lines, warnings and progress bars (see rlhf.logging.quiet); also in
the run's worker processes, which inherit RLHF_VERBOSE=1."""

MAX_MESSAGE_CHARS = 2000
"""Longest error line printed; a longer message keeps its start and end (see :func:`shorten`)."""


def load(args: argparse.Namespace):
    """The RL recipe of `args` (path, config), checked against the registries; a reward-model
    recipe is refused naming `rlhf rm`."""
    from rlhf.controller.preflight import load_checked_recipe

    path = resolve_recipe_for(args.recipe, RL, f"rlhf {args.command}")
    return path, load_checked_recipe(path, args.overrides)


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


def cmd_rm(args: argparse.Namespace) -> int:
    from reward_models.config import load_rm_recipe
    from reward_models.run import run_rm_recipe

    run_rm_recipe(load_rm_recipe(resolve_recipe_for(args.recipe, RM, "rlhf rm"), args.overrides))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from reward_models.config import is_rm_recipe_file, load_rm_recipe

    from rlhf.controller.preflight import unreachable_models
    from rlhf.models.reachable import model_reachable

    path = resolve_recipe(args.recipe)
    if is_rm_recipe_file(path):
        config = load_rm_recipe(path, args.overrides)
        ok, detail = model_reachable(config.model.path) if config.model.source == "pretrained" else (True, "")
        if not ok:
            raise ConfigError(f"model.path: {detail}")
        print(f"{path}: valid reward-model recipe ({config.description or 'no description'})")
        return 0
    path, config = load(args)
    check_reward_functions(config)
    problems = unreachable_models(config)
    if problems:  # what `rlhf train` would fail on after a download attempt, said now
        raise ConfigError("; ".join(problems))
    print(f"{path}: valid ({config.description or 'no description'})")
    return 0


def check_reward_functions(config: RecipeConfig) -> None:
    """Import every `type: function` reward source and check its signature, as `rlhf train`
    would at start (other sources are not built here: some start worker processes)."""
    if not any(source.type == "function" for source in config.reward.sources):
        return
    from rlhf.rewards.combine import build_source

    for index, source in enumerate(config.reward.sources):
        if source.type == "function":
            build_source(config.reward, index).source.close()  # its worker process has done its part


def cmd_plan(args: argparse.Namespace) -> int:
    path, config = load(args)
    import json

    from rlhf.plan.layout import layout_of, plan_recipe
    from rlhf.plan.report import print_report, summarize

    if args.devices is not None and args.devices < 1:
        raise ConfigError(f"--devices must be >= 1 (got {args.devices})")
    if args.device_memory_gb is not None and args.device_memory_gb <= 0:
        raise ConfigError(f"--device-memory-gb must be > 0 (got {args.device_memory_gb})")
    summary = summarize(plan_recipe(config, layout_of(config, args.devices, args.device_memory_gb)))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_report(summary, path.stem)
    return 0 if summary["fits"] else 1


def cmd_export(args: argparse.Namespace) -> int:
    from rlhf.controller.export import export_run

    out = export_run(args.run, args.out, args.step)
    print(f"exported {args.run} to {out} (Hugging Face format, safetensors)")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    import torch

    from rlhf.cli.doctor import PACKAGES, engine_checks, known_bad, recipe_checks, version

    print("versions: " + ", ".join(f"{name} {version(name) or '-'}" for name in PACKAGES))
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    print(f"CUDA: {torch.version.cuda or 'none'}; GPUs: {', '.join(gpus) or 'none'}")
    engines = {check.name: check for check in engine_checks()}
    for check in [*engines.values(), *known_bad()]:
        print(f"  [{'ok' if check.ok else 'no'}] {check.name}: {check.detail}")
    if not args.recipe:
        return 0
    path, config = load(args)
    problems = [check for check in recipe_checks(config, engines) if not check.ok]
    for check in problems:
        print(f"{path.stem} cannot run here: {check.name}: {check.detail}", file=sys.stderr)
    if not problems:
        print(f"{path.stem}: everything it selects is usable here")
    return 1 if problems else 0


def cmd_recipes(args: argparse.Namespace) -> int:
    print_recipes()
    return 0


class CommandParser(argparse.ArgumentParser):
    """The parser of one subcommand: positionals (RECIPE, overrides) and options in any order,
    e.g. `rlhf eval RUN --k 1,4 data.eval.size=50` or `rlhf train quickstart --debug x=1`.

    It parses with argparse's intermixed mode, which cannot run on the top-level parser
    (subparsers are not supported there) but can on each subcommand's; argparse's own messages
    for real mistakes (an unknown option, a missing RECIPE) are unchanged.
    """

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):
        if self._intermixing:  # the two passes of the intermixed parse come back here
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def add_common_options(parser: argparse.ArgumentParser, default) -> None:
    """Options of every command, given before the command's name or anywhere after it
    (`default`: False on the top-level parser; SUPPRESS on a subcommand's, so that leaving the
    option out there keeps what was given before the name)."""
    parser.add_argument("--debug", action="store_true", default=default, help="show full tracebacks on errors")
    # main() takes --verbose out of the arguments wherever it stands; declared for --help
    parser.add_argument(VERBOSE_FLAG, action="store_true", default=default, help="show the libraries' log lines, warnings and progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlhf", description="Reinforcement learning for open LLMs: run a recipe YAML, override keys with key.sub=value.")
    add_common_options(parser, False)
    common = argparse.ArgumentParser(add_help=False)
    add_common_options(common, argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CommandParser)
    add = functools.partial(commands.add_parser, parents=[common])
    for name, handler, text in (
        ("train", cmd_train, "run a recipe: optional SFT warm start, then RL"),
        ("sft", cmd_sft, "run only the supervised warm start of a recipe"),
        ("rm", cmd_rm, "train a reward model (ORM or PRM) from a reward-model recipe (recipes/rm/)"),
        ("validate", cmd_validate, "check a recipe and overrides, its reward functions and that its models can be loaded here; train nothing"),
    ):
        sub = add(name, help=text, description=text)
        sub.add_argument("recipe", help="a recipe YAML path or the name of a shipped recipe")
        sub.add_argument("overrides", nargs="*", default=[], help="key.sub=value overrides, e.g. trainer.total_steps=50")
        sub.set_defaults(handler=handler)
    add_plan(add)
    add_export(add)
    doctor = add("doctor", help="versions, GPUs, usable engines; with a recipe: can it run here (exit 1 if not)",
                 description="Report versions, GPUs and usable engines; with RECIPE, exit 1 when it cannot run here.")
    doctor.add_argument("recipe", nargs="?", help="a recipe YAML path or the name of a shipped recipe")
    doctor.add_argument("overrides", nargs="*", default=[], help="key.sub=value overrides")
    doctor.set_defaults(handler=cmd_doctor)
    eval_cmd.register(add)
    report_cmd.register(add)
    add("recipes", help="list the shipped recipes, grouped by the command that runs them").set_defaults(handler=cmd_recipes)
    return parser


def add_plan(add) -> None:
    """The `plan` subcommand (`add`: the subcommands' add_parser)."""
    plan = add("plan", help="estimate memory per device (weights, optimizer, activations, KV cache) and whether it fits",
               description="Estimate a recipe's memory per device and whether it fits, before launching it.")
    plan.add_argument("recipe", help="a recipe YAML path or the name of a shipped recipe")
    plan.add_argument("overrides", nargs="*", default=[], help="key.sub=value overrides, e.g. actor.micro_batch_size=4")
    plan.add_argument("--devices", type=int, default=None, help="number of devices (default: the recipe's, else 1)")
    plan.add_argument("--device-memory-gb", type=float, default=None, help="memory per device in GiB (default 80)")
    plan.add_argument("--json", action="store_true", help="print the estimate as JSON")
    plan.set_defaults(handler=cmd_plan)


def add_export(add) -> None:
    """The `export` subcommand (`add`: the subcommands' add_parser)."""
    export = add("export", help="write a run's policy as a Hugging Face model (safetensors + tokenizer)",
                 description="Write the actor of a run's checkpoint as a Hugging Face model directory.")
    export.add_argument("run", help="the run directory (trainer.output_dir)")
    export.add_argument("out", help="the directory to write (must not hold a model)")
    export.add_argument("--step", type=int, default=None, help="the checkpoint's step (default: the newest)")
    export.set_defaults(handler=cmd_export)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if VERBOSE_FLAG in argv:  # accepted anywhere: it is never a recipe, an override or a value
        argv = [arg for arg in argv if arg != VERBOSE_FLAG]
        set_verbose()
    quiet_libraries()
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as error:
        if args.debug:
            raise
        print(f"error: {shorten(str(error))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        print(f"interrupted: {shorten(str(interrupt))}" if str(interrupt) else "interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a runtime failure: one line unless --debug
        if args.debug:
            raise
        # a message that carries a traceback of its own (a failing reward function) ends with it: cut there
        summary = str(error).split("\nTraceback (most recent call last):", 1)[0].rstrip()
        print(f"error: {type(error).__name__}: {shorten(summary)} (run with --debug for the full traceback)", file=sys.stderr)
        return 1


def shorten(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`message`, or when longer than `limit` characters its start and its end around a note of
    how much was cut: a huge message (a 1 MB repr in an exception) stays a readable error line,
    and what names the culprit (usually the start; a value's own end) is kept."""
    if len(message) <= limit:
        return message
    head, tail = limit * 3 // 4, limit // 4
    return f"{message[:head]} [... {len(message) - head - tail} characters cut ...] {message[-tail:]}"


if __name__ == "__main__":
    sys.exit(main())
