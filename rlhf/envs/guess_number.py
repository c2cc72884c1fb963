"""`guess_number`: find a hidden integer in [0, n) from "higher" / "lower" answers.

Rules (one episode):
- The row holds the hidden number in `ground_truth` (a string of digits, as every dataset
  row's answer is) and may hold `n`, the size of the range; without it the constructor's `n`
  (env.kwargs; default 16) is used. A row and env.kwargs that give different `n` are an error.
- `reset` returns '' (the row's prompt, "guess 0-15", says everything).
- Each action is read as a guess: the first integer in its text ("7", "I guess 7.", "-3").
  The answer is "higher" (the hidden number is larger), "lower", or "correct", which ends the
  episode with reward 1.0 and `info["success"] = True`. Guesses outside the range are
  answered truthfully too. An action without an integer is an invalid move: the observation
  "say a number", reward 0, and the turn is used.
- Every other step has reward 0 and `info["success"] = False`, so the last step of an episode
  says whether it succeeded (the trainer ends episodes at env.max_turns; the environment cannot
  know which step is the last).

Optimal play is binary search: ceil(log2(n + 1)) guesses at most (5 for n = 16), since a guess
that is answered "correct" is a turn too. `demo_action` guesses uniformly at random among the
numbers still consistent with the answers so far: always legal and informative, but about
2 ln n guesses on average, so a policy imitating it succeeds sometimes and RL can improve it.
"""

from __future__ import annotations

import random
import re

from rlhf.envs.base import Step

DEFAULT_N = 16
INVALID = "say a number"
_INTEGER = re.compile(r"-?\d+")
_MAX_DIGITS = 18
"""Longer numbers are compared as ±10**18: Python refuses to parse ints of > 4300 digits."""


def prompt_text(n: int) -> str:
    """The prompt of a row: 'guess 0-15' for n = 16."""
    return f"guess 0-{n - 1}"


def parse_guess(action: str) -> int | None:
    """The first integer in `action` (None when there is none)."""
    match = _INTEGER.search(action)
    if match is None:
        return None
    text = match.group()
    digits = text.lstrip("-")
    if len(digits) > _MAX_DIGITS:
        return -(10**_MAX_DIGITS) if text.startswith("-") else 10**_MAX_DIGITS
    return int(text)


class GuessNumber:
    """One episode of guess_number (see the module docstring). Implements Environment and
    Demonstrator.

    Args:
        n: size of the range [0, n) for rows without an `n` field; None: 16. A row whose `n`
            differs from an explicit `n` is an error (a recipe and its data that disagree).
    """

    def __init__(self, n: int | None = None):
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
            raise ValueError(f"guess_number: n must be an integer >= 1, got {n!r}")
        self.n = n
        self.target = self.low = self.high = 0

    def reset(self, row: dict) -> str:
        n = row.get("n", self.n if self.n is not None else DEFAULT_N)
        if self.n is not None and n != self.n:
            raise ValueError(f"guess_number: the row has n = {n!r} but env.kwargs has n = {self.n}; make them agree")
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"guess_number: the row's n must be an integer >= 1, got {n!r}")
        try:
            target = int(str(row["ground_truth"]).strip())
        except (KeyError, ValueError):
            raise ValueError(f"guess_number: the row's ground_truth must be the hidden integer, got {row.get('ground_truth')!r}") from None
        if not 0 <= target < n:
            raise ValueError(f"guess_number: the row's ground_truth {target} is outside [0, {n})")
        self.target, self.low, self.high = target, 0, n - 1
        return ""

    def step(self, action: str) -> Step:
        guess = parse_guess(action)
        if guess is None:
            return Step(INVALID, 0.0, False, {"success": False, "invalid": True})
        if guess == self.target:
            return Step("correct", 1.0, True, {"success": True})
        if guess < self.target:
            self.low = max(self.low, guess + 1)
            return Step("higher", 0.0, False, {"success": False})
        self.high = min(self.high, guess - 1)
        return Step("lower", 0.0, False, {"success": False})

    def demo_action(self, rng: random.Random) -> str:
        """A uniformly random number among those the answers so far allow, e.g. '7'."""
        return str(rng.randint(self.low, self.high))
