"""Download MATH once and write it as local parquet, for clusters without internet.

Example (on a machine with internet; copy the directory to the cluster afterwards):
    python scripts/prepare_math.py --out data/math

writes data/math/train.parquet (7500 problems of DigitalLearningGmbH/MATH-lighteval) and
data/math/test.parquet (the 500 problems of HuggingFaceH4/MATH-500, the usual held-out set;
`--test DigitalLearningGmbH/MATH-lighteval` gives all 5000): MATH's own fields (problem,
solution, level, type; subject in MATH-500) plus prompt, ground_truth and answer (the content
of the solution's last \\boxed{}) and data_source ('math'). A shipped MATH recipe then runs
offline with
    data.train.path=data/math/train.parquet data.eval.path=data/math/test.parquet
`--train`/`--test` also take local .jsonl/.parquet files in MATH's own format.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rlhf.data.prepare import math_row, prepare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/math"), help="output directory")
    parser.add_argument("--train", default="DigitalLearningGmbH/MATH-lighteval", help="hub dataset or local file of the training split ('' to skip)")
    parser.add_argument("--test", default="HuggingFaceH4/MATH-500", help="hub dataset or local file of the test split ('' to skip)")
    args = parser.parse_args()
    splits = {name: (source, name, None) for name, source in (("train", args.train), ("test", args.test)) if source}
    prepare(splits, math_row, args.out)


if __name__ == "__main__":
    main()
