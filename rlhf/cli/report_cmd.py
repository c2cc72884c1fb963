"""`rlhf report RUN [--out FILE]`: one self-contained HTML page of a run: plots of reward,
accuracy, KL, entropy, response length, throughput and phase times, the SFT stage's loss and
validation accuracy (an `rlhf sft` run has only these), the final and best numbers, sample
generations and the config (see :mod:`rlhf.report.page`).

Imports matplotlib only when the command runs (`rlhf --help` stays instant).
"""

from __future__ import annotations

import argparse

DESCRIPTION = (
    "Write one self-contained HTML page of a run directory (open it in any browser, offline): plots of reward, "
    "held-out accuracy and pass@k, KL, entropy, response length, throughput and phase times; the final and best "
    "numbers; sample generations from samples.jsonl; the run's config. A run with an SFT stage (or an SFT-only run of "
    "`rlhf sft`) also gets its loss, gradient norm and validation accuracy."
)


def register(add_parser) -> None:
    """Add the `report` subcommand with `add_parser` (the `rlhf` parser's subcommands' add_parser,
    which gives it the options common to every command)."""
    sub = add_parser("report", help="an HTML page of a run: plots, numbers, sample generations, config", description=DESCRIPTION)
    sub.add_argument("run", metavar="RUN", help="the run directory (trainer.output_dir)")
    sub.add_argument("--out", default=None, metavar="FILE", help="the HTML file to write (default: RUN/report.html)")
    sub.set_defaults(handler=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from rlhf.report.page import write_report

    path = write_report(args.run, args.out)
    print(f"wrote {path}")
    return 0
