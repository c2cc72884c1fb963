"""Turn hub math datasets into local parquet files for clusters without internet.

Each prepared row keeps the dataset's own fields (GSM8K's `question`/`answer`; MATH's
`problem`/`solution`/`level`/`type`, MATH-500's `subject`) and adds `prompt`, `ground_truth`
(the bare final answer), `data_source` and, for MATH, `answer`. So a shipped recipe runs
offline by changing only the paths, and a new recipe can read the files with the default keys:

    data:
      train: {path: data/gsm8k/train.parquet}      # prompt_key: prompt, answer_key: ground_truth

Used by `scripts/prepare_gsm8k.py` and `scripts/prepare_math.py`; a source is a hub dataset
name or a local file (.jsonl, .json, .csv, .tsv, .parquet) in the dataset's own format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

from rlhf.config.errors import ConfigError
from rlhf.data.fields import EXTRACTORS
from rlhf.data.files import is_local_data_file, read_rows

Converter = Callable[[dict], dict]


def read_source(source: str, split: str, name: str | None = None) -> list[dict]:
    """The rows of a local data file (:mod:`rlhf.data.files`: .jsonl, .json, .csv, .tsv,
    .parquet), or of `split` of the hub dataset `source`. A file that cannot be read stops
    with a message naming it (and the row, when one row is the problem)."""
    if is_local_data_file(source):
        try:
            return read_rows(Path(source), "source")
        except ConfigError as error:
            raise SystemExit(f"error: {error}") from None
    import datasets

    return [dict(row) for row in datasets.load_dataset(source, name, split=split)]


def gsm8k_row(row: dict) -> dict:
    """A GSM8K row (`question`, `answer` ending in '#### N') as a prepared row."""
    answer = EXTRACTORS["gsm8k"](row["answer"])
    if answer is None:
        raise ValueError(f"GSM8K answer without '####': {row['answer'][-80:]!r}")
    return {**row, "prompt": row["question"], "ground_truth": answer.replace(",", ""), "data_source": "gsm8k"}


def math_row(row: dict) -> dict:
    """A MATH row (`problem`, `solution` with a \\boxed{} answer; MATH-500 also has `answer`)
    as a prepared row."""
    answer = row.get("answer") or EXTRACTORS["boxed"](row["solution"])
    if not answer:
        raise ValueError(f"MATH solution without \\boxed{{}}: {row['solution'][-80:]!r}")
    return {**row, "prompt": row["problem"], "ground_truth": answer, "answer": answer, "data_source": "math"}


def convert(rows: Iterable[dict], converter: Converter, where: str) -> list[dict]:
    """`converter` applied to every row; a row it cannot convert stops with its 1-based number."""
    converted = []
    for number, row in enumerate(rows, start=1):
        try:
            converted.append(converter(row))
        except (KeyError, ValueError) as error:
            raise SystemExit(f"error: {where} row {number}: {type(error).__name__}: {error}") from None
    return converted


def write_parquet(rows: list[dict], path: Path) -> None:
    """Write `rows` to `path` (parent directories created), through a temporary file so an
    interrupted run never leaves a truncated file behind."""
    import datasets

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".parquet.partial")
    datasets.Dataset.from_list(rows).to_parquet(str(partial))
    partial.replace(path)


def prepare(splits: dict[str, tuple[str, str, str | None]], converter: Converter, out: Path) -> dict[str, int]:
    """Convert each split {out name: (source, split, config name)} into `out/<name>.parquet`;
    returns the row count per file."""
    counts = {}
    for out_name, (source, split, name) in splits.items():
        rows = convert(read_source(source, split, name), converter, f"{source} ({split})")
        write_parquet(rows, out / f"{out_name}.parquet")
        counts[out_name] = len(rows)
        print(f"{out / f'{out_name}.parquet'}: {len(rows)} rows from {source} ({split})", flush=True)
    return counts
