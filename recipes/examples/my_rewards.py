"""Reward functions for recipes/examples/custom_reward.yaml (the 2-digit addition task).

`rlhf train` imports this file by path (`reward.sources[i].path: my_rewards.py`, relative to
the recipe) and calls the function named by `reward.sources[i].name`. Two conventions:

- per sample: `fn(prompt, response, ground_truth, **extra) -> float | dict`
- batched (`batched: true`): `fn(prompts, responses, ground_truths, **extra) -> list[...]`

`extra` holds the dataset row's other fields (here `data_source`) and the source's `kwargs`
from the recipe. A dict result must have a "score"; its other numbers are logged as
`reward/<name>/<key>` (averaged over the batch).
"""

from __future__ import annotations

import re

DIGITS = re.compile(r"\d+")


def score(prompt: str, response: str, ground_truth: str, partial_credit: float = 0.2, **extra) -> dict:
    """1.0 for the exact sum; `partial_credit` for a wrong number with the right count of digits
    (the model got the shape of the answer); 0.0 otherwise.

    Args:
        prompt: e.g. "07+45=" (unused: the ground truth already is the sum).
        response: the decoded completion, e.g. "52".
        ground_truth: the sum as a string, e.g. "52".
        partial_credit: from the recipe's `kwargs`.
        **extra: other row fields (`data_source`), ignored.

    Returns:
        {"score": ..., "right_length": 0/1}; `reward/score/right_length` in metrics.jsonl is the
        share of responses with the right number of digits.
    """
    answer = response.strip()
    right_length = answer.isdigit() and len(answer) == len(ground_truth)
    if answer == ground_truth:
        value = 1.0
    else:
        value = partial_credit if right_length else 0.0
    return {"score": value, "right_length": float(right_length)}


def digits_only(prompts: list[str], responses: list[str], ground_truths: list[str], **extra) -> list[float]:
    """Batched: 1.0 for each response that is a single number and nothing else, else 0.0.

    One call per batch; batched functions pay off when scoring is cheaper in bulk (a model
    that scores many responses at once, a remote API).
    """
    return [1.0 if DIGITS.fullmatch(response.strip()) else 0.0 for response in responses]
