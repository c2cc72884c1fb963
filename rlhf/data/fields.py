"""From a dataset's own rows to the trainer's rows: the field mapping of `data.train` / `data.eval`.

A trainer row has `prompt` (text), `ground_truth` (text: the answer reward functions compare
with), `data_source` (text: for per-source metrics) and every other field of the dataset row,
which reaches reward functions that name it. Mapping keys (see `DatasetConfig`):

    prompt_key, answer_key     which fields hold the prompt and the reference answer
    answer_extractor           none | gsm8k (after the last '####') | boxed (last \\boxed{})
    source / source_key        the data source: one name for all rows, or a field per row

The trainer itself adds fields to every batch (`RESERVED_FIELDS`: the rendered prompt, the
response, the group index, tensors); a dataset column of the same name would be overwritten
or shadow them, so it is refused. Every error names the recipe key, the file, the first bad
row (1-based) and the field.
"""

from __future__ import annotations

import math
from pathlib import PurePath
from typing import Any, Callable

from rlhf.config.errors import ConfigError
from rlhf.config.schema import DatasetConfig
from rlhf.data.answers import after_hashes, last_boxed

EXTRACTORS: dict[str, Callable[[str], str | None]] = {
    "none": lambda text: text,
    "gsm8k": after_hashes,
    "boxed": last_boxed,
}
"""`data.*.answer_extractor`: reference field text -> the answer, or None when it has none."""

RESERVED_FIELDS: dict[str, str] = {
    "prompt_text": "the prompt as the model sees it",
    "response_text": "the sampled response",
    "group_index": "which prompt a sample belongs to",
    **dict.fromkeys(("prompt_ids", "prompt_mask", "response_ids", "response_mask"), "the tokens of prompt and response"),
    **dict.fromkeys(("rollout_logprobs", "old_logprobs", "ref_logprobs", "values"), "per-token model outputs"),
    **dict.fromkeys(("token_versions", "policy_version"), "the policy versions that sampled a response"),
    **dict.fromkeys(("scores", "outcome_scores", "process_token_rewards", "baseline_scores", "token_rewards", "advantages", "returns",
                     "off_policy_weights"),
                    "the rewards and advantages"),
}
"""Batch fields the trainer sets after the mapping (prompt batch, rollout engine, reward and
advantage steps) -> what they hold. `prompt`, `ground_truth` and `data_source` are not here:
the mapping itself sets them (a dataset's own `data_source` field is its source)."""


def default_source(path: str) -> str:
    """The data source name of a dataset path: 'openai/gsm8k' -> 'gsm8k', 'data/math.parquet' -> 'math'."""
    return PurePath(path.removeprefix("builtin:")).stem or path


def map_rows(rows: list[dict], dataset: DatasetConfig, key: str) -> list[dict]:
    """Trainer rows from dataset rows (see the module docstring); all rows get the same fields
    (None where a row lacks a field another row has), so every batch carries the same fields.

    `key` is the recipe key of the dataset (e.g. 'data.train'), used in error messages.
    """
    fallback = dataset.source or default_source(dataset.path)
    _check_reserved(rows, dataset, key)
    mapped = [_map_row(row, i, dataset, key, fallback) for i, row in enumerate(rows)]
    fields = dict.fromkeys(name for row in mapped for name in row)
    return [{name: row.get(name) for name in fields} for row in mapped]


def _check_reserved(rows: list[dict], dataset: DatasetConfig, key: str) -> None:
    """A ConfigError for the first row with a field the trainer sets itself (see
    `RESERVED_FIELDS`), unless the mapping consumes it as the prompt or the answer."""
    mapped_away = (dataset.prompt_key, dataset.answer_key)
    for number, row in enumerate(rows, start=1):
        clash = next((name for name in row if name in RESERVED_FIELDS and name not in mapped_away), None)
        if clash is not None:
            raise ConfigError(
                f"{key}.path: {dataset.path!r} row {number}: column {clash!r} has the name of a field the trainer sets itself "
                f"({RESERVED_FIELDS[clash]}); rename the column in the file (if it holds the prompt or the answer, "
                f"name it in {key}.prompt_key / {key}.answer_key instead) or drop it"
            )


def _map_row(row: dict, index: int, dataset: DatasetConfig, key: str, fallback: str) -> dict:
    where = f"{dataset.path!r} row {index + 1}"
    prompt = _field(row, dataset.prompt_key, f"{key}.prompt_key", where)
    if not isinstance(prompt, str) or not prompt.strip():
        raise ConfigError(
            f"{key}.prompt_key: {where}: field {dataset.prompt_key!r} must be non-empty text (got {_show(prompt)}){_fill_hint(prompt)}"
        )
    answer = _field(row, dataset.answer_key, f"{key}.answer_key", where)
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        raise ConfigError(
            f"{key}.answer_key: {where}: field {dataset.answer_key!r} must be text or a number (got {_show(answer)}){_fill_hint(answer)}"
        )
    if (isinstance(answer, float) and not math.isfinite(answer)) or (isinstance(answer, str) and not answer.strip()):
        raise ConfigError(
            f"{key}.answer_key: {where}: field {dataset.answer_key!r} is {answer!r}, not a ground truth (an empty value or NaN marks "
            f"a missing one); fill it in or drop the row"
        )
    ground_truth = EXTRACTORS[dataset.answer_extractor](str(answer))
    if not ground_truth:
        raise ConfigError(
            f"{key}.answer_extractor: {where}: the {dataset.answer_extractor!r} extractor finds no answer in "
            f"field {dataset.answer_key!r} ({str(answer)[-80:]!r})"
        )
    if dataset.source_key:
        source = _field(row, dataset.source_key, f"{key}.source_key", where)
    else:
        source = dataset.source or row.get("data_source") or fallback
    extra = {k: v for k, v in row.items() if k not in (dataset.prompt_key, dataset.answer_key)}
    return {**extra, "prompt": prompt, "ground_truth": ground_truth, "data_source": str(source)}


def _field(row: dict, name: str, config_key: str, where: str) -> Any:
    if name not in row:
        raise ConfigError(f"{config_key}: {where} has no field {name!r} (its fields: {sorted(row)}); the first bad row is shown")
    return row[name]


def _fill_hint(value: Any) -> str:
    """What to do about a missing value (None, NaN, empty or blank text); '' for other values."""
    missing = value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value.strip())
    return ", a missing value: fill it in or drop the row" if missing else ""


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}"


def apply_template(row: dict, template: str | None, key: str = "data.prompt_template") -> str:
    """The prompt text of `row` inside `data.prompt_template` ('{prompt}' and other row fields
    filled in), or the prompt as is without a template."""
    if template is None:
        return row["prompt"]
    try:
        return template.format_map(row)
    except KeyError as missing:
        raise ConfigError(f"{key}: the template names field {missing} that the rows do not have (they have {sorted(row)})") from None
    except (ValueError, IndexError) as error:
        raise ConfigError(f"{key}: {template!r} is not a valid template ({error}); write literal braces as '{{{{' and '}}}}'") from None
