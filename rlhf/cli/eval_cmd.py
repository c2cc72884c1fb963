"""`rlhf eval MODEL_OR_RUN [RECIPE] [key.sub=value ...] [--data D] [--k 1,4,16] [--n N] [--out DIR]
[--search best_of_n,weighted_vote,step_beam --reward-model DIR [--aggregate min] [--beam-width 1,2,4] ...]`:
greedy accuracy, pass@k, maj@k, search strategies through a reward model at k samples, the
step beam at each beam width, and response lengths of a model or a run's policy on held-out
prompts, per data source; `eval.json`, `scaling.json` and `scaling.png` in the output directory.

Imports nothing heavy until the command runs (`rlhf --help` stays instant).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from rlhf.config.errors import ConfigError
from rlhf.config.search_schema import STEP_AGGREGATES, SearchConfig, beam_width_problem, beam_widths

DESCRIPTION = (
    "Evaluate a Hugging Face model directory (with a RECIPE for rewards, data and sampling) or the newest checkpoint "
    "of a run directory (its own recipe): greedy accuracy, pass@k (unbiased), maj@k, response length, per data source; "
    "writes eval.json and, with --k or the step beam, the inference-scaling curve (scaling.json, scaling.png)."
)


def register(add_parser) -> None:
    """Add the `eval` subcommand with `add_parser` (the `rlhf` parser's subcommands' add_parser,
    which gives it the options common to every command)."""
    sub = add_parser("eval", help="pass@1 (greedy), pass@k, maj@k and the inference-scaling curve of a model or run",
                              description=DESCRIPTION)
    sub.add_argument("model_or_run", metavar="MODEL_OR_RUN", help="a run directory (trainer.output_dir) or a Hugging Face model directory")
    sub.add_argument("recipe", metavar="RECIPE", nargs="?", help="with a model: the recipe giving rewards, data and sampling (a YAML path or a shipped recipe)")
    sub.add_argument("overrides", nargs="*", default=[], help="key.sub=value overrides of the recipe, e.g. rollout.temperature=0.6 data.eval.size=200")
    sub.add_argument("--data", default=None, metavar="PATH_OR_HUB", help="evaluation prompts: a .jsonl/.csv/.parquet file, a hub dataset or builtin:arithmetic (default: the recipe's data.eval)")
    sub.add_argument("--k", default=None, metavar="K,K,...", help="k values of pass@k and maj@k, e.g. 1,4,16 (default: trainer.eval_k; none: greedy only)")
    sub.add_argument("--n", type=int, default=None, help="samples per prompt, >= every k (default: the largest k); more give lower-variance estimates")
    sub.add_argument("--out", default=None, help="output directory (default: RUN/eval/step_N for a run, evals/<model name> for a model)")
    sub.add_argument("--step", type=int, default=None, help="a run's checkpoint step (default: the newest)")
    search = sub.add_argument_group("test-time search (defaults: the recipe's eval.search)")
    search.add_argument("--search", default=None, metavar="STRATEGY,...",
                        help="strategies through --reward-model: best_of_n (the highest-scored of k samples) and weighted_vote "
                             "(majority vote over final answers weighted by the scores), judged at every k, one line each on the scaling "
                             "curve; step_beam (beam search over reasoning steps scored by a PRM, --beam-*), one more line, a point "
                             "per --beam-width")
    search.add_argument("--reward-model", default=None, metavar="DIR", help="the ORM or PRM directory `rlhf rm` wrote (OUTPUT_DIR/model)")
    search.add_argument("--aggregate", default=None, choices=STEP_AGGREGATES,
                        help="how a PRM's step scores make one score per response (recipe default: min, the weakest step)")
    search.add_argument("--beam-width", default=None, metavar="W,W,...",
                        help="step_beam: partial solutions kept after each round (recipe default 4); a list such as 1,2,4 makes "
                             "a point per width on the scaling curve (eval/step_beam@W each, eval/step_beam the widest)")
    search.add_argument("--beam-k", type=int, default=None, help="step_beam: next steps sampled per kept partial solution (recipe default 4)")
    search.add_argument("--beam-budget", type=int, default=None, help="step_beam: generated tokens per prompt after which no round starts "
                                                                      "(0, the recipe default: width x k x rollout.max_new_tokens, "
                                                                      "for each width)")
    sub.set_defaults(handler=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from rlhf.cli.recipes import RL, resolve_recipe_for
    from rlhf.controller.evaluation import check_plan, evaluate_target, resolve_target
    from rlhf.search.reward_model import SearchRewardModel

    recipe, overrides = split_recipe([*([args.recipe] if args.recipe else []), *args.overrides])
    ks = parse_ks(args.k)
    is_run = (Path(args.model_or_run) / "config.yaml").is_file()  # a run's recipe is its own: no lookup
    target = resolve_target(args.model_or_run, resolve_recipe_for(recipe, RL, "rlhf eval") if recipe and not is_run else recipe, overrides, args.data, args.step)
    settings = search_settings(args, target.config.eval.search)
    beams = beam_settings(settings, target.config.rollout.max_new_tokens) if "step_beam" in settings.strategies else ()
    plan = check_plan(target.config, ks, args.n, settings.strategies, settings.reward_model, beams)
    search_model = SearchRewardModel(settings.reward_model, settings.aggregate) if settings.strategies else None
    if "step_beam" in settings.strategies and search_model.type != "prm":
        raise ConfigError(f"--search step_beam: the beam scores partial solutions step by step and needs a PRM; "
                          f"--reward-model {settings.reward_model} is an ORM (use it with best_of_n or weighted_vote)")
    out = Path(args.out) if args.out else default_out(target.model, target.run_checkpoint)
    report = evaluate_target(target, plan, out, search_model)
    print_table(report)
    written = ["eval.json", *(["scaling.json", "scaling.png"] if plan.num_samples or plan.beams else [])]
    print(f"wrote {', '.join(str(out / name) for name in written)}")
    return 0


def search_settings(args: argparse.Namespace, recipe: SearchConfig) -> SearchConfig:
    """The recipe's `eval.search` with the flags given on the command line put over it (the
    recipe's values were validated with it; a flag is checked here, exit 2 naming it)."""
    if args.reward_model is not None and args.search is None and not recipe.strategies:
        raise ConfigError("--reward-model: only used by --search (e.g. --search best_of_n,weighted_vote) or the recipe's eval.search.strategies")
    for option, value, least in (("--beam-k", args.beam_k, 1), ("--beam-budget", args.beam_budget, 0)):
        if value is not None and value < least:
            raise ConfigError(f"{option}: must be >= {least}, got {value}")
    flags = {"strategies": None if args.search is None else [name.strip() for name in args.search.split(",") if name.strip()],
             "reward_model": args.reward_model, "aggregate": args.aggregate, "beam_width": parse_beam_widths(args.beam_width), "beam_k": args.beam_k,
             "beam_budget": args.beam_budget}
    return replace(recipe, **{key: value for key, value in flags.items() if value is not None})


