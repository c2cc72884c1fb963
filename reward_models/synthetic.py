"""Synthetic reward-model data built from the addition task of :mod:`rlhf.data.arithmetic`.

Three shapes, one per way of training a reward model:

* **preference pairs** ``{prompt, chosen, rejected}``: the correct sum against a corrupted one
  (for a Bradley–Terry ORM);
* **labelled responses** ``{prompt, response, label}``: a correct (1) or corrupted (0) sum
  (for an ORM trained with binary cross-entropy);
* **step-labelled solutions** ``{prompt, steps, labels}``: column-by-column addition with an
  error injected at a random step in some solutions (for a PRM).

A solution of ``07+45=`` has one step per column, ones first, then the answer::

    7+5=12        (ones column: the sum, whose tens digit is the carry)
    0+4+1=5       (tens column plus the carry)
    answer 52

Labels follow Math-Shepherd (Wang et al. 2024, "Math-Shepherd: Verify and Reinforce LLMs
Step-by-step without Human Annotations"): a step is good (1) when the correct answer can still
be reached from it. Every injected error here changes the final answer and later steps build on
the wrong value, so the steps before the first error are good and the rest are bad. Unlike
Math-Shepherd, which estimates these labels by sampling completions, we know them exactly.

Everything is deterministic by ``seed``: the split of operand pairs is that of
:func:`rlhf.data.arithmetic.arithmetic_rows` (train and test are disjoint by operand pair), and
the corruptions come from a ``random.Random`` seeded with a string naming the builder, the
split and the seed (string seeds hash with SHA-512, the same on every machine).
"""

from __future__ import annotations

import random

from rlhf.data.arithmetic import arithmetic_rows

ANSWER_PREFIX = "answer "
"""Opens the last step of a solution ('answer 52')."""


def _operands(prompt: str) -> tuple[int, int]:
    """(a, b) of a prompt like '07+45='."""
    left, right = prompt.rstrip("=").split("+")
    return int(left), int(right)


def _digit(value: int, position: int) -> int:
    """The decimal digit of ``value`` at ``position`` (0: ones)."""
    return value // 10**position % 10


def _without_carry(a: int, b: int) -> int:
    """a + b with every carry dropped (a classic slip: 07+45 -> 42)."""
    width = max(len(str(a)), len(str(b)))
    return sum((_digit(a, i) + _digit(b, i)) % 10 * 10**i for i in range(width))


CORRUPTIONS = ("digit_off_by_one", "swapped_digits", "dropped_carry", "random")
"""Ways an answer goes wrong; :func:`corrupt_answer` draws one of those that apply."""


def _digit_changes(text: str) -> list[int]:
    """Numbers from ``text`` with one digit moved up or down by one (no new leading zero)."""
    changed = []
    for i, char in enumerate(text):
        for digit in (int(char) - 1, int(char) + 1):
            if 0 <= digit <= 9 and not (i == 0 and digit == 0 and len(text) > 1):
                changed.append(int(text[:i] + str(digit) + text[i + 1:]))
    return changed


def _digit_swaps(text: str) -> list[int]:
    """Numbers from ``text`` with two adjacent different digits swapped (no new leading zero)."""
    return [int(text[:i] + text[i + 1] + text[i] + text[i + 2:]) for i in range(len(text) - 1)
            if text[i] != text[i + 1] and not (i == 0 and text[1] == "0")]


def corrupt_answer(a: int, b: int, rng: random.Random) -> str:
    """A wrong answer to ``a + b``: a corruption is drawn uniformly from those that apply (see
    ``CORRUPTIONS``), then one of its wrong values. Never the right answer, never negative."""
    answer = a + b
    text = str(answer)
    options = {
        "digit_off_by_one": _digit_changes(text),
        "swapped_digits": _digit_swaps(text),
        "dropped_carry": [_without_carry(a, b)],
        "random": list(range(10 ** len(text))),
    }
    wrong = {name: [v for v in values if v != answer] for name, values in options.items()}
    kind = rng.choice([name for name in CORRUPTIONS if wrong[name]])
    return str(rng.choice(wrong[kind]))


def _rng(builder: str, split: str, seed: int) -> random.Random:
    """The corruption RNG of one builder and split (independent of every other)."""
    return random.Random(f"reward_models.synthetic:{builder}:{split}:{seed}")


