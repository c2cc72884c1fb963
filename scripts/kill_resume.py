"""Kill anywhere, resume exactly: SIGKILL a tiny quickstart run M times at random moments (a
share of them inside checkpoint saves), resume it each time with trainer.resume=auto, and
compare its final metrics.jsonl with an uninterrupted run's (see scripts/rlhf_harness/faults/kill_resume.py).

    python scripts/kill_resume.py --kills 20 --seed 0 --out /tmp/kill_resume.json
    python scripts/kill_resume.py --async --kills 20 --seed 0 --out /tmp/kill_resume_async.json
    python scripts/kill_resume.py --async --ray --kills 20 --out /tmp/kill_resume_ray.json   # rollout on a Ray pool of its own

Prints one line per kill and a summary; writes the whole result as JSON to --out. Exit 0 only
when every check held.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from rlhf_harness.faults.kill_resume import Settings, kill_and_resume


RAY = ["distributed.backend=ray", "distributed.address=local", "resources.pools.gen={devices_per_node: 1}", "resources.rollout=gen"]
"""--ray: a new local Ray cluster per launch (never one a killed run left), the rollout worker on a pool of its own."""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs before the run may finish (M)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments and of the run (trainer.seed)")
    parser.add_argument("--steps", type=int, default=24, help="trainer.total_steps")
    parser.add_argument("--save-every", type=int, default=2, help="trainer.save_every (the most steps a kill may lose)")
    parser.add_argument("--async", dest="asynchronous", action="store_true",
                        help="rollout.mode: async; checks every group is trained exactly once instead of comparing with the reference")
    parser.add_argument("--ray", action="store_true",
                        help="distributed.backend: ray on a new local cluster, the rollout on a pool of its own (resources.rollout: gen)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="one more recipe override (repeatable)")
    parser.add_argument("--workdir", type=Path, default=None, help="an empty directory for both runs and their logs (default: a new temporary one)")
    parser.add_argument("--out", type=Path, default=Path("kill_resume.json"), help="where to write the JSON result")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.kills < 1 or args.steps < 2 or args.save_every < 1:
        raise SystemExit("--kills must be >= 1, --steps >= 2 and --save-every >= 1")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="kill_resume-"))
    print(f"work directory: {workdir}", flush=True)
    settings = Settings(workdir, kills=args.kills, seed=args.seed, steps=args.steps, save_every=args.save_every, asynchronous=args.asynchronous)
    settings.overrides += [*(RAY if args.ray else []), *args.overrides]
    result = kill_and_resume(settings, report=lambda line: print(line, flush=True))
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    summary = result["summary"]
    print(json.dumps({key: summary[key] for key in ("checks", "kinds", "during_checkpoint_saves", "save_phases", "max_lost_steps", "ray_agents_left",
                                                 "failure")}, indent=2))
    print(f"{summary['kills']} kills, {summary['during_checkpoint_saves']} inside checkpoint saves, at most {summary['max_lost_steps']} "
          f"steps lost; all checks held: {summary['ok']} ({summary['seconds']['total']:.0f} s); written to {args.out}")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