def beam_settings(search: SearchConfig, max_new_tokens: int):
    """The step beam's settings of `search`, one per point of its line (ascending width)."""
    from rlhf.eval.step_beam import beam_line

    return beam_line(beam_widths(search.beam_width), search.beam_k, search.beam_budget, max_new_tokens)


def split_recipe(words: list[str]) -> tuple[str | None, list[str]]:
    """(RECIPE or None, overrides): the first word is the recipe unless it is a key=value."""
    if words and "=" not in words[0]:
        return words[0], words[1:]
    return None, list(words)


def parse_ks(text: str | None) -> list[int] | None:
    """`--k 1,4,16` as [1, 4, 16] (None when not given)."""
    if text is None:
        return None
    ks = comma_numbers(text, "--k", "comma-separated whole numbers like 1,4,16")
    if not ks or min(ks) < 1:
        raise ConfigError(f"--k: every k must be >= 1 (pass@k and maj@k look at k samples), got {text!r}")
    return sorted(set(ks))


def parse_beam_widths(text: str | None) -> list[int] | None:
    """`--beam-width 1,2,4` as [1, 2, 4] (None when not given)."""
    if text is None:
        return None
    widths = comma_numbers(text, "--beam-width", "a whole number or comma-separated whole numbers like 1,2,4")
    if (problem := beam_width_problem(widths[0] if len(widths) == 1 else widths)) is not None:
        raise ConfigError(f"--beam-width: {problem}")
    return widths


def comma_numbers(text: str, option: str, expected: str) -> list[int]:
    """The whole numbers of `option`'s comma-separated `text`; exit 2 saying what was `expected`."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"{option}: expected {expected}, got {text!r}") from None


def default_out(model: str, checkpoint: Path | None) -> Path:
    if checkpoint is not None:
        return Path(model) / "eval" / checkpoint.name
    return Path("evals") / Path(model).name


def print_table(report: dict) -> None:
    """The metrics as a table: one row per metric, one column for all prompts and one per
    data source (when there are several)."""
    from rich.console import Console
    from rich.table import Table

    if "env" in report:  # a multi-turn recipe: greedy episodes
        print_episodes_table(report)
        return
    metrics, sources = report["metrics"], list(report["prompts_per_source"])
    columns = [("all", "eval/")] + ([(source, f"eval/{source}/") for source in sources] if len(sources) > 1 else [])
    table = Table(title=f"{report['model']} ({report['checkpoint'] or 'model'}) on {report['data']['path']}")
    table.add_column("metric")
    for name, _ in columns:
        table.add_column(name, justify="right")
    rows = [("accuracy (greedy)", "accuracy")]
    rows += [(f"pass@{k}", f"pass@{k}") for k in report["k"]] + [(f"maj@{k}", f"maj@{k}") for k in report["k"]]
    strategies = report.get("search", {}).get("strategies", [])
    rows += [(f"{name}@{k}", f"{name}@{k}") for name in strategies if name != "step_beam" for k in report["k"]]
    for width in (settings["beam_width"] for settings in report.get("search", {}).get("step_beam", [])):
        rows += [(f"step beam w={width}", f"step_beam@{width}"), (f"step beam w={width} tokens / prompt", f"step_beam_tokens@{width}")]
    rows += [("reward (greedy)", "reward"), ("response length (greedy)", "response_length")]
    rows += [("response length (sampled)", "sampled_response_length")] if report["samples_per_prompt"] else []
    for label, key in rows:
        table.add_row(label, *(f"{metrics[prefix + key]:.4g}" for _, prefix in columns))
    counts = report["prompts_per_source"]
    table.add_row("prompts", str(report["num_prompts"]), *([str(counts[s]) for s in sources] if len(sources) > 1 else []))
    Console(highlight=False, soft_wrap=True).print(table)


def print_episodes_table(report: dict) -> None:
    """The episode metrics of a multi-turn recipe's evaluation."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{report['model']} ({report['checkpoint'] or 'model'}) on {report['data']['path']}: {report['env']} episodes")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in report["metrics"].items():
        table.add_row(key.removeprefix("eval/"), f"{value:.4g}")
    table.add_row("episodes", str(report["num_episodes"]))
    Console(highlight=False, soft_wrap=True).print(table)