def _rows(split: str, digits: int, test_fraction: float, seed: int, size: int | None) -> list[dict]:
    """The addition rows of ``split``, the first ``size`` of them (all when None)."""
    rows = arithmetic_rows(split, digits=digits, test_fraction=test_fraction, seed=seed)
    return rows if size is None else rows[:size]


def preference_pairs(split: str, digits: int = 2, test_fraction: float = 0.1, seed: int = 0,
                     size: int | None = None) -> list[dict]:
    """``{prompt, chosen, rejected}`` per operand pair: the right sum against a corrupted one.

    Args:
        split: "train" or "test" (disjoint operand pairs).
        digits, test_fraction, seed: as in :func:`rlhf.data.arithmetic.arithmetic_rows`;
            ``seed`` also seeds the corruptions.
        size: keep the first ``size`` pairs (None: all).
    """
    rng = _rng("pairs", split, seed)
    pairs = []
    for row in _rows(split, digits, test_fraction, seed, size):
        a, b = _operands(row["prompt"])
        pairs.append({"prompt": row["prompt"], "chosen": row["ground_truth"],
                      "rejected": corrupt_answer(a, b, rng)})
    return pairs


def labelled_responses(split: str, digits: int = 2, test_fraction: float = 0.1, seed: int = 0,
                       size: int | None = None, error_fraction: float = 0.5) -> list[dict]:
    """``{prompt, response, label}``: the right sum (label 1) or, with probability
    ``error_fraction``, a corrupted one (label 0). Other arguments as in :func:`preference_pairs`."""
    rng = _rng("labels", split, seed)
    examples = []
    for row in _rows(split, digits, test_fraction, seed, size):
        a, b = _operands(row["prompt"])
        wrong = rng.random() < error_fraction
        response = corrupt_answer(a, b, rng) if wrong else row["ground_truth"]
        examples.append({"prompt": row["prompt"], "response": response, "label": 0 if wrong else 1})
    return examples


def solution_steps(a: int, b: int, digits: int, error_step: int | None = None,
                   rng: random.Random | None = None) -> list[str]:
    """The column-by-column solution of ``a + b`` (``digits`` column steps, then the answer
    step), with an error at ``error_step`` (None: a correct solution).

    An error in a column step replaces that column's sum by another value of 0..19 drawn
    uniformly (a slip of any size); later columns use the carry of the wrong sum and the answer
    is assembled from the wrong digits. An error in the
    answer step replaces the right answer with :func:`corrupt_answer`.
    """
    if error_step is not None and not 0 <= error_step <= digits:
        raise ValueError(f"error_step must be in [0, {digits}] or None, got {error_step}")
    steps, carry, answer = [], 0, 0
    for column in range(digits):
        x, y = _digit(a, column), _digit(b, column)
        total = x + y + carry
        if column == error_step:
            total = rng.choice([t for t in range(20) if t != total])
        terms = f"{x}+{y}" + (f"+{carry}" if carry else "")
        steps.append(f"{terms}={total}")
        answer += total % 10 * 10**column
        carry = total // 10
    answer += carry * 10**digits
    final = corrupt_answer(a, b, rng) if error_step == digits else str(answer)
    steps.append(f"{ANSWER_PREFIX}{final}")
    return steps


def step_labelled_solutions(split: str, digits: int = 2, test_fraction: float = 0.1, seed: int = 0,
                            size: int | None = None, error_fraction: float = 0.5) -> list[dict]:
    """``{prompt, steps, labels}``: a solution per operand pair; with probability
    ``error_fraction`` an error is injected at a uniformly drawn step. ``labels[i]`` is 1 for
    the steps before the first error and 0 from it on (all 1 for a correct solution). Other
    arguments as in :func:`preference_pairs`."""
    rng = _rng("steps", split, seed)
    examples = []
    for row in _rows(split, digits, test_fraction, seed, size):
        a, b = _operands(row["prompt"])
        error_step = rng.randrange(digits + 1) if rng.random() < error_fraction else None
        steps = solution_steps(a, b, digits, error_step, rng)
        first_bad = len(steps) if error_step is None else error_step
        labels = [1 if i < first_bad else 0 for i in range(len(steps))]
        examples.append({"prompt": row["prompt"], "steps": steps, "labels": labels})
    return examples
