"""Measure the quickstart against its targets: the whole `rlhf train recipes/quickstart.yaml`
command within 180 s on this machine, and held-out greedy accuracy after RL at least 25 points
above the value right before RL, for every seed.

    python scripts/check_quickstart.py --seeds 0 1 2 [--out runs/check-quickstart] [key=value ...]

Prints a table and writes `<out>/results.json` (see scripts/measure_learning.py, which does
the work). Runs the seeds one after another (a concurrent run would share the CPU cores and
distort the wall times).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure_learning import measure, report  # noqa: E402

MAX_SECONDS = 180.0
MIN_GAIN_POINTS = 25.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/check-quickstart"))
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides for every run")
    args = parser.parse_args()
    rows = measure(["recipes/quickstart.yaml"], args.seeds, args.out, args.overrides, parallel=1)
    result = report(rows, MIN_GAIN_POINTS, MAX_SECONDS, args.overrides)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    gain = next(iter(result["median_gain_points"].values()))
    print(f"median gain {gain:+.1f} points, slowest run {result['max_wall_s']} s, all targets met: {result['all_ok']}")
    return 0 if result["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
