"""Download GSM8K once and write it as local parquet, for clusters without internet.

Example (on a machine with internet; copy the directory to the cluster afterwards):
    python scripts/prepare_gsm8k.py --out data/gsm8k

writes data/gsm8k/train.parquet (7473 rows) and data/gsm8k/test.parquet (1319 rows): GSM8K's
question and answer plus prompt, ground_truth (the number after '####', commas removed) and
data_source ('gsm8k'). A shipped GSM8K recipe then runs offline with
    data.train.path=data/gsm8k/train.parquet data.eval.path=data/gsm8k/test.parquet
`--train`/`--test` also take local .jsonl/.parquet files in GSM8K's own format.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rlhf.data.prepare import gsm8k_row, prepare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/gsm8k"), help="output directory")
    parser.add_argument("--train", default="openai/gsm8k", help="hub dataset or local file of the training split ('' to skip)")
    parser.add_argument("--test", default="openai/gsm8k", help="hub dataset or local file of the test split ('' to skip)")
    parser.add_argument("--config-name", default="main", help="hub dataset configuration ('main' or 'socratic')")
    args = parser.parse_args()
    splits = {name: (source, name, args.config_name) for name, source in (("train", args.train), ("test", args.test)) if source}
    prepare(splits, gsm8k_row, args.out)


if __name__ == "__main__":
    main()
