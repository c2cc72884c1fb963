"""The `format` reward source: does the response have the expected shape?"""

from __future__ import annotations

import re

import torch

from rlhf.data.batch import Batch
from rlhf.rewards.base import RewardOutput

BOXED = r"\boxed{"
"""What `boxed: true` looks for: a LaTeX boxed answer, as MATH-style prompts ask for."""


class FormatSource:
    """`reward_if_match` when the response matches, else `reward_if_missing`.

    Give exactly one of `pattern` (a regular expression found anywhere in the response:
    `re.search` with DOTALL, so `.` spans lines; anchor it with `^...$` for a whole-response
    match) or `boxed: true` (the response contains a literal `\\boxed{`). Logs `match_rate`,
    the share of responses that match.
    """

    def __init__(self, pattern: str | None = None, boxed: bool = False, reward_if_match: float = 1.0, reward_if_missing: float = 0.0):
        if (pattern is None) == (not boxed):
            raise ValueError("format: give exactly one of kwargs.pattern (a regular expression) and kwargs.boxed: true")
        if pattern is not None:
            if not isinstance(pattern, str):
                raise ValueError(f"format: kwargs.pattern must be a string, got {pattern!r}")
            try:
                self.regex = re.compile(pattern, re.DOTALL)
            except re.error as error:
                raise ValueError(f"format: kwargs.pattern {pattern!r} is not a valid regular expression ({error})") from None
        else:
            self.regex = re.compile(re.escape(BOXED))
        self.reward_if_match, self.reward_if_missing = float(reward_if_match), float(reward_if_missing)

    def score(self, batch: Batch) -> RewardOutput:
        matched = torch.tensor([self.regex.search(text) is not None for text in batch["response_text"]], dtype=torch.bool)
        scores = torch.where(matched, self.reward_if_match, self.reward_if_missing).to(torch.float32)
        return RewardOutput(scores, {"match_rate": matched.float().mean().item() if len(matched) else 0.0})
